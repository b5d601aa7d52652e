//! The tonic `AggregatedDiscoveryService`: a thin loop around the sans-I/O state machines.

use std::{collections::VecDeque, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use envoy_types::pb::{
    envoy::{
        config::core::v3::Node,
        service::discovery::v3::{
            DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
        },
    },
    google::protobuf::value::Kind,
};
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Status, codegen::BoxStream};
use tracing::Instrument;

use crate::{
    AdsServer, ConnectionRegistry, ConnectionStatus, DeltaConnection, Metrics, Mode, Snapshot,
    SnapshotCache, SnapshotWatch, SotwConnection, error::ServeError, grpc::Requests,
};

/// The node metadata field naming the gateway an Envoy serves (`"namespace/name"`).
pub const GATEWAY_METADATA_KEY: &str = "wayguard.io/gateway";

/// Default gRPC message size limit in both directions (64 MiB): Envoy's initial Delta request
/// lists every resource it has, which passes tonic's 4 MiB default at scale.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Maps an Envoy node to the snapshot-cache key it is served from.
///
/// Implemented for closures `Fn(Option<&Node>) -> Result<String, Status>`.
pub trait NodeKey: Send + Sync + 'static {
    /// The cache key for `node`, or the status the stream is rejected with.
    fn key(&self, node: Option<&Node>) -> Result<String, Status>;
}

impl<F> NodeKey for F
where
    F: Fn(Option<&Node>) -> Result<String, Status> + Send + Sync + 'static,
{
    fn key(&self, node: Option<&Node>) -> Result<String, Status> {
        self(node)
    }
}

/// The default [`NodeKey`]: the string metadata field [`GATEWAY_METADATA_KEY`], `"namespace/name"`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GatewayMetadataKey;

impl NodeKey for GatewayMetadataKey {
    fn key(&self, node: Option<&Node>) -> Result<String, Status> {
        const HINT: &str = "generate the Envoy bootstrap with `wayguard bootstrap --gateway NS/NAME --xds-address HOST:PORT`, which sets it";
        let Some(node) = node else {
            return Err(Status::invalid_argument(format!(
                "the first request has no node; Envoy must identify itself with node metadata {GATEWAY_METADATA_KEY:?}: {HINT}"
            )));
        };
        let value = node
            .metadata
            .as_ref()
            .and_then(|m| m.fields.get(GATEWAY_METADATA_KEY))
            .and_then(|v| v.kind.as_ref());
        match value {
            Some(Kind::StringValue(gateway)) => match gateway.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    Ok(gateway.clone())
                }
                _ => Err(Status::invalid_argument(format!(
                    "node {:?}: metadata {GATEWAY_METADATA_KEY:?} is {gateway:?}, expected \"<namespace>/<name>\"; {HINT}",
                    node.id
                ))),
            },
            Some(_) => Err(Status::invalid_argument(format!(
                "node {:?}: metadata {GATEWAY_METADATA_KEY:?} must be a string \"<namespace>/<name>\"; {HINT}",
                node.id
            ))),
            None => Err(Status::invalid_argument(format!(
                "node {:?} has no metadata field {GATEWAY_METADATA_KEY:?} naming the Gateway it serves (\"<namespace>/<name>\"); {HINT}",
                node.id
            ))),
        }
    }
}

/// The ADS gRPC service (both SotW and Delta) over a [`SnapshotCache`].
#[derive(Clone)]
pub struct AdsService {
    cache: SnapshotCache,
    registry: ConnectionRegistry,
    metrics: Metrics,
    node_key: Arc<dyn NodeKey>,
    drain: watch::Receiver<bool>,
}

/// Builder and runner of the xDS gRPC server.
pub struct XdsServer {
    cache: SnapshotCache,
    registry: ConnectionRegistry,
    metrics: Metrics,
    node_key: Arc<dyn NodeKey>,
    max_message_size: usize,
    drain: watch::Sender<bool>,
}

impl std::fmt::Debug for AdsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsService")
            .field("connections", &self.registry.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for XdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsServer")
            .field("max_message_size", &self.max_message_size)
            .finish_non_exhaustive()
    }
}

// === impl XdsServer ===

impl XdsServer {
    /// A server over `cache`, recording into `metrics`, keying nodes by [`GatewayMetadataKey`].
    pub fn new(cache: SnapshotCache, metrics: Metrics) -> Self {
        Self {
            cache,
            registry: ConnectionRegistry::new(),
            metrics,
            node_key: Arc::new(GatewayMetadataKey),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            drain: watch::Sender::new(false),
        }
    }

    /// Replaces the node -> cache key mapping.
    pub fn with_node_key(mut self, node_key: impl NodeKey) -> Self {
        self.node_key = Arc::new(node_key);
        self
    }

    /// Sets the gRPC message size limit (both directions).
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Uses `registry` for connections (e.g. one shared with an admin server created earlier).
    pub fn with_registry(mut self, registry: ConnectionRegistry) -> Self {
        self.registry = registry;
        self
    }

