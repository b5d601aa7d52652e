//! The admin server: `/live`, `/ready`, `/metrics`, `/debug/config_dump`, `/debug/connections`,
//! `/debug/jwks`, `/debug/status`, and `POST /login/revoke` (ends login sessions; loopback
//! callers only, e.g. through `kubectl port-forward`: the admin port is reachable from the
//! cluster network, and ending sessions is not something any pod should be able to do).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use wayguard_runtime::{Readiness, ReadyState};
use wayguard_xds::ConnectionRegistry;

use crate::pipeline::Pipeline;

/// What the admin server reads.
pub struct AdminState {
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// xDS connections.
    pub connections: ConnectionRegistry,
    /// Metrics registry.
    pub registry: Mutex<Registry>,
    /// Readiness blockers (sources synced, JWKS first pass, first snapshot built, ...).
    pub readiness: Readiness,
    /// The login engine, when this process serves ext_authz.
    pub login: Option<Arc<wayguard_extauth::Engine>>,
}

/// The admin endpoints, served by `wayguard_runtime::Server::serve_http`.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/live", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/debug/config_dump", get(config_dump))
        .route("/debug/connections", get(connections))
        .route("/debug/jwks", get(jwks))
        .route("/debug/status", get(status))
        .route("/login/revoke", axum::routing::post(revoke))
        .with_state(state)
}

/// 200 `ready`, or 503 naming every blocker still held (`not ready: waiting for sources synced
/// (waiting for the first list of Gateway); first snapshot built`) or `draining`.
async fn ready(State(s): State<Arc<AdminState>>) -> Response {
    let state = s.readiness.state();
    let code = if state == ReadyState::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{state}\n")).into_response()
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &s.registry.lock()) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn json_response(value: Value) -> Response {
    match serde_json::to_string_pretty(&value) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text + "\n").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn config_dump(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(gateway) = q.get("gateway") else {
        let keys = s.pipeline.cache.keys();
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "add ?gateway=NAMESPACE/NAME (gateways: {})\n",
                keys.join(", ")
            ),
        )
            .into_response();
    };
    let Some(snapshot) = s.pipeline.cache.get(gateway) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no configuration for gateway {gateway}\n"),
        )
            .into_response();
    };
    json_response(crate::render::snapshot_json(gateway, &snapshot))
}

async fn connections(State(s): State<Arc<AdminState>>) -> Response {
    json_response(serde_json::to_value(s.connections.snapshot()).unwrap_or_default())
}

async fn jwks(State(s): State<Arc<AdminState>>) -> Response {
    json_response(serde_json::to_value(s.pipeline.keys.resolver().entries()).unwrap_or_default())
}

async fn status(State(s): State<Arc<AdminState>>) -> Response {
    let index = s.pipeline.index.read();
    let mut rejected = Vec::new();
    let mut warnings = Vec::new();
    for (key, entry) in index.entries() {
        if let Some((_, report)) = &entry.rejected {
            rejected.push(json!({
                "object": key.to_string(),
                "errors": report.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "inEffect": if entry.valid.is_some() { "last valid version" } else { "nothing" },
            }));
        }
        for w in &entry.warnings.warnings {
            warnings.push(format!("{key}: {w}"));
        }
    }
    drop(index);
    let nacks: Vec<Value> = s
        .connections
        .snapshot()
        .into_iter()
        .flat_map(|c| {
            let node = c.node_id.clone();
            let gateway = c.gateway.clone();
            c.types.into_iter().filter_map(move |(type_url, t)| {
                t.last_nack
                    .map(|n| json!({"node": node, "gateway": gateway, "type": type_url, "nack": n}))
            })
        })
        .collect();
    let readiness = s.readiness.state();
    let pending = match &readiness {
        ReadyState::NotReady(p) => serde_json::to_value(p).unwrap_or_default(),
        _ => json!([]),
    };
    let (_, login_problems) = s.pipeline.index.read().login_configs();
    let mut login_problems: BTreeMap<String, String> = login_problems
        .into_iter()
        .map(|p| (p.object, p.message))
        .collect();
    let mut login_policies = Vec::new();
    if let Some(engine) = &s.login {
        login_policies = engine.policy_ids();
        for (id, p) in engine.problems() {
            login_problems
                .entry(format!("AuthConfig {id}"))
                .or_insert(p);
        }
    }
    json_response(json!({
        "ready": readiness == ReadyState::Ready,
        "login": {"policies": login_policies, "problems": login_problems},
        "pending": pending,
        "draining": readiness == ReadyState::Draining,
        "files": *s.pipeline.source_problems.lock(),
        "rejected": rejected,
        "warnings": warnings,
        "gateways": *s.pipeline.status.read(),
        "nacks": nacks,
    }))
}

/// `POST /login/revoke?authconfig=NS/NAME&sub=SUBJECT` (or `sid=IDP_SESSION`, or
/// `session=SESSION_ID` for one Redis session): ends those sessions at once. Cookie sessions are
/// refused from then on by this replica (they hold no server-side state to delete).
async fn revoke(
    State(s): State<Arc<AdminState>>,
    axum::Extension(peer): axum::Extension<wayguard_runtime::PeerInfo>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let text = |code: StatusCode, body: String| (code, format!("{body}\n")).into_response();
    if !peer.remote.ip().is_loopback() {
        return text(
            StatusCode::FORBIDDEN,
            format!(
                "session revocation is only accepted from loopback (use kubectl port-forward); {} is not",
                peer.remote.ip()
            ),
        );
    }
    let Some(engine) = &s.login else {
        return text(
            StatusCode::NOT_FOUND,
            "this process does not serve ext_authz".into(),
        );
    };
    let Some(id) = q.get("authconfig") else {
        return text(
            StatusCode::BAD_REQUEST,
            "authconfig=NS/NAME is required".into(),
        );
    };
    let owner = match (q.get("sub"), q.get("sid"), q.get("session")) {
        (Some(sub), None, None) => wayguard_extauth::Owner::Subject(sub.clone()),
        (None, Some(sid), None) => wayguard_extauth::Owner::IdpSession(sid.clone()),
        (None, None, Some(session)) => {
            return match engine.revoke_session(id, session).await {
                Ok(()) => text(StatusCode::OK, format!("ended session {session} of {id}")),
                Err(e) => text(StatusCode::BAD_REQUEST, e),
            };
        }
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "exactly one of sub=, sid= or session= is required".into(),
            );
        }
    };
    match engine.revoke(id, owner.clone()).await {
        Ok(n) => {
            tracing::info!(authconfig = %id, ?owner, sessions = n, "sessions revoked by an operator");
            text(
                StatusCode::OK,
                format!(
                    "ended {n} stored session(s) of {owner:?} under {id}; cookie sessions are refused from now on"
                ),
            )
        }
        Err(e) => text(StatusCode::BAD_REQUEST, e),
    }
}
