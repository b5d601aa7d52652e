//! wayguard-api
