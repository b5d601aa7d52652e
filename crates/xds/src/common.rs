//! State shared by the SotW and Delta connection state machines: nonces, the ACK/NACK
//! bookkeeping, introspection status and metrics.

use std::{collections::BTreeMap, sync::Arc};

use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::time::Instant;

use crate::{
    ConnectionHandle, Metrics, NackStatus, Snapshot,
    names::Names,
    registry::{SyncTracker, unix_ms_now},
    type_url,
};

/// The last response sent for one type.
#[derive(Debug)]
struct Sent {
    nonce: String,
    version: String,
    at: Instant,
    answered: bool,
}

/// How a request relates to the last response of its type.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// No response of this type was sent yet on this stream (any nonce is accepted).
    Initial,
    /// The request answers the latest response (ACK or NACK).
    Current,
    /// The request answers an older response: its ACK/NACK is ignored.
    Stale,
}

#[derive(Debug)]
pub(crate) struct ConnCore {
    pub(crate) handle: ConnectionHandle,
    pub(crate) metrics: Metrics,
    pub(crate) snapshot: Option<Arc<Snapshot>>,
    sync: SyncTracker,
    next_nonce: u64,
    sent: BTreeMap<String, Sent>,
}

impl ConnCore {
    pub(crate) fn new(handle: ConnectionHandle, metrics: Metrics) -> Self {
        Self {
            handle,
            metrics,
            snapshot: None,
            sync: SyncTracker::default(),
            next_nonce: 0,
            sent: BTreeMap::new(),
        }
    }

    pub(crate) fn next_nonce(&mut self) -> String {
        self.next_nonce += 1;
        self.next_nonce.to_string()
    }

    /// Classifies `nonce` against the last response of `type_url`.
    pub(crate) fn reply_kind(&self, type_url: &str, nonce: &str) -> Reply {
        match self.sent.get(type_url) {
            None => Reply::Initial,
            Some(sent) if sent.nonce == nonce => Reply::Current,
            Some(_) => Reply::Stale,
        }
    }

    /// Records a response about to be written.
    pub(crate) fn on_sent(&mut self, type_url: &str, nonce: &str, version: &str, resources: usize) {
        self.sent.insert(
            type_url.to_owned(),
            Sent {
                nonce: nonce.to_owned(),
                version: version.to_owned(),
                at: Instant::now(),
                answered: false,
            },
        );
        self.sync.on_sent([(type_url, nonce)]);
        self.handle.update(|s| {
            let t = s.types.entry(type_url.to_owned()).or_default();
            t.last_sent_version = Some(version.to_owned());
            t.last_sent_nonce = Some(nonce.to_owned());
            t.resources = resources;
        });
    }

    /// Records the ACK (`error` is `None`) or NACK of the current response of `type_url`.
    /// `acked_version` is the version the client reports as applied (SotW), or `None` for Delta,
    /// where an ACK applies the version that was sent.
    pub(crate) fn on_reply(
        &mut self,
        type_url: &str,
        acked_version: Option<&str>,
        error: Option<&RpcStatus>,
    ) {
        let Some(sent) = self.sent.get_mut(type_url) else {
            return;
        };
        let first_answer = !sent.answered;
        sent.answered = true;
        let nonce = sent.nonce.clone();
        let rejected_version = sent.version.clone();
        let elapsed = sent.at.elapsed();
        let acked_version = acked_version.unwrap_or(&rejected_version).to_owned();
        let handle = &self.handle;
        handle.update(|s| {
            self.sync
                .on_reply(&mut s.sync, type_url, &nonce, error.is_some())
        });
        match error {
            Some(error) => {
                self.metrics.nacked(type_url);
                let node = handle.update(|s| s.node_id.clone());
                tracing::warn!(
                    node_id = %node,
                    r#type = type_url::short_name(type_url),
                    version = %rejected_version,
                    %nonce,
                    error = %error.message,
                    "Envoy rejected configuration (NACK); it keeps serving its previous version"
                );
                handle.update(|s| {
                    let t = s.types.entry(type_url.to_owned()).or_default();
                    t.last_nack = Some(NackStatus {
                        version: rejected_version,
                        nonce,
                        message: error.message.clone(),
                        at_unix_ms: unix_ms_now(),
                    });
                    if !acked_version.is_empty()
                        && acked_version != t.last_nack.as_ref().map_or("", |n| n.version.as_str())
                    {
                        t.last_acked_version = Some(acked_version.clone());
                    }
                });
            }
            None => {
                if first_answer {
                    self.metrics.acked(type_url, elapsed);
                }
                handle.update(|s| {
                    let t = s.types.entry(type_url.to_owned()).or_default();
                    t.last_acked_version = Some(acked_version);
                });
            }
        }
    }

    /// Records that the client reports already having `version` (reconnect without a response).
    pub(crate) fn on_already_applied(&mut self, type_url: &str, version: &str, resources: usize) {
        self.handle.update(|s| {
            let t = s.types.entry(type_url.to_owned()).or_default();
            t.last_acked_version = Some(version.to_owned());
            t.resources = resources;
        });
    }

    /// Publishes the subscription of `type_url` to the status.
    pub(crate) fn on_subscription(&mut self, type_url: &str, names: &Names) {
        self.handle.update(|s| {
            let t = s.types.entry(type_url.to_owned()).or_default();
            t.wildcard = names.is_wildcard();
            t.names = names.explicit().iter().cloned().collect();
        });
    }

    /// A new snapshot was processed and produced responses `(type URL, nonce)`.
    pub(crate) fn on_snapshot_done<'a>(
        &mut self,
        responses: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        let Some(version) = self.snapshot.as_ref().map(|s| s.version()) else {
            return;
        };
        let sync = &mut self.sync;
        self.handle
            .update(|s| sync.on_snapshot(&mut s.sync, version, responses));
    }

    /// Wakes registry waiters after a batch of updates.
    pub(crate) fn notify(&self) {
        self.handle.notify();
    }
}