    /// The live-connection registry (`/debug/connections`, `wait_acked`).
    pub fn registry(&self) -> &ConnectionRegistry {
        &self.registry
    }

    /// The snapshot cache served.
    pub fn cache(&self) -> &SnapshotCache {
        &self.cache
    }

    /// The tonic service, to mount on a router of the caller's own. Its streams end when
    /// [`Self::drain`] is called (or `serve*`'s shutdown future completes).
    pub fn service(&self) -> AdsServer {
        let service = AdsService {
            cache: self.cache.clone(),
            registry: self.registry.clone(),
            metrics: self.metrics.clone(),
            node_key: self.node_key.clone(),
            drain: self.drain.subscribe(),
        };
        AdsServer::new(service, self.max_message_size)
    }

    /// Ends every open ADS stream cleanly (status OK); Envoy keeps its last config and reconnects.
    pub fn drain(&self) {
        self.drain.send_replace(true);
    }

    /// Binds `address` and serves until `shutdown` completes, then drains every stream.
    pub async fn serve(
        self,
        address: SocketAddr,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ServeError::Bind { address, source })?;
        self.serve_with_listener(listener, shutdown).await
    }

    /// Serves on an already bound listener (tests bind `127.0.0.1:0`) until `shutdown` completes.
    pub async fn serve_with_listener(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let service = self.service();
        let incoming = TcpListenerStream::new(listener);
        let drain = self.drain.clone();
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move {
                shutdown.await;
                tracing::info!("draining xDS streams");
                drain.send_replace(true);
            })
            .await?;
        Ok(())
    }
}

// === impl AdsService ===

impl AdsService {
    /// Reads the first request (to identify the node), registers the connection and returns the
    /// response stream that drives it. Rejections (no node, no gateway metadata) are returned as
    /// the RPC status.
    pub(crate) async fn start<P: Protocol>(
        &self,
        remote: Option<SocketAddr>,
        mut requests: Requests,
    ) -> Result<BoxStream<P::Response>, Status> {
        let mut drain = self.drain.clone();
        let first = tokio::select! {
            biased;
            () = drained(&mut drain) => return Err(Status::unavailable("the xDS server is shutting down")),
            first = requests.message::<P::Request>() => first?,
        };
        let Some(first) = first else {
            return Err(Status::cancelled(
                "the stream closed before its first request",
            ));
        };
        let node = P::node(&first);
        let key = self.node_key.key(node).inspect_err(|status| {
            tracing::warn!(remote = ?remote, error = %status.message(), "rejected ADS stream");
        })?;
        let (node_id, node_cluster) = node
            .map(|n| (n.id.clone(), n.cluster.clone()))
            .unwrap_or_default();
        let span = tracing::info_span!("ads", mode = ?P::MODE, node_id = %node_id, gateway = %key);
        let handle = self.registry.register(ConnectionStatus::new(
            node_id,
            node_cluster,
            key.clone(),
            P::MODE,
        ));
        let connection = P::new(handle, self.metrics.clone());
        let watch = self.cache.watch(&key);
        let metrics = self.metrics.clone();
        let stream = span
            .clone()
            .in_scope(|| Stream::new(connection, requests, first, watch, drain, metrics, span));
        Ok(stream.into_responses())
    }
}

/// Waits for the drain signal. A dropped sender means "never" (the service outlives its builder).
async fn drained(drain: &mut watch::Receiver<bool>) {
    if drain.wait_for(|drained| *drained).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What the stream loop needs from a state machine (SotW or Delta).
pub(crate) trait Protocol: Send + Sized + 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: prost::Message + Send + 'static;
    const MODE: Mode;
    fn new(handle: crate::ConnectionHandle, metrics: Metrics) -> Self;
    fn node(request: &Self::Request) -> Option<&Node>;
    fn type_url(response: &Self::Response) -> &str;
    fn on_request(
        &mut self,
        request: Self::Request,
    ) -> Result<Vec<Self::Response>, crate::ConnectionError>;
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Vec<Self::Response>;
}

impl Protocol for SotwConnection {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const MODE: Mode = Mode::Sotw;
    fn new(handle: crate::ConnectionHandle, metrics: Metrics) -> Self {
        SotwConnection::new(handle, metrics)
    }
    fn node(request: &Self::Request) -> Option<&Node> {
        request.node.as_ref()
    }
    fn type_url(response: &Self::Response) -> &str {
        &response.type_url
    }
    fn on_request(
        &mut self,
        request: Self::Request,
    ) -> Result<Vec<Self::Response>, crate::ConnectionError> {
        self.handle_request(request)
    }
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Vec<Self::Response> {
        self.handle_snapshot(snapshot)
    }
}

