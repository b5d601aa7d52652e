//! Child processes owned by a test or an xtask command: output captured to files, stopped by PID
//! on drop.
//!
//! [`ChildGuard::spawn`] redirects stdout and stderr to `<log_dir>/<name>.stdout` and
//! `<name>.stderr` (appending, so a restarted process keeps its history). Dropping the guard
//! sends SIGTERM to that PID, waits up to the stop timeout (polling), then sends SIGKILL. The
//! child is reaped only by the guard, so its PID cannot be reused while the guard holds it:
//! a signal never reaches another process. When the guard drops during a panic it prints the
//! tail of both logs, so a failing test shows what its processes said.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::process::{Pid, Signal, kill_process};

/// Default time between SIGTERM and SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running child process, stopped by PID when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    exit: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
    stop_timeout: Duration,
}

fn open_log(path: &Path, header: &str) -> Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{header}").with_context(|| format!("writing {}", path.display()))?;
    Ok(file)
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed and stdout/stderr appended to files in `log_dir`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        let stdout = log_dir.join(format!("{name}.stdout"));
        let stderr = log_dir.join(format!("{name}.stderr"));
        let header = format!("=== {name}: {cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(open_log(&stdout, &header)?)
            .stderr(open_log(&stderr, &header)?);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.to_string(),
            child,
            exit: None,
            stdout,
            stderr,
            stop_timeout: STOP_TIMEOUT,
        })
    }

    /// Changes the time between SIGTERM and SIGKILL.
    pub fn with_stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has exited (reaps it), else `None`.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    fn signal(&mut self, signal: Signal) {
        if self.try_exit().is_some() {
            return; // reaped: the PID may belong to someone else now
        }
        let pid = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw);
        if let Some(pid) = pid {
            let _ = kill_process(pid, signal);
        }
    }

    /// Stops the process: SIGTERM, wait up to the stop timeout, then SIGKILL. Returns the exit
    /// status (`None` only if even SIGKILL did not end it within 5 s).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.try_exit() {
            return Some(status);
        }
        self.signal(Signal::TERM);
        let timeout = self.stop_timeout;
        if let Some(status) = until_blocking(timeout, Duration::from_millis(10), || self.try_exit())
        {
            return Some(status);
        }
        self.kill()
    }

    /// SIGKILL now and reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        self.signal(Signal::KILL);
        until_blocking(Duration::from_secs(5), Duration::from_millis(10), || {
            self.try_exit()
        })
    }

    /// Path of the captured stdout.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    /// Path of the captured stderr.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("{out}{err}")
    }

    /// Log lines (stdout then stderr) that contain `needle`.
    pub fn log_lines_containing(&self, needle: &str) -> Vec<String> {
        self.output()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// The last `lines` lines of stdout and of stderr, labelled, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        for (label, path) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let body = std::fs::read_to_string(path).unwrap_or_default();
            let all: Vec<&str> = body.lines().collect();
            let skip = all.len().saturating_sub(lines);
            text.push_str(&format!(
                "----- {} {label} ({}, last {} of {} lines) -----\n",
                self.name,
                path.display(),
                all.len() - skip,
                all.len()
            ));
            for line in &all[skip..] {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

/// Polls `check` every `interval` until it returns `Some` or `timeout` passes (for synchronous
/// code such as process teardown).
pub fn until_blocking<T>(
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(interval);
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(60));
        }
        self.stop();
    }
}
