//! wayguard-jwks