impl Protocol for DeltaConnection {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const MODE: Mode = Mode::Delta;
    fn new(handle: crate::ConnectionHandle, metrics: Metrics) -> Self {
        DeltaConnection::new(handle, metrics)
    }
    fn node(request: &Self::Request) -> Option<&Node> {
        request.node.as_ref()
    }
    fn type_url(response: &Self::Response) -> &str {
        &response.type_url
    }
    fn on_request(
        &mut self,
        request: Self::Request,
    ) -> Result<Vec<Self::Response>, crate::ConnectionError> {
        self.handle_request(request)
    }
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Vec<Self::Response> {
        self.handle_snapshot(snapshot)
    }
}

/// One live stream: the state machine, its request stream and its inputs. It is the response
/// body itself (no task, no channel per stream): hyper polls it when the client can take more,
/// and dropping it (client gone, reset, drain) unregisters the connection.
struct Stream<P: Protocol> {
    connection: P,
    requests: Requests,
    watch: SnapshotWatch,
    drain: watch::Receiver<bool>,
    metrics: Metrics,
    /// Responses computed but not yet handed to the transport, with the creation time of the
    /// snapshot they carry (push latency).
    pending: VecDeque<(P::Response, Option<tokio::time::Instant>)>,
    /// A request read but not yet handled.
    next: Option<P::Request>,
    /// Set after a protocol error has been queued as the final status.
    done: bool,
    /// Set when the end was seen and logged here (not a reset that drops the body).
    ended: bool,
    span: tracing::Span,
    _connected: ConnectedGuard,
}

/// Decrements the connected gauge when the stream ends, however it ends.
struct ConnectedGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<P: Protocol> Stream<P> {
    fn new(
        mut connection: P,
        requests: Requests,
        first: P::Request,
        mut watch: SnapshotWatch,
        drain: watch::Receiver<bool>,
        metrics: Metrics,
        span: tracing::Span,
    ) -> Self {
        let gauge = metrics.connected(P::MODE);
        gauge.inc();
        tracing::info!("Envoy connected");
        let mut pending = VecDeque::new();
        if let Some(snapshot) = watch.current() {
            let created = snapshot.created_at();
            pending.extend(
                connection
                    .on_snapshot(snapshot)
                    .into_iter()
                    .map(|response| (response, Some(created))),
            );
        }
        Self {
            connection,
            requests,
            watch,
            drain,
            metrics,
            pending,
            next: Some(first),
            done: false,
            ended: false,
            span,
            _connected: ConnectedGuard(gauge),
        }
    }

    /// The response stream tonic encodes; every step runs in the stream's span.
    fn into_responses(self) -> BoxStream<P::Response> {
        Box::pin(futures::stream::unfold(self, |mut stream| {
            let span = stream.span.clone();
            async move {
                let item = stream.next_response().await?;
                Some((item, stream))
            }
            .instrument(span)
        }))
    }

    /// The next response to write, `Some(Err(_))` once for a protocol error, `None` at the end.
    async fn next_response(&mut self) -> Option<Result<P::Response, Status>> {
        loop {
            if let Some((response, created)) = self.pending.pop_front() {
                if self.pending.is_empty() {
                    // Idle streams are most of what the server holds: keep no spare capacity.
                    self.pending = VecDeque::new();
                }
                let type_url = P::type_url(&response);
                let bytes = prost::Message::encoded_len(&response);
                self.metrics
                    .pushed(type_url, bytes, created.map(|c| c.elapsed()));
                tracing::debug!(
                    r#type = crate::type_url::short_name(type_url),
                    bytes,
                    "sent"
                );
                return Some(Ok(response));
            }
            if self.done {
                self.ended = true;
                return None;
            }
            if let Some(request) = self.next.take() {
                match self.connection.on_request(request) {
                    Ok(responses) => self
                        .pending
                        .extend(responses.into_iter().map(|r| (r, None))),
                    Err(error) => {
                        tracing::warn!(%error, "closing ADS stream on a protocol error");
                        self.done = true;
                        self.ended = true;
                        return Some(Err(error.into()));
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                () = drained(&mut self.drain) => {
                    tracing::info!("ending ADS stream: draining");
                    self.ended = true;
                    return None;
                }
                snapshot = self.watch.changed() => {
                    if let Some(snapshot) = snapshot {
                        let created = snapshot.created_at();
                        let responses = self.connection.on_snapshot(snapshot);
                        self.pending.extend(responses.into_iter().map(|r| (r, Some(created))));
                    }
                }
                request = self.requests.message::<P::Request>() => match request {
                    Ok(Some(request)) => self.next = Some(request),
                    Ok(None) => {
                        tracing::info!("Envoy closed the ADS stream");
                        self.ended = true;
                        return None;
                    }
                    Err(status) => {
                        // A reset or lost connection (nobody reads the status then) or a
                        // malformed request (the client gets the status).
                        tracing::info!(error = %status.message(), "ADS stream ended");
                        self.ended = true;
                        self.done = true;
                        return Some(Err(status));
                    }
                },
            }
        }
    }
}

impl<P: Protocol> Drop for Stream<P> {
    fn drop(&mut self) {
        if !self.ended {
            let _span = self.span.enter();
            tracing::info!("ADS stream reset or its connection closed");
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
