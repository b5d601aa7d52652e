//! In-process gRPC tests: a real tonic server on 127.0.0.1:0 and the generated client as Envoy.

use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming, transport::Channel};

use super::*;
use crate::{AckWaitError, Resource, test_util::*, type_url::*};

const DEADLINE: Duration = Duration::from_secs(10);

struct Harness {
    address: SocketAddr,
    cache: SnapshotCache,
    registry: ConnectionRegistry,
    metrics: Metrics,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), ServeError>>,
}

impl Harness {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let cache = mk_cache();
        let metrics = Metrics::default();
        let server = XdsServer::new(cache.clone(), metrics.clone());
        let registry = server.registry().clone();
        let (shutdown, signal) = oneshot::channel::<()>();
        let server = tokio::spawn(server.serve_with_listener(listener, async move {
            let _ = signal.await;
        }));
        Self {
            address,
            cache,
            registry,
            metrics,
            shutdown: Some(shutdown),
            server,
        }
    }

    async fn client(&self) -> AggregatedDiscoveryServiceClient<Channel> {
        AggregatedDiscoveryServiceClient::connect(format!("http://{}", self.address))
            .await
            .expect("connect")
            .max_decoding_message_size(DEFAULT_MAX_MESSAGE_SIZE)
    }

    async fn sotw(
        &self,
        first: DiscoveryRequest,
    ) -> Result<Client<DiscoveryRequest, DiscoveryResponse>, Status> {
        let (tx, rx) = mpsc::channel(16);
        tx.send(first).await.expect("queue");
        let responses = self
            .client()
            .await
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await?;
        Ok(Client {
            tx,
            rx: responses.into_inner(),
        })
    }

    async fn delta(
        &self,
        first: DeltaDiscoveryRequest,
    ) -> Result<Client<DeltaDiscoveryRequest, DeltaDiscoveryResponse>, Status> {
        let (tx, rx) = mpsc::channel(16);
        tx.send(first).await.expect("queue");
        let responses = self
            .client()
            .await
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await?;
        Ok(Client {
            tx,
            rx: responses.into_inner(),
        })
    }

    async fn wait_acked(&self, version: crate::Version) -> Result<usize, AckWaitError> {
        tokio::time::timeout(DEADLINE, self.registry.wait_acked(GW, version, 1))
            .await
            .expect("deadline waiting for ACK")
    }

    /// Polls `condition` until it holds or the deadline passes.
    async fn eventually(&self, what: &str, condition: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !condition(self) {
            assert!(tokio::time::Instant::now() < deadline, "deadline: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let result = tokio::time::timeout(DEADLINE, self.server)
            .await
            .expect("server stops");
        result.expect("join").expect("serve");
    }
}

struct Client<Req, Resp> {
    tx: mpsc::Sender<Req>,
    rx: Streaming<Resp>,
}

impl<Req, Resp> Client<Req, Resp> {
    async fn send(&self, request: Req) {
        self.tx.send(request).await.expect("stream open");
    }

    async fn recv(&mut self) -> Resp {
        tokio::time::timeout(DEADLINE, self.rx.message())
            .await
            .expect("deadline waiting for a response")
            .expect("grpc status")
            .expect("stream open")
    }

    async fn closed(&mut self) -> Result<Option<Resp>, Status> {
        tokio::time::timeout(DEADLINE, self.rx.message())
            .await
            .expect("deadline waiting for the stream to end")
    }
}

fn with_node(mut request: DiscoveryRequest) -> DiscoveryRequest {
    request.node = Some(mk_node(Some(GW)));
    request
}

fn delta_with_node(mut request: DeltaDiscoveryRequest) -> DeltaDiscoveryRequest {
    request.node = Some(mk_node(Some(GW)));
    request
}

fn resources() -> Vec<Resource> {
    vec![mk_cluster("c1", 0), mk_listener("l1", "one")]
}

#[tokio::test]
async fn sotw_connect_ack_update_nack_recover() {
    let h = Harness::start().await;
    let v1 = h.cache.set(GW, resources()).expect("set").version;

    let mut envoy = h
        .sotw(with_node(sotw_req(CLUSTER, &[], "", "")))
        .await
        .expect("stream");
    let cds = envoy.recv().await;
    assert_eq!(cds.type_url, CLUSTER);
    assert_eq!(cds.resources.len(), 1);
    envoy
        .send(sotw_req(CLUSTER, &[], &cds.version_info, &cds.nonce))
        .await;
    envoy.send(sotw_req(LISTENER, &[], "", "")).await;
    let lds = envoy.recv().await;
    assert_eq!(lds.type_url, LISTENER);
    envoy
        .send(sotw_req(LISTENER, &[], &lds.version_info, &lds.nonce))
        .await;
    assert_eq!(h.wait_acked(v1).await, Ok(1));

    // An update reaches the client; CDS is unchanged and not resent.
    let v2 = h
        .cache
        .set(GW, vec![mk_cluster("c1", 0), mk_listener("l1", "two")])
        .expect("set")
        .version;
    let lds2 = envoy.recv().await;
    assert_eq!(lds2.type_url, LISTENER);
    envoy
        .send(sotw_req(LISTENER, &[], &lds2.version_info, &lds2.nonce))
        .await;
    assert_eq!(h.wait_acked(v2).await, Ok(1));
    assert_eq!(h.metrics.pushes(CLUSTER), 1);
    assert_eq!(h.metrics.pushes(LISTENER), 2);
    assert!(h.metrics.bytes_sent(LISTENER) > 0);

    // A NACK is reported and recorded...
    let v3 = h
        .cache
        .set(GW, vec![mk_cluster("c1", 0), mk_listener("l1", "bad")])
        .expect("set")
        .version;
    let bad = envoy.recv().await;
    envoy
        .send(sotw_nack(
            LISTENER,
            &[],
            &lds2.version_info,
            &bad.nonce,
            "bad listener",
        ))
        .await;
    let err = h.wait_acked(v3).await.expect_err("nack");
    assert!(
        matches!(&err, AckWaitError::Nacked { message, .. } if message == "bad listener"),
        "{err}"
    );
    assert_eq!(h.metrics.nacks(LISTENER), 1);
    let status = &h.registry.connections_for(GW)[0];
    assert_eq!(
        status.types[LISTENER]
            .last_nack
            .as_ref()
            .map(|n| n.message.as_str()),
        Some("bad listener")
    );

    // ...and does not block the next good version.
    let v4 = h
        .cache
        .set(GW, vec![mk_cluster("c1", 0), mk_listener("l1", "good")])
        .expect("set")
        .version;
    let good = envoy.recv().await;
    envoy
        .send(sotw_req(LISTENER, &[], &good.version_info, &good.nonce))
        .await;
    assert_eq!(h.wait_acked(v4).await, Ok(1));

    // Reconnect: the CDS version Envoy has is current, so only LDS (stale version) is answered.
    drop(envoy);
    h.eventually("old stream gone", |h| h.registry.is_empty())
        .await;
    let mut envoy = h
        .sotw(with_node(sotw_req(CLUSTER, &[], &cds.version_info, "")))
        .await
        .expect("stream");
    envoy
        .send(sotw_req(LISTENER, &[], &lds.version_info, ""))
        .await;
    let first = envoy.recv().await;
    assert_eq!(first.type_url, LISTENER, "up-to-date CDS is not resent");
    assert_eq!(first.version_info, good.version_info);

    let json = serde_json::to_value(h.registry.snapshot()).expect("json");
    assert_eq!(json[0]["mode"], "sotw");
    assert_eq!(json[0]["node_id"], "envoy-1");
    assert_eq!(json[0]["gateway"], GW);
    h.shutdown().await;
}

#[tokio::test]
async fn delta_connect_update_reconnect() {
    let h = Harness::start().await;
    let v1 = h.cache.set(GW, resources()).expect("set").version;
    let mut envoy = h
        .delta(delta_with_node(delta_req(CLUSTER, &[], &[], "")))
        .await
        .expect("stream");
    let cds = envoy.recv().await;
    assert_eq!(cds.resources.len(), 1);
    envoy.send(delta_req(CLUSTER, &[], &[], &cds.nonce)).await;
    envoy.send(delta_req(LISTENER, &["*"], &[], "")).await;
    let lds = envoy.recv().await;
    assert_eq!(lds.resources[0].name, "l1");
    envoy.send(delta_req(LISTENER, &[], &[], &lds.nonce)).await;
    assert_eq!(h.wait_acked(v1).await, Ok(1));

    // Add a cluster, change the listener: only those go out, CDS first.
    let v2 = h
        .cache
        .set(
            GW,
            vec![
                mk_cluster("c1", 0),
                mk_cluster("c2", 0),
                mk_listener("l1", "two"),
            ],
        )
        .expect("set")
        .version;
    let cds2 = envoy.recv().await;
    assert_eq!((cds2.type_url.as_str(), cds2.resources.len()), (CLUSTER, 1));
    assert_eq!(cds2.resources[0].name, "c2");
    let lds2 = envoy.recv().await;
    assert_eq!(lds2.type_url, LISTENER);
    envoy.send(delta_req(CLUSTER, &[], &[], &cds2.nonce)).await;
    envoy.send(delta_req(LISTENER, &[], &[], &lds2.nonce)).await;
    assert_eq!(h.wait_acked(v2).await, Ok(1));

    // Reconnect with what Envoy has; meanwhile c1 changed. Only c1 is sent.
    drop(envoy);
    h.eventually("old stream gone", |h| h.registry.is_empty())
        .await;
    h.cache
        .set(
            GW,
            vec![
                mk_cluster("c1", 1),
                mk_cluster("c2", 0),
                mk_listener("l1", "two"),
            ],
        )
        .expect("set");
    let mut reconnect = delta_with_node(delta_req(CLUSTER, &[], &[], ""));
    reconnect.initial_resource_versions = cds
        .resources
        .iter()
        .chain(&cds2.resources)
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    let mut envoy = h.delta(reconnect).await.expect("stream");
    let cds3 = envoy.recv().await;
    assert_eq!(
        cds3.resources
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["c1"]
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_node_without_gateway_metadata_is_rejected() {
    let h = Harness::start().await;
    let mut request = sotw_req(CLUSTER, &[], "", "");
    request.node = Some(mk_node(None));
    let status = h.sotw(request).await.err().expect("rejected");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains(GATEWAY_METADATA_KEY),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("wayguard bootstrap"),
        "{}",
        status.message()
    );

    let mut request = delta_req(CLUSTER, &[], &[], "");
    request.node = Some(mk_node(Some("no-slash")));
    let status = h.delta(request).await.err().expect("rejected");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(h.registry.is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn the_node_key_can_be_swapped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let cache = mk_cache();
    cache
        .set("by-cluster", vec![mk_cluster("c", 0)])
        .expect("set");
    let server = XdsServer::new(cache.clone(), Metrics::default())
        .with_node_key(|node: Option<&Node>| {
            node.map(|n| n.cluster.clone())
                .ok_or_else(|| Status::invalid_argument("no node"))
        })
        .with_max_message_size(1024 * 1024);
    let drain_handle = server.service();
    let serving = tokio::spawn(server.serve_with_listener(listener, std::future::pending()));
    let (tx, rx) = mpsc::channel(4);
    let mut request = sotw_req(CLUSTER, &[], "", "");
    request.node = Some(Node {
        cluster: "by-cluster".into(),
        ..Default::default()
    });
    tx.send(request).await.expect("queue");
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    let mut responses = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let response = tokio::time::timeout(DEADLINE, responses.message())
        .await
        .expect("deadline")
        .expect("status")
        .expect("open");
    assert_eq!(response.resources.len(), 1);
    drop(drain_handle);
    serving.abort();
}

#[tokio::test]
async fn shutdown_drains_every_stream_cleanly() {
    let h = Harness::start().await;
    let (mut sotw, mut delta) = h.one_of_each().await;
    let registry = h.registry.clone();
    let metrics = h.metrics.clone();
    let (sotw_end, delta_end, ()) = tokio::join!(sotw.closed(), delta.closed(), h.shutdown());
    assert!(
        matches!(sotw_end, Ok(None)),
        "SotW stream ends with OK: {sotw_end:?}"
    );
    assert!(
        matches!(delta_end, Ok(None)),
        "Delta stream ends with OK: {delta_end:?}"
    );
    assert!(registry.is_empty());
    assert_eq!(metrics.connected(Mode::Sotw).get(), 0);
}

#[tokio::test]
async fn a_client_that_goes_away_is_unregistered() {
    let h = Harness::start().await;
    let (sotw, delta) = h.one_of_each().await;
    // Dropping the response streams resets both HTTP/2 streams.
    drop(sotw);
    drop(delta);
    h.eventually("the reset streams are unregistered", |h| {
        h.registry.is_empty()
            && h.registry.count_for(GW) == 0
            && h.metrics.connected(Mode::Sotw).get() == 0
            && h.metrics.connected(Mode::Delta).get() == 0
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn other_methods_are_unimplemented() {
    let h = Harness::start().await;
    let channel = Channel::from_shared(format!("http://{}", h.address))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = "/envoy.service.discovery.v3.AggregatedDiscoveryService/FetchAggregatedResources";
    let status = grpc
        .unary::<_, DiscoveryResponse, _>(
            tonic::Request::new(sotw_req(CLUSTER, &[], "", "")),
            path.parse().expect("path"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("no such method");
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(
        status.message().contains("FetchAggregatedResources"),
        "{status:?}"
    );
    h.shutdown().await;
}

type SotwClient = Client<DiscoveryRequest, DiscoveryResponse>;
type DeltaClient = Client<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

impl Harness {
    /// A SotW and a Delta stream on gateway [`GW`], each past its first response.
    async fn one_of_each(&self) -> (SotwClient, DeltaClient) {
        self.cache.set(GW, resources()).expect("set");
        let mut sotw = self
            .sotw(with_node(sotw_req(CLUSTER, &[], "", "")))
            .await
            .expect("stream");
        sotw.recv().await;
        let mut delta = self
            .delta(delta_with_node(delta_req(CLUSTER, &[], &[], "")))
            .await
            .expect("stream");
        delta.recv().await;
        self.registry_has(2).await;
        (sotw, delta)
    }

    async fn registry_has(&self, n: usize) {
        tokio::time::timeout(DEADLINE, self.registry.wait_connected(GW, n))
            .await
            .expect("deadline waiting for connections");
    }
}

#[test]
fn metrics_register_and_encode() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(registry.sub_registry_with_prefix("xds"));
    metrics.pushed(LISTENER, 10, Some(Duration::from_millis(3)));
    metrics.acked(LISTENER, Duration::from_millis(1));
    metrics.nacked(CLUSTER);
    metrics.connected(Mode::Delta).inc();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    for needle in [
        "xds_connected_proxies{mode=\"delta\"} 1",
        "xds_pushes_total{type=\"lds\"} 1",
        "xds_nacks_total{type=\"cds\"} 1",
        "xds_sent_bytes_total{type=\"lds\"} 10",
        "xds_push_latency_seconds_count{type=\"lds\"} 1",
        "xds_ack_latency_seconds_count{type=\"lds\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}
