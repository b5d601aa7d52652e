//! Simulated Envoys: ADS clients (SotW or Delta) that subscribe like Envoy (CDS and LDS
//! wildcard, then EDS, RDS, ECDS and SDS by name from what they received), decode only what
//! they need for that, ACK every response at once, and record per type what they received.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use envoy_types::pb::envoy::config::core::v3::{Extension, Node};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind};
use parking_lot::{Mutex, RwLock};
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::deps::{self, CDS, ECDS, EDS, LDS, RDS, SDS, short};

/// What one client recorded.
#[derive(Debug, Default)]
pub struct Record {
    /// Gateway index the client serves.
    pub gateway: usize,
    /// Discovery responses received.
    pub responses: u64,
    /// Encoded bytes of those responses.
    pub bytes: u64,
    /// Responses and bytes by short type name.
    pub by_type: BTreeMap<&'static str, (u64, u64)>,
    /// When the client had every resource it subscribed to (and had ACKed it).
    pub synced_at: Option<Instant>,
    /// Per round: when the response carrying the round's marker arrived and was ACKed.
    pub rounds: BTreeMap<usize, RoundTimes>,
    /// Why the stream ended, if it did.
    pub error: Option<String>,
}

/// Receive and ACK times of the response that carried a round's change.
#[derive(Clone, Copy, Debug)]
pub struct RoundTimes {
    /// Response received.
    pub received: Instant,
    /// ACK handed to the transport.
    pub acked: Instant,
}

/// A round's marker: the bytes a response must contain to carry that round's change.
#[derive(Debug)]
struct Marker {
    round: usize,
    gateway: usize,
    bytes: Vec<u8>,
}

/// State shared by every simulated client and the bench.
pub struct Fleet {
    records: Vec<Mutex<Record>>,
    marker: RwLock<Option<Arc<Marker>>>,
    synced: AtomicUsize,
    acked: AtomicUsize,
    ended: AtomicUsize,
    progress: watch::Sender<u64>,
    /// Extensions each client lists in its node (Envoy-sized first requests).
    node_extensions: usize,
}

impl Fleet {
    /// A fleet of `clients` clients; client `i` serves gateway `i % gateways`; each node lists
    /// `node_extensions` extensions.
    pub fn new(clients: usize, gateways: usize, node_extensions: usize) -> Arc<Self> {
        let gateways = gateways.max(1);
        Arc::new(Self {
            records: (0..clients)
                .map(|i| {
                    Mutex::new(Record {
                        gateway: i % gateways,
                        ..Default::default()
                    })
                })
                .collect(),
            marker: RwLock::new(None),
            synced: AtomicUsize::new(0),
            acked: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            progress: watch::Sender::new(0),
            node_extensions,
        })
    }

    /// Number of clients.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Clients synced so far.
    pub fn synced(&self) -> usize {
        self.synced.load(Ordering::Acquire)
    }

    /// Clients whose stream ended (error or close).
    pub fn ended(&self) -> usize {
        self.ended.load(Ordering::Acquire)
    }

    /// Clients that ACKed the current round's marker.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Acquire)
    }

    /// Starts a round: responses to `gateway`'s clients containing `marker` count as its change.
    pub fn start_round(&self, round: usize, gateway: usize, marker: &str) {
        self.acked.store(0, Ordering::Release);
        *self.marker.write() = Some(Arc::new(Marker {
            round,
            gateway,
            bytes: marker.as_bytes().to_vec(),
        }));
    }

    /// Waits until `done(self)` holds or `deadline` passes; returns whether it holds.
    pub async fn wait_until(&self, deadline: Instant, done: impl Fn(&Self) -> bool) -> bool {
        let mut rx = self.progress.subscribe();
        let _ = tokio::time::timeout_at(
            tokio::time::Instant::from_std(deadline),
            rx.wait_for(|_| done(self)),
        )
        .await;
        done(self)
    }

    /// Runs `f` over every record.
    pub fn with_records<T>(&self, mut f: impl FnMut(usize, &Record) -> T) -> Vec<T> {
        self.records
            .iter()
            .enumerate()
            .map(|(i, r)| f(i, &r.lock()))
            .collect()
    }

    /// Runs `f` on client `id`'s record (`None` if there is no such client).
    pub fn with_record<T>(&self, id: usize, f: impl FnOnce(&Record) -> T) -> Option<T> {
        self.records.get(id).map(|r| f(&r.lock()))
    }

    fn bump(&self) {
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn record(&self, id: usize) -> &Mutex<Record> {
        &self.records[id]
    }
}

