//! What wayguard tells about itself: `/metrics` (Prometheus text) and its JSON log lines.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Samples of a Prometheus text exposition: `name{labels}` -> value.
pub type MetricSamples = BTreeMap<String, f64>;

/// Parses the text exposition format (comments and unparsable lines are skipped).
pub fn parse_metrics(text: &str) -> MetricSamples {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// `after - before` for every series of `after` that changed, skipping histogram buckets.
pub fn metric_deltas(before: &MetricSamples, after: &MetricSamples) -> Vec<(String, f64)> {
    after
        .iter()
        .filter(|(k, _)| !k.contains("_bucket{"))
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d != 0.0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Mean of a histogram over a window: Δsum / Δcount for the series `base` with `labels` (e.g.
/// `{type="ecds"}` or empty).
pub fn histogram_mean(
    before: &MetricSamples,
    after: &MetricSamples,
    base: &str,
    labels: &str,
) -> Option<(f64, f64)> {
    let get = |m: &MetricSamples, suffix: &str| {
        m.get(&format!("{base}_{suffix}{labels}"))
            .copied()
            .unwrap_or(0.0)
    };
    let count = get(after, "count") - get(before, "count");
    let sum = get(after, "sum") - get(before, "sum");
    (count > 0.0).then(|| (sum / count, count))
}

/// One "configuration changed" log line of wayguard.
#[derive(Clone, Debug)]
pub struct ConfigChange {
    /// Log timestamp.
    pub at: SystemTime,
    /// The gateway whose snapshot changed.
    pub gateway: String,
    /// The changed types, as logged.
    pub types: String,
}

/// The "configuration changed" events in wayguard's JSON log (bytes after `from`).
pub fn config_changes(log: &Path, from: u64) -> Vec<ConfigChange> {
    let Ok(bytes) = std::fs::read(log) else {
        return Vec::new();
    };
    let start = usize::try_from(from).unwrap_or(0).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..])
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|v| {
            let fields = v.get("fields")?;
            if fields.get("message")?.as_str()? != "configuration changed" {
                return None;
            }
            Some(ConfigChange {
                at: parse_rfc3339(v.get("timestamp")?.as_str()?)?,
                gateway: fields.get("gateway")?.as_str()?.to_string(),
                types: fields
                    .get("types")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            })
        })
        .collect()
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (UTC, as tracing-subscriber writes it).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: i64 = t.next()?.parse().ok()?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        let scale = 10u32.checked_pow(9 - u32::try_from(digits.len()).ok()?)?;
        digits.parse::<u32>().ok()? * scale
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `later - earlier` in milliseconds, negative when `later` is earlier.
pub fn wall_ms(earlier: SystemTime, later: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamps() {
        let t = parse_rfc3339("2026-11-29T16:38:38.123456Z").expect("timestamp");
        let d = t.duration_since(UNIX_EPOCH).expect("after epoch");
        assert_eq!(d.as_secs(), 1_795_970_318);
        assert_eq!(d.subsec_micros(), 123_456);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
    }

    #[test]
    fn parses_metrics_and_deltas() {
        let before = parse_metrics("# HELP x y\nx_total{type=\"ecds\"} 2\nh_sum 1.5\nh_count 3\n");
        let after = parse_metrics("x_total{type=\"ecds\"} 5\nh_sum 2.5\nh_count 5\n# EOF\n");
        assert_eq!(
            metric_deltas(&before, &after)[2],
            ("x_total{type=\"ecds\"}".to_string(), 3.0)
        );
        assert_eq!(histogram_mean(&before, &after, "h", ""), Some((0.5, 2.0)));
    }
}
