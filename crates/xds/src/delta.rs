//! Sans-I/O state machine of one Delta (incremental) ADS stream.
//!
//! Per type the connection remembers which version of each resource the client has (seeded from
//! `initial_resource_versions` on reconnect), sends only resources whose version differs, and
//! lists resources that disappeared from the snapshot in `removed_resources`.

use std::{collections::BTreeMap, sync::Arc};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as DeltaResource,
};

use crate::{
    ConnectionHandle, Metrics, Snapshot, Version, VersionedResource,
    common::{ConnCore, Reply},
    error::ConnectionError,
    names::Names,
    type_url,
};

/// One Delta ADS stream's protocol state. Feed it requests and snapshots; write what it returns.
#[derive(Debug)]
pub struct DeltaConnection {
    core: ConnCore,
    types: BTreeMap<String, TypeState>,
}

#[derive(Debug, Default)]
struct TypeState {
    names: Names,
    /// Resource versions the client has (or was sent), by name; `None` for a version this
    /// control plane did not mint (always outdated).
    known: BTreeMap<String, Option<Version>>,
    /// The type version `known` was last reconciled with: an unchanged type is skipped in O(1).
    seen: Option<Version>,
    /// An initial (possibly empty) response is owed to a fresh wildcard subscription, so Envoy
    /// finishes initializing even when the type has no resources.
    owed: bool,
}

/// What one type needs after a change.
struct Diff {
    type_url: String,
    upserts: Vec<VersionedResource>,
    removals: Vec<String>,
}

// === impl DeltaConnection ===

impl DeltaConnection {
    /// A connection whose status lives in `handle` (see [`crate::ConnectionRegistry::register`]).
    pub fn new(handle: ConnectionHandle, metrics: Metrics) -> Self {
        Self {
            core: ConnCore::new(handle, metrics),
            types: BTreeMap::new(),
        }
    }

    /// The connection's registry handle (status for `/debug/connections`).
    pub fn handle(&self) -> &ConnectionHandle {
        &self.core.handle
    }

    /// The snapshot the connection currently serves.
    pub fn snapshot(&self) -> Option<&Arc<Snapshot>> {
        self.core.snapshot.as_ref()
    }

