//! wayguard-runtime: what every long-lived part of wayguard runs on, so the control plane, the
//! ext_authz service and the STS share one way to start, serve, become ready and stop.
//!
//! - [`Drain`]: one shutdown signal every server, stream and task takes.
//! - [`Readiness`]: named blockers; `/ready` names the ones still held.
//! - [`Supervisor`]: owns every task, exits non-zero when one ends unexpectedly, drains in
//!   [`Stage`] order within a deadline.
//! - [`ServerConfig`] / [`Server`]: one builder for every listener (address, TLS, HTTP/2 limits,
//!   drain), gRPC and HTTP.
//! - [`Debounce`] / [`Debouncer`]: the sans-I/O debounce between sources and translation.
//!
//! Models: ztunnel's `drain.rs` and `readiness.rs`, linkerd2 policy-controller's runtime (a
//! dead lease task ends the process), kubert's `initialized.rs`.

pub mod debounce;
pub mod drain;
pub mod readiness;
pub mod server;
pub mod supervisor;

pub use debounce::{Debounce, Debouncer};
pub use drain::{Drain, DrainTrigger};
pub use readiness::{BlockReady, Pending, Readiness, ReadyState};
pub use server::{Limits, PeerInfo, Server, ServerConfig};
pub use supervisor::{Stage, Supervisor, SupervisorError};

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the process");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
