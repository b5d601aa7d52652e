//! wayguard-jwks: the JWKS resolver behind RequestAuthentication `jwksUri`.
//!
//! wayguard inlines every remote key set into Envoy's `jwt_authn` `local_jwks`, like istiod
//! (reference/SEMANTICS.md §1.5, §1.6). This crate fetches those key sets and keeps them fresh:
//!
//! - [`JwksResolver::lookup`] is non-blocking. A miss returns [`KeySetState::Pending`] and
//!   starts a fetch in the background; [`JwksResolver::changes`] bumps when the key set of an
//!   entry changes (or a first fetch completes or fails) so the control plane re-translates.
//!   An empty `jwksUri` means OIDC discovery from the issuer.
//! - Every body, on the first fetch and every refresh, is validated and normalized
//!   ([`KeySet::parse`]): a bad body never replaces a good key set (stale-while-failing).
//! - Each `(issuer, jwks_uri)` has its own schedule: refresh every 20 minutes, on failure back
//!   off 1m, 2m, 4m ... 60m, reset by a success. Unlike istiod, one bad URI never slows the
//!   others. Entries unused or not refreshed for 7 days are evicted.
//! - [`JwksResolver::request_refresh`] refetches at once (rate-limited) when a token with an
//!   unknown `kid` shows up; [`JwksResolver::has_kid`] tells whether that is the case.
//! - Fetches go through an always-on SSRF guard ([`SsrfGuard`]): link-local and cloud metadata
//!   addresses are refused after DNS resolution and on every redirect hop.
//! - When no key set is known, inline [`never_matching_jwks`]: a valid JWKS no token can match.
//!
//! The scheduling logic is sans-I/O (the `schedule` module, driven with explicit instants);
//! all time comes from `tokio::time`, so tests run on a paused clock.
//!
//! # Design notes
//!
//! - **Validation drops, it does not strip.** A JWK carrying private members (`d`, `p`, `q`,
//!   `dp`, `dq`, `qi`, `oth`) or a symmetric `k` is dropped whole: its secret is world-readable
//!   at the URL, so tokens signed with it could be forged. Other keys of the same set stay
//!   usable; the drop is logged and listed in [`EntryInfo::dropped_keys`]. A set with no usable
//!   key left is rejected. Unsupported key types and curves are dropped the same way. `use` is
//!   kept but not enforced (Envoy does not either).
//! - **Normalized output.** Only `kty`, `kid`, `alg`, `use` and the public parameters are
//!   inlined, keys sorted by `kid` then full JSON, duplicates removed. Equal sets normalize to
//!   equal strings, so translation output is stable and reordering never triggers a push.
//! - **Per-entry schedules.** Each entry has its own next-fetch instant and failure count;
//!   there is no global ticker (istiod's global backoff let one bad URI slow all others,
//!   istio #51636). A failed first fetch is retried on the same backoff (1m, 2m, ...), and
//!   [`JwksResolver::request_refresh`] can cut the wait short.
//! - **Discovery every time.** Entries without a URI redo OIDC discovery on every refresh
//!   (like istiod), so a changed `jwks_uri` is followed.
//! - **Proxies.** reqwest honours `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY` by default
//!   (so does istiod), and [`HttpConfig::use_env_proxy`] keeps that default. Through a proxy
//!   the proxy resolves host names, so only the pre-connection checks (literal IPs, metadata
//!   host names) apply; block metadata ranges at the proxy as well.
//! - **No jitter.** Refreshes are not jittered; entries are naturally spread by when they were
//!   first looked up.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wayguard_jwks::BuildError> {
//! use wayguard_jwks::{JwksResolver, Metrics, ResolverConfig};
//! let resolver = JwksResolver::new(ResolverConfig::default(), Metrics::default())?;
//! let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
//! let refresher = resolver.spawn(async move { let _ = stop_rx.await; });
//! let state = resolver.lookup("https://idp.example", Some("https://idp.example/jwks"), None);
//! let inline = state.jwks_or_fallback(); // Pending at first: the never-matching JWKS
//! # let _ = inline;
//! let _ = stop_tx.send(());
//! let _ = refresher.await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod error;
mod fallback;
mod fetch;
pub mod jwt;
mod keyset;
mod metrics;
mod resolver;
mod schedule;
mod ssrf;
mod state;

pub use crate::error::{BuildError, FetchError};
pub use crate::fallback::{NEVER_MATCHING_SEED, never_matching_jwks, never_matching_modulus};
pub use crate::fetch::{
    Fetch, FetchFuture, FetchRequest, Fetched, HttpConfig, HttpFetcher, guarded_client,
};
pub use crate::keyset::{InvalidJwks, KeySet};
pub use crate::metrics::{IssuerLabels, Metrics};
pub use crate::resolver::{JwksResolver, ResolverConfig};
pub use crate::schedule::ScheduleConfig;
pub use crate::ssrf::{Blocked, SsrfGuard, SsrfResolver};
pub use crate::state::{EntryInfo, JwksStatus, KeySetState, RefreshRequest};
