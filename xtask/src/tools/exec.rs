//! Running external commands with their output in a log file, a timeout, and an error that
//! names the exact command line to retry.
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How a command is shown to a person: `cd DIR && K=V prog args...`, quoted for a POSIX shell.
pub fn display(cmd: &Command) -> String {
    let mut out = String::new();
    if let Some(dir) = cmd.get_current_dir() {
        let _ = write!(out, "cd {} && ", quote(&dir.to_string_lossy()));
    }
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            let _ = write!(
                out,
                "{}={} ",
                key.to_string_lossy(),
                quote(&value.to_string_lossy())
            );
        }
    }
    out.push_str(&quote(&cmd.get_program().to_string_lossy()));
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&quote(&arg.to_string_lossy()));
    }
    out
}

fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Run `cmd` with stdout and stderr appended to `log` (created if needed) and return what it
/// printed. Fails, naming the command and showing the tail of its output, when it exits non-zero
/// or outlives `timeout` (it is then killed).
pub fn run_logged(cmd: &mut Command, log: &Path, timeout: Option<Duration>) -> Result<String> {
    let shown = display(cmd);
    if let Some(parent) = log.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(log)
        .with_context(|| format!("opening log {}", log.display()))?;
    writeln!(file, "$ {shown}").with_context(|| format!("writing {}", log.display()))?;
    let start_offset = file
        .seek(SeekFrom::End(0))
        .with_context(|| format!("seeking {}", log.display()))?;
    let stdout = file
        .try_clone()
        .context("duplicating the log file handle")?;
    let stderr = file
        .try_clone()
        .context("duplicating the log file handle")?;
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for a child process")? {
            break status;
        }
        if timeout.is_some_and(|t| start.elapsed() > t) {
            let _ = child.kill();
            let _ = child.wait();
            let output = read_from(&mut file, start_offset)?;
            bail!(
                "`{shown}` did not finish within {:?} and was killed; its output ({}):\n{}",
                timeout.unwrap_or_default(),
                log.display(),
                tail(&output, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = read_from(&mut file, start_offset)?;
    let _ = writeln!(
        file,
        "# exit: {status}, {:.1}s",
        start.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!(
            "`{shown}` failed ({status}); last lines of its output (full log: {}):\n{}",
            log.display(),
            tail(&output, 40)
        );
    }
    Ok(output)
}

fn read_from(file: &mut File, offset: u64) -> Result<String> {
    file.seek(SeekFrom::Start(offset))
        .context("seeking the log file")?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .context("reading the log file")?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The last `n` lines of `text`, indented.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Write `contents` to `path` (creating parent directories) unless it already holds exactly that;
/// written through a temporary file and a rename so a crash never leaves half a file.
pub fn write_if_changed(path: &Path, contents: &str) -> Result<()> {
    if fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp-wayguard");
    fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))?;
    Ok(())
}

/// FNV-1a, for recipe fingerprints in stamps (stable across Rust versions, unlike `DefaultHasher`).
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_what_needs_it() {
        let mut cmd = Command::new("go");
        cmd.args(["build", "-ldflags=-s -w", "k8s.io/x"])
            .env("GOFLAGS", "-mod=readonly")
            .current_dir("/t/src");
        assert_eq!(
            display(&cmd),
            "cd /t/src && GOFLAGS=-mod=readonly go build '-ldflags=-s -w' k8s.io/x"
        );
    }

    #[test]
    fn fingerprint_is_stable() {
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
        assert_ne!(fingerprint(&["ab", ""]), fingerprint(&["a", "b"]));
    }

    #[test]
    fn run_logged_reports_failures_with_the_command() {
        let dir = std::env::temp_dir().join(format!("wg-exec-test-{}", std::process::id()));
        let log = dir.join("x.log");
        let out = run_logged(
            Command::new("sh").args(["-c", "echo hello"]),
            &log,
            Some(Duration::from_secs(10)),
        )
        .unwrap();
        assert_eq!(out.trim(), "hello");
        let err = run_logged(
            Command::new("sh").args(["-c", "echo boom; exit 3"]),
            &log,
            None,
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("sh -c 'echo boom; exit 3'"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
        let err = run_logged(
            Command::new("sleep").arg("5"),
            &log,
            Some(Duration::from_millis(200)),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("killed"));
        let _ = fs::remove_dir_all(&dir);
    }
}
