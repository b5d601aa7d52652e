//! Test tooling shared by `cargo xtask` and the end-to-end harness (`wayguard-tests`), with
//! nothing heavier than std, anyhow, base64 and rustix so that xtask stays quick to build:
//!
//! - [`tools`]: where `cargo xtask tools` installs the test tools and the `tools.env` it writes.
//! - [`process`]: [`process::ChildGuard`], a child process with its output in files, stopped by
//!   PID (SIGTERM, then SIGKILL).
//! - [`ports`]: free loopback ports below the kernel's ephemeral range.
//! - [`cluster`]: [`cluster::KubeCluster`], a throwaway etcd + kube-apiserver on loopback with
//!   its own PKI (`cargo xtask cluster`, the `cargo xtask tools --kube` smoke test and tier 3).

#![deny(missing_docs)]

pub mod cluster;
pub mod ports;
pub mod process;
pub mod tools;
