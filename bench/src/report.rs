//! Figures: percentiles, the goals table and the JSON summary.

use std::fmt::Write as _;

use serde_json::{Value, json};

/// Nearest-rank percentile (`p` in 0..=100) of unsorted values; `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v.get(rank.clamp(1, v.len()) - 1).copied()
}

/// `p50 / p99 / max` in milliseconds, or `n/a`.
pub fn dist_ms(values: &[f64]) -> String {
    match (
        percentile(values, 50.0),
        percentile(values, 99.0),
        percentile(values, 100.0),
    ) {
        (Some(a), Some(b), Some(c)) => format!("p50 {a:.1} ms, p99 {b:.1} ms, max {c:.1} ms"),
        _ => "n/a".into(),
    }
}

/// Human bytes.
pub fn bytes(b: f64) -> String {
    if b.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b.abs() >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// One row of the goals table.
pub struct Goal {
    /// What is measured.
    pub what: String,
    /// The target, as text.
    pub target: String,
    /// The measurement, as text.
    pub measured: String,
    /// Met, missed, or not measured.
    pub met: Option<bool>,
}

impl Goal {
    /// A row comparing `value` against `limit` (met when `value <= limit`).
    pub fn at_most(
        what: String,
        target: &str,
        value: Option<f64>,
        shown: String,
        limit: f64,
    ) -> Self {
        Self {
            what,
            target: target.into(),
            measured: shown,
            met: value.map(|v| v <= limit),
        }
    }

    fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        }
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        json!({"goal": self.what, "target": self.target, "measured": self.measured, "met": self.met})
    }
}

/// Renders rows as an aligned text table.
pub fn table(goals: &[Goal]) -> String {
    let header = ["goal", "target", "measured", "verdict"];
    let rows: Vec<[&str; 4]> = goals
        .iter()
        .map(|g| {
            [
                g.what.as_str(),
                g.target.as_str(),
                g.measured.as_str(),
                g.verdict(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: [&str; 4]| {
        let mut s = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            let _ = write!(s, "| {cell:<w$} ");
        }
        s.push('|');
        s
    };
    let mut out = render(header) + "\n";
    for w in widths {
        let _ = write!(out, "|{}", "-".repeat(w + 2));
    }
    out.push_str("|\n");
    for row in rows {
        out.push_str(&render(row));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn table_is_aligned() {
        let t = table(&[Goal::at_most(
            "x".into(),
            "<= 1",
            Some(2.0),
            "2".into(),
            1.0,
        )]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].contains("MISSED"));
        assert!(lines[1].starts_with("|---"));
    }
}
