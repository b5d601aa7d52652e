//! What the resolver tells its callers: key set state, per-entry status and diagnostics.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::fallback::never_matching_jwks;

/// The state of one `(issuer, jwks_uri)` entry, as returned by `lookup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySetState {
    /// A validated key set is known.
    Ready {
        /// Normalized JWKS JSON to inline as `local_jwks`.
        jwks: Arc<str>,
        /// When this key set was last fetched successfully.
        fetched_at: Instant,
        /// The latest refresh failed; `jwks` is the last good set (stale-while-failing).
        stale: bool,
    },
    /// The first fetch has not completed yet.
    Pending,
    /// The first fetch failed and no key set is known. Retries follow the backoff.
    Failed {
        /// The error of the latest attempt (names the URL).
        error: Arc<str>,
    },
}

// === impl KeySetState ===

impl KeySetState {
    /// The JWKS to inline: the key set when ready, otherwise the fail-closed
    /// [`never_matching_jwks`].
    pub fn jwks_or_fallback(&self) -> &str {
        match self {
            Self::Ready { jwks, .. } => jwks,
            Self::Pending | Self::Failed { .. } => never_matching_jwks(),
        }
    }

    /// Whether a usable key set is known (possibly stale).
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready { .. })
    }
}

/// Per-entry status, for a `JwksResolved` condition and `/debug/jwks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum JwksStatus {
    /// Keys known and the latest fetch succeeded.
    Ok,
    /// The first fetch has not completed yet.
    Pending,
    /// Keys known, but the latest refresh failed: the last good set is served.
    Stale {
        /// The error of the latest attempt (names the URL).
        message: String,
    },
    /// No keys known: the fail-closed JWKS is inlined and every token is rejected.
    Failed {
        /// The error of the latest attempt (names the URL).
        message: String,
    },
}

// === impl JwksStatus ===

impl JwksStatus {
    /// `true` for [`JwksStatus::Ok`] (a `JwksResolved` condition would be `True`).
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }

    /// A short machine-readable reason: `Resolved`, `Pending`, `RefreshFailed`, `FetchFailed`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Ok => "Resolved",
            Self::Pending => "Pending",
            Self::Stale { .. } => "RefreshFailed",
            Self::Failed { .. } => "FetchFailed",
        }
    }

    /// The error message, if any.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Ok | Self::Pending => None,
            Self::Stale { message } | Self::Failed { message } => Some(message),
        }
    }
}

/// Diagnostics for one entry (`/debug/jwks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryInfo {
    /// The issuer of the rule.
    pub issuer: String,
    /// The configured `jwksUri`; `None` means OIDC discovery.
    pub jwks_uri: Option<String>,
    /// The URL of the latest fetch (the discovered one when `jwks_uri` is `None`).
    pub fetched_uri: Option<String>,
    /// Status of the entry.
    #[serde(flatten)]
    pub status: JwksStatus,
    /// Number of usable keys in the served set (0 when none is known).
    pub key_count: usize,
    /// `kid`s of the served set, sorted.
    pub kids: Vec<String>,
    /// Keys dropped from the latest good body, with the reason.
    pub dropped_keys: Vec<String>,
    /// Seconds since the latest successful fetch.
    pub last_success_age_secs: Option<u64>,
    /// Error of the latest attempt, if it failed.
    pub last_error: Option<String>,
    /// Seconds until the next scheduled fetch (`None` while a fetch is in flight).
    pub next_refresh_in_secs: Option<u64>,
    /// Whether a fetch is in flight.
    pub in_flight: bool,
    /// Failed attempts since the latest success.
    pub consecutive_failures: u32,
    /// Seconds since the latest `lookup`.
    pub last_used_age_secs: u64,
    /// The timeout used for each request.
    #[serde(serialize_with = "serialize_secs")]
    pub timeout: Duration,
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The answer to `request_refresh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRequest {
    /// A fetch will start now.
    Scheduled,
    /// A fetch is already in flight for this entry.
    InFlight,
    /// The entry was fetched too recently: the refresh is deferred and happens in `retry_after`.
    RateLimited {
        /// Time until a forced refresh is allowed again.
        retry_after: Duration,
    },
    /// No entry for this `(issuer, jwks_uri)`: nothing looked it up.
    UnknownEntry,
}
