//! Turns [`Measurements`] into figures: the goals table, the breakdown of where time and memory
//! go, and a JSON summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use serde_json::{Value, json};

use crate::observe;
use crate::probe;
use crate::report::{Goal, bytes, dist_ms, percentile, table};
use crate::scenario::Measurements;
use crate::setup;

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1e3
}

/// The report text and its JSON form.
pub fn summarize(m: &Measurements) -> (String, Value) {
    let o = &m.options;
    let n = m.fleet.len();
    let k = m.rounds.len();
    let gateway = m.fleet.with_records(|_, r| r.gateway);
    let affected: Vec<usize> = (0..n).filter(|i| gateway[*i] == 0).collect();
    let proxies_affected = affected.len() + usize::from(m.envoy_present);

    // Convergence: per round, the last affected client's ACK after the write.
    let mut convergence = Vec::new();
    let mut first_ack = Vec::new();
    let mut per_client = Vec::new();
    let mut client_turnaround: Vec<f64> = Vec::new();
    for (i, round) in m.rounds.iter().enumerate() {
        let r = i + 1;
        let acks: Vec<f64> = affected
            .iter()
            .filter_map(|id| {
                m.fleet
                    .with_record(*id, |rec| rec.rounds.get(&r).copied())
                    .flatten()
            })
            .map(|t| {
                client_turnaround.push(ms(t.received, t.acked));
                ms(round.write.at, t.acked)
            })
            .collect();
        per_client.extend(acks.iter().copied());
        if acks.len() == affected.len() && !acks.is_empty() {
            convergence.push(acks.iter().copied().fold(0.0, f64::max));
            first_ack.push(acks.iter().copied().fold(f64::MAX, f64::min));
        }
    }
    let enforce: Vec<f64> = m
        .rounds
        .iter()
        .filter_map(|r| r.enforced.map(|s| ms(r.write.at, s.done)))
        .collect();

    // Traffic during the change phase.
    let now = m.fleet.with_records(|_, r| r.by_type.clone());
    let mut unaffected_bytes = 0u64;
    let mut unaffected_responses = 0u64;
    let mut affected_types: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    for (i, types) in now.iter().enumerate() {
        let before = m.types_before.get(i);
        for (t, (count, b)) in types {
            let (c0, b0) = before.and_then(|x| x.get(t)).copied().unwrap_or_default();
            let (dc, db) = (count - c0, b - b0);
            if gateway[i] == 0 {
                let e = affected_types.entry(t).or_default();
                e.0 += dc;
                e.1 += db;
            } else {
                unaffected_bytes += db;
                unaffected_responses += dc;
            }
        }
    }
    let affected_bytes: u64 = affected_types.values().map(|v| v.1).sum();
    let per_change = |x: u64| x as f64 / (affected.len().max(1) * k.max(1)) as f64;

    let mem_per_client = (m.rss_synced as f64 - m.rss_idle as f64) / n.max(1) as f64;
    let cpu_per_proxy_us =
        m.cpu_changes.as_secs_f64() * 1e6 / (k.max(1) * proxies_affected.max(1)) as f64;
    let initial_bytes: u64 = m
        .types_before
        .iter()
        .flat_map(|t| t.values().map(|v| v.1))
        .sum();

    let goals = vec![
        Goal::at_most(
            format!(
                "{} of {n} clients converged after a one-policy change (p99 of {k} rounds)",
                affected.len()
            ),
            "<= 150 ms",
            percentile(&convergence, 99.0),
            dist_ms(&convergence),
            150.0,
        ),
        Goal::at_most(
            "resident memory per connected client".into(),
            "<= 16 KiB",
            Some(mem_per_client),
            format!(
                "{} ((RSS {} - {}) / {n})",
                bytes(mem_per_client),
                bytes(m.rss_synced as f64),
                bytes(m.rss_idle as f64)
            ),
            16.0 * 1024.0,
        ),
        Goal::at_most(
            "real Envoy enforcing a change after the file write (p99)".into(),
            "<= 100 ms",
            m.envoy_present
                .then(|| percentile(&enforce, 99.0))
                .flatten(),
            if m.envoy_present {
                dist_ms(&enforce)
            } else {
                "no Envoy (--no-envoy)".into()
            },
            100.0,
        ),
        Goal::at_most(
            format!(
                "bytes sent to the {} unaffected clients",
                n - affected.len()
            ),
            "0",
            Some(unaffected_bytes as f64),
            format!("{unaffected_bytes} B in {unaffected_responses} responses"),
            0.0,
        ),
        Goal::at_most(
            "control-plane CPU per change per affected proxy (PERFORMANCE.md G3)".into(),
            "<= 30 us",
            Some(cpu_per_proxy_us),
            format!(
                "{cpu_per_proxy_us:.0} us ({:.1} ms CPU per change / {proxies_affected} proxies)",
                m.cpu_changes.as_secs_f64() * 1e3 / k.max(1) as f64
            ),
            30.0,
        ),
    ];

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nwayguard xDS scale benchmark: {n} {} clients over {} gateways ({} on gateway 0), {k} changes ({:?} writes), {}",
        if o.delta { "Delta" } else { "SotW" },
        o.gateways,
        affected.len(),
        o.write_mode,
        if m.envoy_present {
            "1 real Envoy on gateway 0"
        } else {
            "no real Envoy"
        }
    );
    out.push('\n');
    out.push_str(&table(&goals));
    out.push('\n');
    let _ = writeln!(out, "details:");
    let _ = writeln!(
        out,
        "  per-client ACK after the write (all rounds x affected clients): {}",
        dist_ms(&per_client)
    );
    let _ = writeln!(
        out,
        "  first affected client ACKed: {}",
        dist_ms(&first_ack)
    );
    let _ = writeln!(
        out,
        "  simulated client receive -> ACK: {}",
        dist_ms(&client_turnaround)
    );
    let _ = writeln!(
        out,
        "  rounds converged before the deadline: {} of {k}",
        m.rounds.iter().filter(|r| r.converged).count()
    );
    let _ = writeln!(
        out,
        "  traffic per change per affected client: {} ({})",
        bytes(per_change(affected_bytes)),
        affected_types
            .iter()
            .filter(|(_, (c, _))| *c > 0)
            .map(|(t, (c, b))| format!(
                "{t}: {:.2} responses, {}",
                per_change(*c),
                bytes(per_change(*b))
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        out,
        "  initial sync: {:.2} s for {n} clients, {:.0} ms wayguard CPU, {} per client",
        m.sync_time.as_secs_f64(),
        m.cpu_sync.as_secs_f64() * 1e3,
        bytes(initial_bytes as f64 / n.max(1) as f64)
    );
    let _ = writeln!(
        out,
        "  wayguard RSS: {} idle, {} with {n} HTTP/2 connections (no stream), {} with {n} synced ADS streams, {} at the end",
        bytes(m.rss_idle as f64),
        bytes(m.rss_connected as f64),
        bytes(m.rss_synced as f64),
        bytes(m.rss_end as f64)
    );
    let _ = writeln!(
        out,
        "  memory per client: {} for the HTTP/2 connection, {} for the ADS stream and its state",
        bytes((m.rss_connected as f64 - m.rss_idle as f64) / n.max(1) as f64),
        bytes((m.rss_synced as f64 - m.rss_connected as f64) / n.max(1) as f64)
    );
    let envoy_cpu = m.cpu_envoy_changes.unwrap_or_default();
    let others = m
        .machine_busy_changes
        .saturating_sub(m.cpu_changes + m.cpu_bench_changes + envoy_cpu);
    let _ = writeln!(
        out,
        "  CPU during the change phase ({:.1} s wall, {} CPUs): wayguard {:.0} ms, simulated clients + prober {:.0} ms, Envoy {:.0} ms, everything else on the machine {:.0} ms; load average {} before, {} after",
        m.wall_changes.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, usize::from),
        m.cpu_changes.as_secs_f64() * 1e3,
        m.cpu_bench_changes.as_secs_f64() * 1e3,
        envoy_cpu.as_secs_f64() * 1e3,
        others.as_secs_f64() * 1e3,
        m.loadavg.0,
        m.loadavg.1
    );
    let (other, flaps) = envoy_anomalies(m);
    if m.envoy_present {
        let _ = writeln!(
            out,
            "  prober during changes: {other} answers neither old nor new decision, {flaps} flaps back to the old one"
        );
    }

    // Where the time goes: wayguard's log and metrics.
    let changes = observe::config_changes(&m.wayguard_log, m.log_offset);
    let gw0 = setup::gateway_id(0);
    let mut to_snapshot = Vec::new();
    for round in &m.rounds {
        if let Some(c) = changes
            .iter()
            .find(|c| c.gateway == gw0 && c.at >= round.write.wall)
        {
            to_snapshot.push(observe::wall_ms(round.write.wall, c.at));
        }
    }
    let other_gateways = changes.iter().filter(|c| c.gateway != gw0).count();
    let types: Vec<&str> = changes
        .iter()
        .filter(|c| c.gateway == gw0)
        .map(|c| c.types.as_str())
        .take(1)
        .collect();
    let _ = writeln!(out, "breakdown:");
    let _ = writeln!(
        out,
        "  file write -> gateway 0 snapshot set (wayguard log): {} [{} of {k} rounds matched; changed types {}]",
        dist_ms(&to_snapshot),
        to_snapshot.len(),
        types.first().copied().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "  snapshots changed for other gateways during the changes: {other_gateways}"
    );
    let (before, after) = (&m.metrics_before, &m.metrics_after);
    let mean = |base: &str, labels: &str| {
        observe::histogram_mean(before, after, base, labels)
            .map(|(v, c)| format!("{:.2} ms mean over {c:.0}", v * 1e3))
            .unwrap_or_else(|| "n/a".into())
    };
    let _ = writeln!(
        out,
        "  translate every gateway + set snapshots: {}",
        mean("wayguard_config_translate_seconds", "")
    );
    let _ = writeln!(
        out,
        "  snapshot set -> ECDS response written: {}",
        mean("wayguard_xds_push_latency_seconds", "{type=\"ecds\"}")
    );
    let _ = writeln!(
        out,
        "  ECDS response written -> ACK received: {}",
        mean("wayguard_xds_ack_latency_seconds", "{type=\"ecds\"}")
    );
    let _ = writeln!(out, "  metric changes during the changes:");
    for (key, d) in observe::metric_deltas(before, after) {
        if key.starts_with("wayguard_xds_") || key.starts_with("wayguard_config_") {
            let _ = writeln!(out, "    {key} += {d}");
        }
    }
    if let Some(why) = &m.broken {
        let _ = writeln!(out, "\nBROKEN: {why}");
    }

    let json = json!({
        "clients": n, "gateways": o.gateways, "affected_clients": affected.len(), "rounds": k,
        "mode": if o.delta { "delta" } else { "sotw" }, "write_mode": format!("{:?}", o.write_mode),
        "goals": goals.iter().map(Goal::json).collect::<Vec<_>>(),
        "convergence_ms": convergence, "first_ack_ms": first_ack, "enforced_ms": enforce,
        "write_to_snapshot_ms": to_snapshot,
        "unaffected_bytes": unaffected_bytes, "affected_bytes_per_change_per_client": per_change(affected_bytes),
        "cpu_changes_ms": m.cpu_changes.as_secs_f64() * 1e3, "cpu_per_change_per_proxy_us": cpu_per_proxy_us,
        "rss_idle": m.rss_idle, "rss_connected": m.rss_connected, "rss_synced": m.rss_synced, "rss_end": m.rss_end,
        "memory_per_client": mem_per_client, "sync_seconds": m.sync_time.as_secs_f64(),
        "cpu_bench_changes_ms": m.cpu_bench_changes.as_secs_f64() * 1e3,
        "cpu_envoy_changes_ms": m.cpu_envoy_changes.map(|d| d.as_secs_f64() * 1e3),
        "machine_busy_changes_ms": m.machine_busy_changes.as_secs_f64() * 1e3,
        "other_cpu_changes_ms": others.as_secs_f64() * 1e3,
        "wall_changes_s": m.wall_changes.as_secs_f64(),
        "loadavg": [m.loadavg.0, m.loadavg.1],
        "probe_other": other, "probe_flaps": flaps, "broken": m.broken,
    });
    (out, json)
}

fn envoy_anomalies(m: &Measurements) -> (usize, usize) {
    let Some(p) = &m.probe else {
        return (0, 0);
    };
    let samples = p.samples();
    let mut totals = (0, 0);
    for (i, round) in m.rounds.iter().enumerate() {
        let end = m
            .rounds
            .get(i + 1)
            .map_or(round.finished, |next| next.write.at);
        let (other, flaps) = probe::anomalies(
            &samples,
            round.write.at,
            end,
            round.previous,
            round.expected,
        );
        totals.0 += other;
        totals.1 += flaps;
    }
    totals
}
