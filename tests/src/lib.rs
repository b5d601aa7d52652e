//! Shared harness for the end-to-end tiers (tier 2: real Envoy against `wayguard serve`).
//!
//! Everything runs on loopback with free ports; every child process is owned by a guard that
//! stops it by PID; every wait polls with a deadline.
//!
//! - [`tools`]: find Envoy (and later tools) from `$WAYGUARD_TOOLS/tools.env` or the
//!   environment; a missing tool is an error naming `cargo xtask tools --envoy`.
//! - [`process`]: [`process::ChildGuard`], output captured to files, SIGTERM then SIGKILL.
//! - [`wayguard`]: the binary (`$WAYGUARD_BIN`, else `cargo build -p wayguard` once per test
//!   process into the test's own target dir and profile), `serve` and `bootstrap`.
//! - [`envoy`]: Envoy from a bootstrap, admin API helpers (stats, config dump, listener live).
//! - [`echo`]: a backend that returns the request as JSON.
//! - [`issuer`] and [`keys`]: a JWT issuer with discovery, JWKS, minting, rotation, stop/start.
//! - [`pki`]: CA, server and SPIFFE client certificates, and their Secret/ConfigMap YAML.
//! - [`http`]: a rustls (ring) reqwest client, with or without a client certificate.
//! - [`yaml`]: Gateway, Service + EndpointSlice, HTTPRoute, seed examples.
//! - [`seeds`]: the seed examples as both tiers use them: file names, stand-ins for their
//!   issuers, token claims for seed 01's audience, seed 04 with its fix.
//! - [`scenario`]: all of the above wired together, with request assertions that report the
//!   request, expected vs got, and the wayguard/Envoy logs.

//!
//! Running: `cargo xtask tools --envoy` once, then `cargo test -p wayguard-tests` (tier 2 is the
//! `tier2` test target; each test runs in SotW and Delta mode). Environment:
//!
//! | variable | effect |
//! |---|---|
//! | `WAYGUARD_TOOLS` | tools cache with `tools.env` (default `~/.cache/wayguard-tools`) |
//! | `WAYGUARD_ENVOY` | Envoy binary, overrides `tools.env` |
//! | `WAYGUARD_BIN` | a prebuilt `wayguard` to test (nothing is built) |
//! | `WAYGUARD_TEST_LOG` | wayguard's log filter (default `info`) |
//! | `WAYGUARD_TEST_KEEP` | keep every scenario dir (always kept when a check failed) |
//!
//! A kept scenario dir holds `config/`, `logs/`, `envoy.yaml`, and dumps taken just before
//! teardown: `envoy-config_dump.json`, `envoy-stats.txt`, `wayguard-status.json`,
//! `wayguard-connections.json`, `wayguard-config_dump.json`, `wayguard-metrics.txt`.

#![deny(missing_docs)]

pub mod echo;
pub mod envoy;
pub mod http;
pub mod issuer;
pub mod keys;
pub mod kube;
pub mod pki;
pub mod poll;
pub mod ports;
pub mod process;
pub mod scenario;
mod scenario_checks;
pub mod seeds;
pub mod server;
pub mod tools;
pub mod wayguard;
pub mod yaml;

pub use crate::echo::{EchoBackend, EchoRequest};
pub use crate::envoy::Envoy;
pub use crate::http::{HttpClient, Req, Resp};
pub use crate::issuer::{IssuerOptions, JwtIssuer};
pub use crate::pki::Pki;
pub use crate::scenario::{Scenario, ScenarioBuilder};
pub use crate::wayguard::XdsMode;
