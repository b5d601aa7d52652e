//! wayguard-core
