//! The `envoy.service.auth.v3.Authorization` gRPC service: a thin handler that turns a
//! `CheckRequest` into an [`HttpRequest`], asks the [`Engine`], and turns its [`Decision`] into a
//! `CheckResponse`. A Check without the route's AuthConfig (a misconfigured route) is denied.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value as PbValue, value::Kind};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use serde_json::Value;
use tonic::{Request, Response, Status};
use wayguard_core::login::AUTH_CONFIG_KEY;

use crate::engine::Engine;
use crate::request::{Decision, Deny, HttpRequest};

/// gRPC codes used in `CheckResponse.status`.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

/// The ext_authz service over an [`Engine`].
#[derive(Clone, Debug)]
pub struct ExtAuthService {
    engine: Arc<Engine>,
}

impl ExtAuthService {
    /// A service answering with `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    /// The tonic service to mount on a gRPC server.
    pub fn into_server(self) -> AuthorizationServer<Self> {
        AuthorizationServer::new(self)
    }
}

fn header(
    name: &str,
    value: &str,
    action: header_value_option::HeaderAppendAction,
) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_string(),
            value: value.to_string(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

fn to_pb(v: &Value) -> PbValue {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(to_pb).collect(),
        }),
        Value::Object(o) => Kind::StructValue(Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), to_pb(v))).collect(),
        }),
    };
    PbValue { kind: Some(kind) }
}

/// The `CheckResponse` for a decision.
pub fn to_response(decision: Decision) -> CheckResponse {
    use header_value_option::HeaderAppendAction as A;
    match decision {
        Decision::Allow(a) => {
            let mut headers: Vec<HeaderValueOption> = a
                .set_headers
                .iter()
                .map(|(k, v)| header(k, v, A::OverwriteIfExistsOrAdd))
                .collect();
            headers.extend(
                a.append_headers
                    .iter()
                    .map(|(k, v)| header(k, v, A::AppendIfExistsOrAdd)),
            );
            let metadata = (!a.metadata.is_empty()).then(|| Struct {
                fields: a
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), to_pb(v)))
                    .collect(),
            });
            CheckResponse {
                status: Some(RpcStatus {
                    code: OK,
                    ..Default::default()
                }),
                dynamic_metadata: metadata,
                http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {
                    headers,
                    headers_to_remove: a.remove_headers,
                    response_headers_to_add: a
                        .response_headers
                        .iter()
                        .map(|(k, v)| header(k, v, A::AppendIfExistsOrAdd))
                        .collect(),
                    ..Default::default()
                })),
            }
        }
        Decision::Deny(Deny {
            status,
            headers,
            body,
        }) => CheckResponse {
            status: Some(RpcStatus {
                code: if matches!(status, 302 | 401) {
                    UNAUTHENTICATED
                } else {
                    PERMISSION_DENIED
                },
                ..Default::default()
            }),
            dynamic_metadata: None,
            http_response: Some(check_response::HttpResponse::DeniedResponse(
                DeniedHttpResponse {
                    status: Some(HttpStatus {
                        code: i32::from(status),
                    }),
                    headers: headers
                        .iter()
                        .map(|(k, v)| header(k, v, A::AppendIfExistsOrAdd))
                        .collect(),
                    body,
                },
            )),
        },
    }
}

/// The request as the login flow sees it.
pub fn to_request(check: &CheckRequest) -> Option<(String, HttpRequest)> {
    let attrs = check.attributes.as_ref()?;
    let id = attrs.context_extensions.get(AUTH_CONFIG_KEY)?.clone();
    let http = attrs.request.as_ref()?.http.as_ref()?;
    let req = HttpRequest {
        method: http.method.clone(),
        scheme: http.scheme.clone(),
        host: http.host.clone(),
        path: http.path.clone(),
        headers: http
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        body: http.body.clone(),
    };
    Some((id, req))
}

#[tonic::async_trait]
impl Authorization for ExtAuthService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let check = request.into_inner();
        let Some((id, req)) = to_request(&check) else {
            tracing::warn!(
                "Check without the wayguard.io/authconfig context extension or HTTP attributes; denying"
            );
            return Ok(Response::new(to_response(Decision::Deny(Deny::text(
                403,
                "this route has no login policy\n",
            )))));
        };
        let decision = self.engine.check(&id, &req).await;
        Ok(Response::new(to_response(decision)))
    }
}