/// Encoded size of a simulated node with `extensions` extensions.
pub fn node_size(extensions: usize) -> usize {
    node(0, "bench-0/gateway", extensions).encoded_len()
}

/// The node a simulated Envoy presents: like Envoy's, it lists `extensions` extensions shaped
/// like Envoy 1.40.0's (name ~33, category ~24 and, for most, one type URL of ~64 characters), so
/// that the first request has a real Envoy's size (about 60 KB for 516 extensions).
fn node(id: usize, gateway: &str, extensions: usize) -> Node {
    let mut fields = std::collections::HashMap::new();
    fields.insert(
        GATEWAY_KEY.to_string(),
        Value {
            kind: Some(Kind::StringValue(gateway.to_string())),
        },
    );
    Node {
        id: format!("bench-client-{id}"),
        cluster: gateway.to_string(),
        metadata: Some(Struct { fields }),
        user_agent_name: "wayguard-bench".into(),
        extensions: (0..extensions)
            .map(|i| Extension {
                name: format!("envoy.bench.simulated_ext_{i:06}"),
                category: "envoy.filters.bench.cat_a".into(),
                type_urls: if i % 6 == 5 {
                    Vec::new()
                } else {
                    vec![format!(
                        "envoy.extensions.filters.bench.v3.SimulatedExtensionConfig{i:06}"
                    )]
                },
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The node metadata field naming the gateway (wayguard's `GATEWAY_METADATA_KEY`).
const GATEWAY_KEY: &str = "wayguard.io/gateway";

/// Per-client protocol state shared by SotW and Delta: what was received and what is subscribed.
#[derive(Default)]
struct Subscriptions {
    /// Cluster name -> EDS resource name (for EDS clusters).
    clusters: BTreeMap<String, Option<String>>,
    /// Listener name -> the names it needs.
    listeners: BTreeMap<String, deps::ListenerDeps>,
    /// Named types: subscribed names.
    named: BTreeMap<&'static str, BTreeSet<String>>,
    /// Named types: names received at least once.
    received: BTreeMap<&'static str, BTreeSet<String>>,
    /// Whether CDS / LDS answered.
    wildcard_seen: BTreeSet<&'static str>,
}

impl Subscriptions {
    /// The names each dependent type should be subscribed to now.
    fn wanted(&self) -> BTreeMap<&'static str, BTreeSet<String>> {
        let mut wanted: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
        wanted.insert(
            EDS,
            self.clusters
                .values()
                .flatten()
                .cloned()
                .collect::<BTreeSet<_>>(),
        );
        for t in [RDS, ECDS, SDS] {
            wanted.insert(t, BTreeSet::new());
        }
        for l in self.listeners.values() {
            for (t, names) in [(RDS, &l.routes), (ECDS, &l.extensions), (SDS, &l.secrets)] {
                wanted.entry(t).or_default().extend(names.iter().cloned());
            }
        }
        wanted
    }

    fn synced(&self) -> bool {
        self.wildcard_seen.contains(CDS)
            && self.wildcard_seen.contains(LDS)
            && self.named.iter().all(|(t, names)| {
                let got = self.received.get(t);
                names.iter().all(|n| got.is_some_and(|g| g.contains(n)))
            })
    }
}

/// Shared per-response bookkeeping: bytes, marker detection.
fn account(
    fleet: &Fleet,
    id: usize,
    type_url: &str,
    bytes: usize,
    payloads: &[&Any],
) -> Option<usize> {
    let marker = fleet.marker.read().clone();
    let mut record = fleet.record(id).lock();
    record.responses += 1;
    record.bytes += bytes as u64;
    let entry = record.by_type.entry(short(type_url)).or_default();
    entry.0 += 1;
    entry.1 += bytes as u64;
    let marker = marker?;
    if marker.gateway != record.gateway || record.rounds.contains_key(&marker.round) {
        return None;
    }
    payloads
        .iter()
        .any(|a| contains(&a.value, &marker.bytes))
        .then_some(marker.round)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// After the ACK of a response went out: round bookkeeping and sync detection.
fn after_ack(
    fleet: &Fleet,
    id: usize,
    round: Option<usize>,
    received: Instant,
    subs: &Subscriptions,
) {
    let now = Instant::now();
    let mut bump = false;
    {
        let mut record = fleet.record(id).lock();
        if let Some(round) = round {
            record.rounds.insert(
                round,
                RoundTimes {
                    received,
                    acked: now,
                },
            );
            fleet.acked.fetch_add(1, Ordering::AcqRel);
            bump = true;
        }
        if record.synced_at.is_none() && subs.synced() {
            record.synced_at = Some(now);
            fleet.synced.fetch_add(1, Ordering::AcqRel);
            bump = true;
        }
    }
    if bump {
        fleet.bump();
    }
}

/// Runs client `id` of `gateway` over `channel` until its stream ends; the outcome is recorded.
pub async fn run_client(
    fleet: Arc<Fleet>,
    id: usize,
    gateway: String,
    channel: Channel,
    delta: bool,
) {
    let result = if delta {
        run_delta(&fleet, id, &gateway, channel).await
    } else {
        run_sotw(&fleet, id, &gateway, channel).await
    };
    let error = match result {
        Ok(()) => "stream closed by the server".to_string(),
        Err(e) => format!("{e:#}"),
    };
    fleet.record(id).lock().error = Some(error);
    fleet.ended.fetch_add(1, Ordering::AcqRel);
    fleet.bump();
}

const MAX_MESSAGE: usize = 64 * 1024 * 1024;

async fn run_sotw(fleet: &Fleet, id: usize, gateway: &str, channel: Channel) -> Result<()> {
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(64);
    let send = |req: DiscoveryRequest| {
        let tx = tx.clone();
        async move { tx.send(req).await.context("request stream closed") }
    };
    send(DiscoveryRequest {
        node: Some(node(id, gateway, fleet.node_extensions)),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await?;
    send(DiscoveryRequest {
        type_url: LDS.into(),
        ..Default::default()
    })
    .await?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let mut inbound = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .context("opening the SotW stream")?
        .into_inner();
    let mut subs = Subscriptions::default();
    // Last version and nonce per type (for ACKs and subscription changes).
    let mut last: BTreeMap<&'static str, (String, String)> = BTreeMap::new();
    while let Some(resp) = inbound.message().await.context("SotW stream")? {
        let received = Instant::now();
        let bytes = resp.encoded_len();
        let DiscoveryResponse {
            version_info,
            resources,
            type_url,
            nonce,
            ..
        } = resp;
        let t = deps::intern(&type_url);
        let payloads: Vec<&Any> = resources.iter().collect();
        let round = account(fleet, id, &type_url, bytes, &payloads);
        match t {
            Some(CDS) => {
                subs.wildcard_seen.insert(CDS);
                subs.clusters = resources.iter().filter_map(deps::cluster).collect();
            }
            Some(LDS) => {
                subs.wildcard_seen.insert(LDS);
                subs.listeners = resources.iter().filter_map(deps::listener).collect();
            }
            Some(named) => {
                let got = subs.received.entry(named).or_default();
                got.extend(resources.iter().filter_map(deps::name));
            }
            None => {}
        }
        let names = t
            .and_then(|t| subs.named.get(t))
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default();
        send(DiscoveryRequest {
            version_info: version_info.clone(),
            resource_names: names,
            type_url: type_url.clone(),
            response_nonce: nonce.clone(),
            ..Default::default()
        })
        .await?;
        if let Some(t) = t {
            last.insert(t, (version_info, nonce));
        }
        if matches!(t, Some(CDS | LDS)) {
            for (dep, wanted) in subs.wanted() {
                let current = subs.named.get(dep);
                if current.is_none_or(|c| *c != wanted) && !(current.is_none() && wanted.is_empty())
                {
                    let (version, nonce) = last.get(dep).cloned().unwrap_or_default();
                    send(DiscoveryRequest {
                        version_info: version,
                        resource_names: wanted.iter().cloned().collect(),
                        type_url: dep.into(),
                        response_nonce: nonce,
                        ..Default::default()
                    })
                    .await?;
                    subs.named.insert(dep, wanted);
                }
            }
        }
        after_ack(fleet, id, round, received, &subs);
    }
    Ok(())
}

async fn run_delta(fleet: &Fleet, id: usize, gateway: &str, channel: Channel) -> Result<()> {
    let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(64);
    let send = |req: DeltaDiscoveryRequest| {
        let tx = tx.clone();
        async move { tx.send(req).await.context("request stream closed") }
    };
    send(DeltaDiscoveryRequest {
        node: Some(node(id, gateway, fleet.node_extensions)),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await?;
    send(DeltaDiscoveryRequest {
        type_url: LDS.into(),
        ..Default::default()
    })
    .await?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let mut inbound = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .context("opening the Delta stream")?
        .into_inner();
    let mut subs = Subscriptions::default();
    while let Some(resp) = inbound.message().await.context("Delta stream")? {
        let received = Instant::now();
        let bytes = resp.encoded_len();
        let DeltaDiscoveryResponse {
            resources,
            type_url,
            removed_resources,
            nonce,
            ..
        } = resp;
        let t = deps::intern(&type_url);
        let payloads: Vec<&Any> = resources
            .iter()
            .filter_map(|r| r.resource.as_ref())
            .collect();
        let round = account(fleet, id, &type_url, bytes, &payloads);
        match t {
            Some(CDS) => {
                subs.wildcard_seen.insert(CDS);
                for name in &removed_resources {
                    subs.clusters.remove(name);
                }
                for r in &resources {
                    if let Some((_, eds)) = r.resource.as_ref().and_then(deps::cluster) {
                        subs.clusters.insert(r.name.clone(), eds);
                    }
                }
            }
            Some(LDS) => {
                subs.wildcard_seen.insert(LDS);
                for name in &removed_resources {
                    subs.listeners.remove(name);
                }
                for r in &resources {
                    if let Some((_, l)) = r.resource.as_ref().and_then(deps::listener) {
                        subs.listeners.insert(r.name.clone(), l);
                    }
                }
            }
            Some(named) => {
                let got = subs.received.entry(named).or_default();
                got.extend(resources.iter().map(|r| r.name.clone()));
            }
            None => {}
        }
        send(DeltaDiscoveryRequest {
            type_url: type_url.clone(),
            response_nonce: nonce,
            ..Default::default()
        })
        .await?;
        if matches!(t, Some(CDS | LDS)) {
            for (dep, wanted) in subs.wanted() {
                let current = subs.named.get(dep).cloned().unwrap_or_default();
                if current == wanted {
                    continue;
                }
                send(DeltaDiscoveryRequest {
                    type_url: dep.into(),
                    resource_names_subscribe: wanted.difference(&current).cloned().collect(),
                    resource_names_unsubscribe: current.difference(&wanted).cloned().collect(),
                    ..Default::default()
                })
                .await?;
                subs.named.insert(dep, wanted);
            }
        }
        after_ack(fleet, id, round, received, &subs);
    }
    Ok(())
}
