//! wayguard-xds
