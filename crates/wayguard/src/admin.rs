//! The admin server: `/live`, `/ready`, `/metrics`, `/debug/config_dump`, `/debug/connections`,
//! `/debug/jwks`, `/debug/status`.

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
    json_response(json!({
        "ready": readiness == ReadyState::Ready,
        "pending": pending,
        "draining": readiness == ReadyState::Draining,
        "files": *s.pipeline.source_problems.lock(),
        "rejected": rejected,
        "warnings": warnings,
        "gateways": *s.pipeline.status.read(),
        "nacks": nacks,
    }))
}
