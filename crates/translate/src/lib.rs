//! wayguard-translate
