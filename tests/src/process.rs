//! Child processes owned by a test: output captured to files, stopped by PID on drop.
//!
//! [`ChildGuard`] is `wayguard_testkit::process::ChildGuard`, shared with xtask (which runs the
//! same cluster and redis-server): [`ChildGuard::spawn`] redirects stdout and stderr to
//! `<log_dir>/<name>.stdout` and `<name>.stderr` (appending); dropping the guard sends SIGTERM to
//! that PID, waits up to the stop timeout, then sends SIGKILL; it prints the tail of both logs
//! when it drops during a panic.

pub use wayguard_testkit::process::{ChildGuard, STOP_TIMEOUT};
