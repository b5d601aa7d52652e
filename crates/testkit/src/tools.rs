//! Where `cargo xtask tools` installs the test tools, and the `tools.env` file it writes there
//! (`KEY=/abs/path` lines) for test harnesses to read.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The tools directory: `$WAYGUARD_TOOLS`, else `$HOME/.cache/wayguard-tools` (else
/// `$TMPDIR/wayguard-tools` without a home), made absolute.
pub fn tools_dir() -> PathBuf {
    let dir = match std::env::var_os("WAYGUARD_TOOLS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => PathBuf::from(home).join(".cache/wayguard-tools"),
            _ => std::env::temp_dir().join("wayguard-tools"),
        },
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// Parses a `tools.env` file: `KEY=value` lines, `#` comments and blank lines ignored.
pub fn parse_env_file(text: &str) -> BTreeMap<String, PathBuf> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), PathBuf::from(value.trim())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_skips_comments_blanks_and_junk() {
        let parsed = parse_env_file("# c\nWAYGUARD_ENVOY=/a/b\n\nWAYGUARD_ETCD = /c\nbogus\n");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed.get("WAYGUARD_ETCD"), Some(&PathBuf::from("/c")));
        assert_eq!(parsed.get("WAYGUARD_ENVOY"), Some(&PathBuf::from("/a/b")));
    }
}
