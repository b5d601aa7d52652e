//! Sans-I/O state machine of one State-of-the-World ADS stream.
//!
//! Responses carry the type's snapshot version. For wildcard subscriptions (LDS/CDS) a response
//! holds every resource (omission means deletion). For named subscriptions (RDS/EDS/SDS/ECDS) a
//! snapshot change sends only the changed resources, as the xDS spec allows for those types; a
//! grown subscription gets the full set of requested resources.

use std::{collections::BTreeMap, sync::Arc};

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use crate::{
    ConnectionHandle, Metrics, Snapshot, Version, VersionedResource,
    common::{ConnCore, Reply},
    error::ConnectionError,
    names::Names,
    type_url,
};

/// Suffix of the version of a make-before-break response that still carries resources about to
/// be removed (so a client that only ACKed that response never looks up-to-date on reconnect).
const WARMING_SUFFIX: &str = "+warming";

/// One SotW ADS stream's protocol state. Feed it requests and snapshots; write what it returns.
#[derive(Debug)]
pub struct SotwConnection {
    core: ConnCore,
    types: BTreeMap<String, TypeState>,
}

#[derive(Debug, Default)]
struct TypeState {
    names: Names,
    /// What the client has been sent for this type (and so should have), by name.
    sent: BTreeMap<String, VersionedResource>,
    /// A full response is owed (first request or grown subscription) once a snapshot exists.
    owed: bool,
    /// The type version `sent` was last reconciled with: an unchanged type is skipped in O(1).
    seen: Option<Version>,
}

/// What one type needs after a snapshot change.
struct Plan {
    type_url: String,
    full: bool,
    upserts: Vec<VersionedResource>,
    removals: bool,
}

// === impl SotwConnection ===

impl SotwConnection {
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
    /// A request whose nonce is not the latest response's is stale and ignored entirely (Envoy
    /// follows up with a current one). Otherwise it ACKs or NACKs (`error_detail`) the latest
    /// response and replaces the subscription; a grown subscription is answered with the full set.
    pub fn handle_request(
        &mut self,
        request: DiscoveryRequest,
    ) -> Result<Vec<DiscoveryResponse>, ConnectionError> {
        if request.type_url.is_empty() {
            return Err(ConnectionError::MissingTypeUrl);
        }
        let type_url = request.type_url.as_str();
        let first = !self.types.contains_key(type_url);
        match self.core.reply_kind(type_url, &request.response_nonce) {
            Reply::Stale => {
                tracing::debug!(r#type = type_url::short_name(type_url), nonce = %request.response_nonce, "ignoring stale request");
                return Ok(Vec::new());
            }
            Reply::Current => {
                self.core.on_reply(
                    type_url,
                    Some(&request.version_info),
                    request.error_detail.as_ref(),
                );
            }
            Reply::Initial => {}
        }

        let state = self.types.entry(type_url.to_owned()).or_default();
        let grew = state
            .names
            .apply_sotw(type_url, first, &request.resource_names);
        self.core.on_subscription(type_url, &state.names);
        // Forget resources the client unsubscribed from: it dropped them.
        let names = &state.names;
        state.sent.retain(|name, _| names.contains(name));
        state.owed |= grew;

        let mut responses = Vec::new();
        if let Some(snapshot) = self.core.snapshot.clone() {
            // A reconnecting wildcard client that already has exactly this version needs nothing.
            if first
                && state.names.is_wildcard()
                && !request.version_info.is_empty()
                && request.version_info == snapshot.type_version(type_url).to_string()
            {
                state.sent = view(&snapshot, type_url, &state.names);
                state.owed = false;
                state.seen = Some(snapshot.type_version(type_url));
                self.core
                    .on_already_applied(type_url, &request.version_info, state.sent.len());
            } else if state.owed {
                let entries = view(&snapshot, type_url, &state.names);
                responses.push(self.respond(&snapshot, type_url, entries, false));
            }
        }
        self.core.notify();
        Ok(responses)
    }

    /// Handles a new snapshot of the connection's gateway; returns the responses to write, in
    /// warming order (CDS, EDS, SDS, ECDS, LDS, RDS). Only subscribed types whose resources, as
    /// seen through the subscription, changed get a response. Removals from a wildcard type are
    /// deferred until the later types are sent (make-before-break).
    pub fn handle_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Vec<DiscoveryResponse> {
        self.core.snapshot = Some(snapshot.clone());
        let mut order: Vec<&String> = self.types.keys().collect();
        order.sort_by_key(|t| (type_url::warming_rank(t), t.as_str()));

        let mut plans = Vec::new();
        for type_url in order {
            let state = &self.types[type_url];
            if !state.owed && state.seen == Some(snapshot.type_version(type_url)) {
                continue;
            }
            let new = view(&snapshot, type_url, &state.names);
            let upserts: Vec<VersionedResource> = new
                .values()
                .filter(|e| {
                    state
                        .sent
                        .get(e.resource.name())
                        .is_none_or(|s| s.version != e.version)
                })
                .cloned()
                .collect();
            let removals = state.sent.keys().any(|name| !new.contains_key(name));
            if state.owed || !upserts.is_empty() || removals {
                plans.push(Plan {
                    type_url: type_url.clone(),
                    full: state.owed || state.names.is_wildcard(),
                    upserts,
                    removals,
                });
            }
        }

        let mut responses = Vec::new();
        let mut deferred = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let later_changes = plans[i + 1..]
                .iter()
                .any(|p| !p.upserts.is_empty() || p.full);
            let new = view(&snapshot, &plan.type_url, &self.types[&plan.type_url].names);
            if !plan.full {
                // Named subscription: send what changed; removal is not expressible in SotW.
                let state = self.state_mut(&plan.type_url);
                state.sent.retain(|name, _| new.contains_key(name));
                if !plan.upserts.is_empty() {
                    let upserts = plan
                        .upserts
                        .iter()
                        .map(|e| (e.resource.name().to_owned(), e.clone()))
                        .collect();
                    responses.push(self.respond(&snapshot, &plan.type_url, upserts, true));
                }
            } else if plan.removals && later_changes {
                deferred.push(plan.type_url.clone());
                if !plan.upserts.is_empty() {
                    let mut entries = self.types[&plan.type_url].sent.clone();
                    entries.extend(new);
                    responses.push(self.respond_warming(&snapshot, &plan.type_url, entries));
                }
            } else {
                responses.push(self.respond(&snapshot, &plan.type_url, new, false));
            }
        }
        for type_url in deferred.iter().rev() {
            let entries = view(&snapshot, type_url, &self.types[type_url].names);
            responses.push(self.respond(&snapshot, type_url, entries, false));
        }
        for (type_url, state) in &mut self.types {
            state.seen = Some(snapshot.type_version(type_url));
        }

        self.core.on_snapshot_done(
            responses
                .iter()
                .map(|r| (r.type_url.as_str(), r.nonce.as_str())),
        );
        self.core.notify();
        responses
    }

