//! Randomness, sealing and comparisons for the login flow.
//!
//! - Every secret value (state, nonce, PKCE verifier, session id, transaction id) is 32 random
//!   bytes from the OS generator, base64url: 256 bits, far above the 128 required.
//! - [`Sealer`] is AES-256-GCM with a fresh 96-bit nonce per message and the cookie's purpose
//!   (`"login:<authconfig>"`, `"session:<authconfig>"`) as associated data, so a sealed value of one
//!   AuthConfig or purpose never opens as another's.
//! - Comparisons of secrets are constant-time.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// SHA-256 of `value`, base64url (Redis keys never hold a session id in clear).
pub fn digest(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

/// Constant-time equality of two secrets.
pub fn secure_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The key is not 32 bytes.
    #[error("the encryption key must be exactly 32 bytes (got {0})")]
    KeyLength(usize),
    /// Not base64url, too short, tampered, for another purpose or another key.
    #[error("sealed value does not open (tampered, expired key, or another AuthConfig's)")]
    Invalid,
}

/// AES-256-GCM sealing of cookie values.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

const NONCE_LEN: usize = 12;

impl Sealer {
    /// A sealer with a 32-byte key.
    pub fn new(key: &[u8]) -> Result<Self, SealError> {
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| SealError::KeyLength(key.len()))?;
        Ok(Self { cipher })
    }

    /// A sealer with a random key (per process: for values that never leave one replica).
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self {
            cipher: Aes256Gcm::new(&key.into()),
        }
    }

    /// Encrypts `plaintext` bound to `purpose`; base64url of nonce || ciphertext || tag.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        // Encryption with a valid key and nonce cannot fail for inputs under 64 GiB.
        if let Ok(ct) = self.cipher.encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: purpose.as_bytes(),
            },
        ) {
            out.extend_from_slice(&ct);
        }
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Decrypts a value sealed for `purpose`.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed.as_bytes())
            .map_err(|_| SealError::Invalid)?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(SealError::Invalid);
        }
        let (nonce, ct) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Invalid)?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| SealError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_unique() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_purpose() {
        let key = [7u8; 32];
        let s = Sealer::new(&key).expect("key");
        let sealed = s.seal("login:ns/a", b"secret");
        assert_eq!(s.open("login:ns/a", &sealed).expect("opens"), b"secret");
        assert_ne!(sealed, s.seal("login:ns/a", b"secret"), "fresh nonce");
        assert_eq!(s.open("login:ns/b", &sealed), Err(SealError::Invalid));
        assert_eq!(
            Sealer::new(&[8u8; 32])
                .expect("key")
                .open("login:ns/a", &sealed),
            Err(SealError::Invalid)
        );
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert_eq!(s.open("login:ns/a", &tampered), Err(SealError::Invalid));
        assert_eq!(s.open("login:ns/a", "short"), Err(SealError::Invalid));
        assert_eq!(
            Sealer::new(&[0u8; 16]).map(drop),
            Err(SealError::KeyLength(16))
        );
    }

    #[test]
    fn secure_eq_compares_whole_values() {
        assert!(secure_eq("abc", "abc"));
        assert!(!secure_eq("abc", "abd"));
        assert!(!secure_eq("abc", "abcd"));
    }
}
