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

/// Runs the election until `drain` is signaled, publishing on `leading` whether this replica
/// leads; a leader then releases the lease so another replica takes over within one retry period.
///
/// Errors of one round are logged and retried (and count as "not leading"); the task itself only
/// ends at the drain, so its supervisor treats any other end as fatal.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    leading: watch::Sender<bool>,
    drain: wayguard_runtime::Drain,
) -> anyhow::Result<()> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut observed: Option<(String, Instant)> = None; // (resourceVersion, when seen)
    loop {
        // A round is not cut short by the drain (a renewal in flight must not be lost without a
        // release), but it is bounded like client-go's renew deadline.
        let deadline = config.retry_period.max(Duration::from_secs(1));
        let now_leading = match tokio::time::timeout(deadline, step(&api, &config, &mut observed))
            .await
        {
            Ok(Ok(leading)) => leading,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, lease = %config.name, "leader election step failed");
                // Without a successful renewal we must assume we lost the lease.
                false
            }
            Err(_) => {
                tracing::warn!(lease = %config.name, timeout = ?deadline, "leader election step timed out");
                false
            }
        };
        if *leading.borrow() != now_leading {
            tracing::info!(identity = %config.identity, leading = now_leading, "leadership changed");
            leading.send_replace(now_leading);
        }
        tokio::select! {
            biased;
            () = drain.signaled() => break,
            () = tokio::time::sleep(config.retry_period) => {}
        }
    }
    leading.send_replace(false);
    // Released even when the last round failed: the apiserver may still name this replica.
    match release(&api, &config).await {
        Ok(true) => {
            tracing::info!(identity = %config.identity, lease = %config.name, "released the lease")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "releasing the lease failed; another replica takes over when it expires")
        }
    }
    Ok(())
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

async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(false);
    };
    if lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        != Some(config.identity.as_str())
    {
        return Ok(false);
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.renew_time = Some(now());
    }
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map(|_| true)
}