    fn state_mut(&mut self, type_url: &str) -> &mut TypeState {
        self.types.entry(type_url.to_owned()).or_default()
    }

    /// Builds a response with `entries`; `partial` keeps the previously sent ones recorded.
    fn respond(
        &mut self,
        snapshot: &Snapshot,
        type_url: &str,
        entries: BTreeMap<String, VersionedResource>,
        partial: bool,
    ) -> DiscoveryResponse {
        let seen = Some(snapshot.type_version(type_url));
        let version = snapshot.type_version(type_url).to_string();
        self.build(seen, type_url, version, entries, partial)
    }

    fn respond_warming(
        &mut self,
        snapshot: &Snapshot,
        type_url: &str,
        entries: BTreeMap<String, VersionedResource>,
    ) -> DiscoveryResponse {
        let version = format!("{}{WARMING_SUFFIX}", snapshot.type_version(type_url));
        self.build(None, type_url, version, entries, false)
    }

    fn build(
        &mut self,
        seen: Option<Version>,
        type_url: &str,
        version: String,
        entries: BTreeMap<String, VersionedResource>,
        partial: bool,
    ) -> DiscoveryResponse {
        let nonce = self.core.next_nonce();
        let resources = entries
            .values()
            .map(|e| e.resource.as_any().clone())
            .collect();
        let state = self.state_mut(type_url);
        if partial {
            state.sent.extend(entries);
        } else {
            state.sent = entries;
        }
        state.owed = false;
        state.seen = seen;
        let count = state.sent.len();
        self.core.on_sent(type_url, &nonce, &version, count);
        DiscoveryResponse {
            version_info: version,
            resources,
            type_url: type_url.to_owned(),
            nonce,
            ..Default::default()
        }
    }
}

/// The resources of `type_url` in `snapshot` that `names` selects.
fn view(snapshot: &Snapshot, type_url: &str, names: &Names) -> BTreeMap<String, VersionedResource> {
    let Some(resources) = snapshot.resources(type_url) else {
        return BTreeMap::new();
    };
    if names.is_wildcard() {
        return resources.resources().clone();
    }
    names
        .explicit()
        .iter()
        .filter_map(|name| resources.get(name).map(|e| (name.clone(), e.clone())))
        .collect()
}

#[cfg(test)]
#[path = "sotw_tests.rs"]
mod tests;
