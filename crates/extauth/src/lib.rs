//! wayguard-extauth: the ext_authz service that gives stock Envoy browser login (Solo-style
//! AuthConfig `oauth2.oidcAuthorizationCode`).
//!
//! - [`flow`]: the login's decisions as pure functions (transaction, callback checks, id_token
//!   claim checks, session freshness, what reaches the upstream), tested on a synthetic clock.
//! - [`engine::Engine`]: the policies in force and the I/O around the decisions, behind two
//!   seams: [`idp::Idp`] (discovery, token endpoint, JWKS) and [`store::SessionStore`] (Redis).
//! - [`service::ExtAuthService`]: the `envoy.service.auth.v3.Authorization` gRPC handler.
//! - [`crypto`], [`cookies`], [`redirect`]: sealing, cookies, the open-redirect guard.
//!
//! The security pitfalls of AUTH-FLOWS.md 4.3 and where each is handled: open redirect
//! ([`redirect`]), weak or replayable state ([`flow::check_callback`], 256-bit values, sealed
//! transaction cookie, single use through the store), cookie collisions (names derived per
//! AuthConfig, `wayguard_core::login::default_cookie_names`), JS-readable cookies (HttpOnly,
//! Secure unless `http://`), stale transaction cookies (cleared at the callback, expired after 10
//! minutes, a failed open restarts nothing silently), refresh edge cases ([`flow::Session::refreshed`]
//! keeps tokens the provider did not reissue and refuses a changed `sub`), path-matching bypasses
//! (nothing is exempted inside the service: exemptions are Envoy routes), GET logout CSRF
//! ([`logout`]), JWKS rotation and refetch storms ([`provider`]), XHR redirects
//! ([`request::HttpRequest::is_navigation`]).

pub mod cookies;
pub mod crypto;
pub mod engine;
pub mod flow;
pub mod idp;
mod login;
pub mod logout;
pub mod metrics;
pub mod provider;
pub mod redirect;
pub mod request;
pub mod service;
pub mod store;

pub use engine::{Engine, StoreFactory, redis_factory};
pub use idp::{HttpIdp, Idp};
pub use metrics::Metrics;
pub use request::{Decision, HttpRequest};
pub use service::ExtAuthService;
pub use store::{Owner, SessionStore};
