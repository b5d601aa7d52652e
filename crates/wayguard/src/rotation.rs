//! The fast key rotation signal, wayguard side: an Envoy access log service that receives only
//! "kid not in JWKS" failures (filtered in Envoy, see translate `rotation_log`) and refetches the
//! key sets of that gateway at once, rate-limited per URI by the resolver.
//!
//! Why this path: Envoy already knows the failure and its gateway; `failed_status_in_metadata`
//! plus a static metadata access-log filter sends nothing else (no token, no header, no
//! per-request traffic), the stock gRPC access logger reaches wayguard over the cluster the
//! bootstrap already has, and the listener never changes for it. Polling Envoy stats would add
//! latency and cannot tell gateways' issuers apart; the ext_authz/STS validators call
//! [`crate::pipeline::Pipeline::rotate`] directly.

use std::sync::Arc;

use envoy_types::pb::envoy::data::accesslog::v3::HttpAccessLogEntry;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::{
    AccessLogService, AccessLogServiceServer,
};
use envoy_types::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse, stream_access_logs_message,
};
use envoy_types::pb::google::protobuf::value::Kind;
use tonic::{Request, Response, Status, Streaming};
use wayguard_translate::names::{JWT_AUTHN, JWT_FAILURE_KEY, KID_NOT_IN_JWKS};
use wayguard_xds::GATEWAY_METADATA_KEY;

use crate::pipeline::Pipeline;

/// The access log service.
pub struct RotationSignal {
    pipeline: Arc<Pipeline>,
}

impl RotationSignal {
    /// A tonic service over `pipeline`.
    pub fn service(pipeline: Arc<Pipeline>) -> AccessLogServiceServer<Self> {
        AccessLogServiceServer::new(Self { pipeline })
    }
}

/// The jwt_authn failure message of one access log entry.
fn failure_message(entry: &HttpAccessLogEntry) -> Option<String> {
    let metadata = entry.common_properties.as_ref()?.metadata.as_ref()?;
    let failure = metadata
        .filter_metadata
        .get(JWT_AUTHN)?
        .fields
        .get(JWT_FAILURE_KEY)?;
    let Some(Kind::StructValue(s)) = &failure.kind else {
        return None;
    };
    match s.fields.get("message")?.kind.as_ref()? {
        Kind::StringValue(m) => Some(m.clone()),
        _ => None,
    }
}

/// The gateway key from the node metadata of a stream's first message.
fn gateway_of(message: &StreamAccessLogsMessage) -> Option<String> {
    let node = message.identifier.as_ref()?.node.as_ref()?;
    match node
        .metadata
        .as_ref()?
        .fields
        .get(GATEWAY_METADATA_KEY)?
        .kind
        .as_ref()?
    {
        Kind::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

#[tonic::async_trait]
impl AccessLogService for RotationSignal {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let mut stream = request.into_inner();
        let mut gateway: Option<String> = None;
        while let Some(message) = stream.message().await? {
            if gateway.is_none() {
                gateway = gateway_of(&message);
            }
            let messages: Vec<String> = match &message.log_entries {
                Some(stream_access_logs_message::LogEntries::HttpLogs(logs)) => {
                    logs.log_entry.iter().filter_map(failure_message).collect()
                }
                _ => Vec::new(),
            };
            let Some(gw) = &gateway else {
                tracing::warn!(
                    "access log stream without wayguard.io/gateway node metadata; ignored"
                );
                continue;
            };
            if messages.iter().any(|m| m == KID_NOT_IN_JWKS) {
                tracing::info!(gateway = %gw, "token signed by a key not in the JWKS: refreshing the gateway's key sets");
                self.pipeline.rotate(gw, false);
            } else if !messages.is_empty() {
                // A bad signature only means "refetch" where no good key set is known yet.
                self.pipeline.rotate(gw, true);
            }
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}
