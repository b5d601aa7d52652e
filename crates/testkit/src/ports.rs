//! Free loopback ports.
//!
//! Ports handed to other processes (etcd and kube-apiserver, Envoy listeners and admin,
//! wayguard's listen addresses, the issuer, redis-server) are chosen **below the kernel's
//! ephemeral range** (`/proc/sys/net/ipv4/ip_local_port_range`): a port found free by binding
//! `127.0.0.1:0` and released is an ephemeral port, which the kernel may give to any outgoing
//! connection (of this test or another) before the intended process binds it. Candidates are random in
//! `[15000, ephemeral start)`, checked by binding, and never handed out twice by one process.
//! If that range is too small, a kernel-chosen port is used instead.

use std::collections::HashSet;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, bail};

const LOWEST: u16 = 15000;

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// The first port of the kernel's ephemeral range (32768 if unknown).
pub fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

fn claim(port: u16) -> bool {
    handed_out()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(port)
}

/// A free TCP port on 127.0.0.1, outside the ephemeral range when possible, not handed out
/// before by this process.
pub fn free_port() -> Result<u16> {
    let high = ephemeral_start();
    if high > LOWEST + 1000 {
        let span = u64::from(high - LOWEST);
        for _ in 0..200 {
            let offset = u16::try_from(random_u64() % span).unwrap_or(0);
            let port = LOWEST + offset;
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() && claim(port) {
                return Ok(port);
            }
        }
    }
    for _ in 0..64 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
        let port = listener.local_addr().context("local_addr")?.port();
        drop(listener);
        if claim(port) {
            return Ok(port);
        }
    }
    bail!("no free loopback port")
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let a = free_port().expect("a");
        let b = free_port().expect("b");
        assert_ne!(a, b);
        TcpListener::bind(loopback(a)).expect("bindable");
        if ephemeral_start() > LOWEST + 1000 {
            assert!(a >= LOWEST && a < ephemeral_start(), "{a}");
        }
    }
}
