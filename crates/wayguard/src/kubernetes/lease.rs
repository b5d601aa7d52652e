//! Leader election on a `coordination.k8s.io/v1` Lease: one replica writes status (and, later,
//! rotates STS signing keys); every replica serves xDS.
//!
//! Expiry is judged like client-go's leaderelection: from when *this* replica last saw the
//! record change, not from the timestamps in it, so clock skew between replicas does not matter.
//! A leader that shuts down releases the lease so another takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the release namespace).
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews and others retry.
    pub retry_period: Duration,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// Runs the election until `shutdown`; the receiver tells whether this replica leads.
pub fn spawn(
    client: Client,
    config: LeaseConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let mut observed: Option<(String, Instant)> = None; // (resourceVersion, when seen)
        tokio::pin!(shutdown);
        loop {
            let leading = match step(&api, &config, &mut observed).await {
                Ok(leading) => leading,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %config.name, "leader election step failed");
                    // Without a successful renewal we must assume we lost the lease.
                    false
                }
            };
            if *tx.borrow() != leading {
                tracing::info!(identity = %config.identity, leading, "leadership changed");
                tx.send_replace(leading);
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(config.retry_period) => {}
            }
        }
        if *tx.borrow() {
            tx.send_replace(false);
            if let Err(e) = release(&api, &config).await {
                tracing::warn!(error = %e, "releasing the lease failed; another replica takes over when it expires");
            }
        }
    });
    rx
}

fn spec(config: &LeaseConfig, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(config.lease_duration.as_secs() as i32),
        acquire_time: Some(acquired.unwrap_or_else(now)),
        renew_time: Some(now()),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

/// One round: create, renew, take over an expired lease, or follow. Returns whether we lead.
async fn step(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Option<(String, Instant)>,
) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                ..Default::default()
            },
            spec: Some(spec(config, 0, None)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    let seen_at = match observed {
        Some((v, at)) if *v == version => *at,
        _ => {
            let at = Instant::now();
            *observed = Some((version, at));
            at
        }
    };
    let current = lease.spec.clone().unwrap_or_default();
    let holder = current.holder_identity.clone().unwrap_or_default();
    let duration = Duration::from_secs(current.lease_duration_seconds.unwrap_or(15).max(1) as u64);
    let mine = holder == config.identity;
    let expired = holder.is_empty() || seen_at.elapsed() >= duration;
    if !mine && !expired {
        return Ok(false);
    }
    let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!mine);
    let acquired = if mine {
        current.acquire_time.clone()
    } else {
        None
    };
    lease.spec = Some(spec(config, transitions, acquired));
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(updated) => {
            *observed = updated
                .metadata
                .resource_version
                .map(|v| (v, Instant::now()));
            Ok(true)
        }
        // Someone else wrote first: they lead this round.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(());
    };
    if lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        != Some(config.identity.as_str())
    {
        return Ok(());
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.renew_time = Some(now());
    }
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map(drop)
}
