//! RSA signing keys, generated in-process (never written to the repository).
//!
//! RSA-2048 key generation takes seconds in a debug build, so a test process keeps a small
//! pool of keys, each generated once on first use ([`prewarm`] starts all of them in
//! background threads). The slots have fixed roles so the keys that must differ do:
//! [`ISSUER_SLOT`], [`SECOND_ISSUER_SLOT`], [`FOREIGN_SLOT`] (a key no issuer serves, for
//! "bad signature"), [`ROTATION_SLOT`].

use std::sync::{Arc, Once, OnceLock};

use anyhow::{Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};

/// Number of pooled keys.
pub const SLOTS: usize = 4;
/// The default key of the first issuer.
pub const ISSUER_SLOT: usize = 0;
/// The default key of a second issuer.
pub const SECOND_ISSUER_SLOT: usize = 1;
/// A key no issuer serves: tokens signed with it fail verification.
pub const FOREIGN_SLOT: usize = 2;
/// The key an issuer rotates to.
pub const ROTATION_SLOT: usize = 3;

/// An RSA private key in the forms the harness needs.
#[derive(Debug)]
pub struct RsaKey {
    pkcs1_der: Vec<u8>,
    n: String,
    e: String,
}

impl RsaKey {
    /// Generates a fresh RSA-2048 key (slow in debug builds; prefer [`rsa_key`]).
    pub fn generate() -> Result<Self> {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
            .map_err(|e| anyhow!("RSA key generation: {e}"))?;
        let der = key
            .to_pkcs1_der()
            .map_err(|e| anyhow!("PKCS#1 encoding: {e}"))?;
        Ok(Self {
            pkcs1_der: der.as_bytes().to_vec(),
            n: URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            e: URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        })
    }

    /// The signing key for `jsonwebtoken`.
    pub fn encoding_key(&self) -> EncodingKey {
        EncodingKey::from_rsa_der(&self.pkcs1_der)
    }

    /// The verification key for `jsonwebtoken` (from the public modulus and exponent).
    pub fn decoding_key(&self) -> Result<DecodingKey> {
        DecodingKey::from_rsa_components(&self.n, &self.e).map_err(|e| anyhow!("{e}"))
    }

    /// The public JWK (`kty RSA`, `alg RS256`, `use sig`) with `kid`.
    pub fn public_jwk(&self, kid: &str) -> Value {
        json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": self.n, "e": self.e})
    }
}

type Slot = OnceLock<Result<Arc<RsaKey>, String>>;
static POOL: [Slot; SLOTS] = [const { OnceLock::new() }; SLOTS];

/// The pooled key in `slot` (generated on first use; blocks while it is generated).
pub fn rsa_key(slot: usize) -> Result<Arc<RsaKey>> {
    let cell = POOL
        .get(slot)
        .ok_or_else(|| anyhow!("key slot {slot} out of range (< {SLOTS})"))?;
    cell.get_or_init(|| {
        RsaKey::generate()
            .map(Arc::new)
            .map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// [`rsa_key`] without blocking the async runtime.
pub async fn rsa_key_async(slot: usize) -> Result<Arc<RsaKey>> {
    tokio::task::spawn_blocking(move || rsa_key(slot))
        .await
        .map_err(|e| anyhow!("key generation task: {e}"))?
}

/// Starts generating every pooled key in two background threads (idempotent): one walks the
/// slots upwards, one downwards, so both cores work and slot 0 (the first issuer's key) is
/// ready first.
pub fn prewarm() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| {
            for slot in 0..SLOTS {
                let _ = rsa_key(slot);
            }
        });
        std::thread::spawn(|| {
            for slot in (0..SLOTS).rev() {
                let _ = rsa_key(slot);
            }
        });
    });
}
