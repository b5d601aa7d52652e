//! Free loopback ports, below the kernel's ephemeral range and never handed out twice by one
//! process: `wayguard_testkit::ports`, shared with xtask and with the tier-3 cluster (so its
//! ports and the harness's come from the same pool).

pub use wayguard_testkit::ports::{ephemeral_start, free_port, loopback};
