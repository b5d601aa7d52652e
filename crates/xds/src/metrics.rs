//! Prometheus metrics of the xDS server (injected, never global: STYLE rule 9).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::{Mode, type_url};

/// Label set carrying the short resource type (`lds`, `rds`, `cds`, `eds`, `sds`, `ecds`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TypeLabels {
    r#type: String,
}

/// Label set carrying the ADS mode (`sotw` or `delta`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ModeLabels {
    mode: &'static str,
}

/// The xDS server's metrics. Clones share the same series.
///
/// `Metrics::default()` gives working but unregistered metrics (tests).
#[derive(Clone, Debug)]
pub struct Metrics {
    connected: Family<ModeLabels, Gauge>,
    pushes: Family<TypeLabels, Counter>,
    nacks: Family<TypeLabels, Counter>,
    push_latency: Family<TypeLabels, Histogram, fn() -> Histogram>,
    ack_latency: Family<TypeLabels, Histogram, fn() -> Histogram>,
    bytes_sent: Family<TypeLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~52 s, doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 20,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            connected: Family::default(),
            pushes: Family::default(),
            nacks: Family::default(),
            push_latency: Family::new_with_constructor(latency_histogram),
            ack_latency: Family::new_with_constructor(latency_histogram),
            bytes_sent: Family::default(),
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` (give it a sub-registry with a prefix,
    /// e.g. `registry.sub_registry_with_prefix("xds")`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "connected_proxies",
            "Envoy ADS streams currently connected",
            metrics.connected.clone(),
        );
        registry.register(
            "pushes",
            "Discovery responses written, by resource type",
            metrics.pushes.clone(),
        );
        registry.register(
            "nacks",
            "NACKs received, by resource type",
            metrics.nacks.clone(),
        );
        registry.register_with_unit(
            "push_latency",
            "Time from a snapshot being set to the response being written, by resource type",
            Unit::Seconds,
            metrics.push_latency.clone(),
        );
        registry.register_with_unit(
            "ack_latency",
            "Time from a response being sent to its ACK arriving, by resource type",
            Unit::Seconds,
            metrics.ack_latency.clone(),
        );
        registry.register_with_unit(
            "sent",
            "Bytes of discovery responses written, by resource type",
            Unit::Bytes,
            metrics.bytes_sent.clone(),
        );
        metrics
    }

    pub(crate) fn connected(&self, mode: Mode) -> Gauge {
        let mode = match mode {
            Mode::Sotw => "sotw",
            Mode::Delta => "delta",
        };
        self.connected.get_or_create(&ModeLabels { mode }).clone()
    }

    pub(crate) fn pushed(
        &self,
        type_url: &str,
        bytes: usize,
        since_snapshot: Option<std::time::Duration>,
    ) {
        let labels = labels(type_url);
        self.pushes.get_or_create(&labels).inc();
        self.bytes_sent.get_or_create(&labels).inc_by(bytes as u64);
        if let Some(latency) = since_snapshot {
            self.push_latency
                .get_or_create(&labels)
                .observe(latency.as_secs_f64());
        }
    }

    pub(crate) fn acked(&self, type_url: &str, latency: std::time::Duration) {
        self.ack_latency
            .get_or_create(&labels(type_url))
            .observe(latency.as_secs_f64());
    }

    pub(crate) fn nacked(&self, type_url: &str) {
        self.nacks.get_or_create(&labels(type_url)).inc();
    }

    /// Total pushes of one type so far (tests and benchmarks).
    pub fn pushes(&self, type_url: &str) -> u64 {
        self.pushes.get_or_create(&labels(type_url)).get()
    }

    /// Total NACKs of one type so far.
    pub fn nacks(&self, type_url: &str) -> u64 {
        self.nacks.get_or_create(&labels(type_url)).get()
    }

    /// Total bytes sent for one type so far.
    pub fn bytes_sent(&self, type_url: &str) -> u64 {
        self.bytes_sent.get_or_create(&labels(type_url)).get()
    }
}

fn labels(type_url: &str) -> TypeLabels {
    TypeLabels {
        r#type: type_url::short_name(type_url).to_owned(),
    }
}
