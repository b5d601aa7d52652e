//! Which TCP ports a process listens on (from `/proc`), to prove everything stays on loopback.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Context, Result, bail};

/// Socket inodes a process holds (`/proc/<pid>/fd/* -> socket:[inode]`).
fn socket_inodes(pid: u32) -> Result<BTreeSet<u64>> {
    let dir = format!("/proc/{pid}/fd");
    let mut inodes = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(entry) = entry else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse().ok())
        {
            inodes.insert(inode);
        }
    }
    Ok(inodes)
}

/// Decodes a `/proc/net/tcp{,6}` address (`0100007F:1F90`): the kernel prints each 32-bit
/// word of the address as a host-order integer, the port as a plain number.
fn decode(addr: &str) -> Option<SocketAddr> {
    let (ip, port) = addr.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in 0..ip.len() / 8 {
        let word = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match <[u8; 4]>::try_from(bytes.as_slice()) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?)),
    };
    Some(SocketAddr::new(ip, port))
}

/// The TCP addresses process `pid` listens on.
pub fn listening(pid: u32) -> Result<Vec<SocketAddr>> {
    let inodes = socket_inodes(pid)?;
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).with_context(|| format!("reading {table}"))?;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            if *state != "0A" || !inode.parse().is_ok_and(|i: u64| inodes.contains(&i)) {
                continue;
            }
            if let Some(addr) = decode(local) {
                out.push(addr);
            }
        }
    }
    Ok(out)
}

/// Whether `addr` is a loopback address (also `::ffff:127.x.y.z`).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Fails when process `name` (`pid`) listens on anything but loopback.
pub fn assert_loopback_only(name: &str, pid: u32) -> Result<Vec<SocketAddr>> {
    let all = listening(pid)?;
    let wide: Vec<&SocketAddr> = all.iter().filter(|a| !is_loopback(a)).collect();
    if !wide.is_empty() {
        bail!("{name} (pid {pid}) listens beyond loopback: {wide:?} (all: {all:?})");
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses_decode() {
        assert_eq!(
            decode("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().expect("addr"))
        );
        assert_eq!(
            decode("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().expect("addr"))
        );
        assert_eq!(
            decode("0000000000000000FFFF00000100007F:0050"),
            Some("[::ffff:127.0.0.1]:80".parse().expect("addr"))
        );
        assert!(is_loopback(&"[::ffff:127.0.0.1]:80".parse().expect("addr")));
        assert!(!is_loopback(&"0.0.0.0:80".parse().expect("addr")));
    }

    #[test]
    fn a_listener_of_this_process_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let found = assert_loopback_only("self", std::process::id()).expect("listening");
        assert!(found.contains(&addr), "{addr} not in {found:?}");
    }
}
