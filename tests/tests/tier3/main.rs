//! Tier 3: a real kube-apiserver + etcd on loopback, `helm install` of `charts/wayguard`,
//! `wayguard serve --kubernetes` run out of cluster with a token of the chart's ServiceAccount
//! (so the chart's RBAC is what is exercised), `kubectl apply` of the seed examples adapted to
//! loopback, and a real Envoy from `wayguard bootstrap` enforcing them.
//!
//! Needs `cargo xtask tools --kube` (etcd, kube-apiserver, kubectl, helm) and
//! `cargo xtask tools --envoy`; a missing tool fails the test with the install step. Each test
//! owns its cluster; the tests of this binary run one at a time (2-core machines), each bounded
//! by [`common::TEST_TIMEOUT`] once it holds the lock. Phase timings go to stderr uncaptured.

mod chart;
mod common;
mod leader;
mod seeds;
mod shutdown;
mod startup;
