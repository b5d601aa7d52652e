//! wayguard-index