    /// Handles one request; returns the responses to write (at most one, for its type).
    ///
    /// Subscription changes always apply (they are deltas and cannot be dropped); the ACK/NACK
    /// part counts only when the nonce is the latest response's. A NACK leaves the client's
    /// resources as sent: the next snapshot that changes them sends new versions.
    pub fn handle_request(
        &mut self,
        request: DeltaDiscoveryRequest,
    ) -> Result<Vec<DeltaDiscoveryResponse>, ConnectionError> {
        if request.type_url.is_empty() {
            return Err(ConnectionError::MissingTypeUrl);
        }
        let type_url = request.type_url.as_str();
        let first = !self.types.contains_key(type_url);
        match self.core.reply_kind(type_url, &request.response_nonce) {
            Reply::Current if !request.response_nonce.is_empty() => {
                self.core
                    .on_reply(type_url, None, request.error_detail.as_ref());
            }
            Reply::Stale if !request.response_nonce.is_empty() => {
                tracing::debug!(r#type = type_url::short_name(type_url), nonce = %request.response_nonce, "stale nonce: ignoring ACK/NACK, applying subscription changes");
            }
            _ => {}
        }

        let state = self.types.entry(type_url.to_owned()).or_default();
        if first {
            state.known = request
                .initial_resource_versions
                .iter()
                .map(|(name, version)| (name.clone(), Version::parse(version)))
                .collect();
        }
        let (added, wildcard_on) = state.names.apply_delta(
            type_url,
            first,
            &request.resource_names_subscribe,
            &request.resource_names_unsubscribe,
        );
        // The client forgets resources it no longer subscribes to.
        let names = &state.names;
        state.known.retain(|name, _| names.contains(name));
        if first && wildcard_on && state.known.is_empty() {
            state.owed = true;
        }
        self.core.on_subscription(type_url, &state.names);

        // A plain ACK/NACK of an unchanged type needs no diff.
        let reconcile = first || wildcard_on || !added.is_empty();
        let mut responses = Vec::new();
        if let Some(snapshot) = self.core.snapshot.clone()
            && (reconcile || state.seen != Some(snapshot.type_version(type_url)))
        {
            let diff = self.diff(&snapshot, type_url, reconcile);
            if let Some(response) = self.respond(&snapshot, diff, true) {
                responses.push(response);
            }
            if let Some(state) = self.types.get_mut(type_url) {
                state.seen = Some(snapshot.type_version(type_url));
            }
        }
        self.core.notify();
        Ok(responses)
    }

    /// Handles a new snapshot of the connection's gateway; returns the responses to write.
    ///
    /// Updates go out in warming order (CDS, EDS, SDS, ECDS, LDS, RDS); removals of a type go
    /// with its updates unless a later type also changes, in which case they are sent after all
    /// updates, in reverse order (make-before-break).
    pub fn handle_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Vec<DeltaDiscoveryResponse> {
        self.core.snapshot = Some(snapshot.clone());
        let mut order: Vec<String> = self.types.keys().cloned().collect();
        order.sort_by_key(|t| (type_url::warming_rank(t), t.clone()));
        let diffs: Vec<Diff> = order
            .iter()
            .map(|t| self.diff(&snapshot, t, false))
            .filter(|d| {
                !d.upserts.is_empty() || !d.removals.is_empty() || self.types[&d.type_url].owed
            })
            .collect();

        let mut responses = Vec::new();
        let mut deferred = Vec::new();
        for i in 0..diffs.len() {
            let later_upserts = diffs[i + 1..].iter().any(|d| !d.upserts.is_empty());
            let Diff {
                type_url,
                upserts,
                removals,
            } = &diffs[i];
            let now_removals = if later_upserts && !removals.is_empty() {
                deferred.push(Diff {
                    type_url: type_url.clone(),
                    upserts: Vec::new(),
                    removals: removals.clone(),
                });
                Vec::new()
            } else {
                removals.clone()
            };
            let diff = Diff {
                type_url: type_url.clone(),
                upserts: upserts.clone(),
                removals: now_removals,
            };
            if let Some(response) = self.respond(&snapshot, diff, true) {
                responses.push(response);
            }
        }
        for diff in deferred.into_iter().rev() {
            if let Some(response) = self.respond(&snapshot, diff, false) {
                responses.push(response);
            }
        }

        self.core.on_snapshot_done(
            responses
                .iter()
                .map(|r| (r.type_url.as_str(), r.nonce.as_str())),
        );
        self.core.notify();
        responses
    }

    /// What the client of `type_url` lacks compared to `snapshot`.
    /// Types already reconciled with this snapshot's type version are skipped unless `force`
    /// (a subscription grew).
    fn diff(&self, snapshot: &Snapshot, type_url: &str, force: bool) -> Diff {
        let mut diff = Diff {
            type_url: type_url.to_owned(),
            upserts: Vec::new(),
            removals: Vec::new(),
        };
        let Some(state) = self.types.get(type_url) else {
            return diff;
        };
        if !force && !state.owed && state.seen == Some(snapshot.type_version(type_url)) {
            return diff;
        }
        let resources = snapshot.resources(type_url);
        let mut consider = |entry: &VersionedResource| {
            let known = state.known.get(entry.resource.name());
            if known != Some(&Some(entry.version)) {
                diff.upserts.push(entry.clone());
            }
        };
        match resources {
            Some(resources) if state.names.is_wildcard() => {
                resources.resources().values().for_each(&mut consider)
            }
            Some(resources) => state
                .names
                .explicit()
                .iter()
                .filter_map(|name| resources.get(name))
                .for_each(&mut consider),
            None => {}
        }
        diff.removals = state
            .known
            .keys()
            .filter(|name| resources.is_none_or(|r| r.get(name).is_none()))
            .cloned()
            .collect();
        diff
    }

    /// Builds the response for `diff` (None when there is nothing to say). `owed_ok` lets an owed
    /// initial response go out empty.
    fn respond(
        &mut self,
        snapshot: &Snapshot,
        diff: Diff,
        owed_ok: bool,
    ) -> Option<DeltaDiscoveryResponse> {
        let state = self.types.get_mut(&diff.type_url)?;
        let owed = owed_ok && state.owed;
        if diff.upserts.is_empty() && diff.removals.is_empty() && !owed {
            return None;
        }
        state.owed = false;
        let mut resources = Vec::with_capacity(diff.upserts.len());
        for entry in &diff.upserts {
            let version = entry.version.to_string();
            state
                .known
                .insert(entry.resource.name().to_owned(), Some(entry.version));
            resources.push(DeltaResource {
                name: entry.resource.name().to_owned(),
                version,
                resource: Some(entry.resource.as_any().clone()),
                ..Default::default()
            });
        }
        for name in &diff.removals {
            state.known.remove(name);
        }
        let count = state.known.len();
        let version = snapshot.type_version(&diff.type_url).to_string();
        let nonce = self.core.next_nonce();
        self.core.on_sent(&diff.type_url, &nonce, &version, count);
        Some(DeltaDiscoveryResponse {
            system_version_info: version,
            resources,
            type_url: diff.type_url,
            removed_resources: diff.removals,
            nonce,
            ..Default::default()
        })
    }
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
