//! The fail-closed JWKS inlined when no key set is known for a provider.

/// The seed of the never-matching modulus (see [`never_matching_jwks`]).
pub const NEVER_MATCHING_SEED: &str = "wayguard never-matching JWKS RSA modulus v1";

/// The base64url (unpadded) modulus derived from [`NEVER_MATCHING_SEED`]; a unit test
/// re-derives it.
macro_rules! never_matching_n {
    () => {
        "vR4TmscuDlq_F93vl-BR8-NYz3FPY9W2GvK5pqgdAYGuM4NWphRn0nEQtGs7VeL5d48ndMH6-LSa0vAKEyok1Wa3GPe1KcNOvdnWX0WPboaWMOBuCu2kbT51jJVTZNGi2f2nGTtm9coxpRz9vBG_I6_EqP7FcTjCfaykf3rtlRckSk54G3u0GSR7EPSGwasgs9CyPM7HpLcUvd8kX-WLtFhPu4widWJOSmcSE6zMlA24fLPuiSbvPx1k2mUborRwze7D96nn1GsaIn8wplpobFQ5-lousTkSVyFhpd9884pVDEvrRrxd5TVkPu_4-xMId7ZbTVb_WxauZ7JEx4Qt_Q"
    };
}
const NEVER_MATCHING_N: &str = never_matching_n!();

/// The JWKS to inline when the first fetch for a provider failed and no key set is known.
const NEVER_MATCHING_JWKS: &str = concat!(
    r#"{"keys":[{"e":"AQAB","kty":"RSA","n":""#,
    never_matching_n!(),
    r#""}]}"#
);

/// A syntactically valid JWKS that can never validate any token: the fail-closed fallback.
///
/// It holds one RSA public key, `e = AQAB` (65537) and a 2048-bit modulus `n`, with no `kid`
/// and no `alg`. Envoy accepts it (a listener with an empty or invalid `local_jwks` is NACKed,
/// istio #24629, #39411), so requests without a token still pass (`allow_missing`) while every
/// token for the provider gets 401 ("Jwt verification fails" for RS/PS tokens, "Jwks doesn't have
/// key to match kid or alg" for the others).
///
/// # Why nobody can sign for it (nothing up my sleeve)
///
/// `n` is not the product of primes someone chose; it is the big-endian number made of the
/// 256 bytes `SHA-256(SEED || 0x00) || SHA-256(SEED || 0x01) || ... || SHA-256(SEED || 0x07)`
/// where `SEED` is the ASCII string [`NEVER_MATCHING_SEED`]
/// (`"wayguard never-matching JWKS RSA modulus v1"`), with the top bit of the first byte and
/// the low bit of the last byte set (so it is 2048 bits and odd). Anyone can re-derive it (a
/// unit test does). Forging a signature needs the factorization of `n`; nobody generated `n`
/// from primes, so nobody knows it, and factoring a 2048-bit number is infeasible. No private
/// key is generated, stored or embedded anywhere in wayguard.
///
/// # Compared to istiod
///
/// istiod's old `FakeJwks` was a real RSA key pair whose *private* key shipped in the Istio
/// source, so anyone could mint tokens that every proxy in fail-closed mode accepted (the
/// `jwks-private-key-leak` release note, CVSS 8.7). Its replacement, `PublicOnlyJwks`
/// (1.29.1), is a public key whose private half was discarded: safe as long as you trust that
/// it was discarded. This key is equal to `PublicOnlyJwks` in behaviour (same shape, no
/// `kid`, 401 for every token) and better in assurance: there never was a private half, and
/// anyone can check that from the seed.
pub fn never_matching_jwks() -> &'static str {
    NEVER_MATCHING_JWKS
}

/// The unpadded base64url modulus of [`never_matching_jwks`].
pub fn never_matching_modulus() -> &'static str {
    NEVER_MATCHING_N
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rustls::SupportedCipherSuite;
    use rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;

    use super::*;
    use crate::KeySet;

    fn sha256(data: &[u8]) -> Vec<u8> {
        let SupportedCipherSuite::Tls13(suite) = TLS13_AES_128_GCM_SHA256 else {
            panic!("not a TLS 1.3 suite");
        };
        suite.common.hash_provider.hash(data).as_ref().to_vec()
    }

    #[test]
    fn modulus_is_rederived_from_the_documented_seed() {
        let mut n = Vec::new();
        for i in 0u8..8 {
            let mut input = NEVER_MATCHING_SEED.as_bytes().to_vec();
            input.push(i);
            n.extend(sha256(&input));
        }
        n[0] |= 0x80;
        n[255] |= 0x01;
        assert_eq!(URL_SAFE_NO_PAD.encode(&n), NEVER_MATCHING_N);
    }

    #[test]
    fn modulus_is_2048_bits_odd_with_top_bit_set() {
        let n = URL_SAFE_NO_PAD.decode(never_matching_modulus()).unwrap();
        assert_eq!(n.len(), 256);
        assert!(n[0] & 0x80 != 0);
        assert!(n[255] & 1 == 1);
    }

    #[test]
    fn fallback_is_a_valid_public_only_jwks_without_kid() {
        let v: serde_json::Value = serde_json::from_str(never_matching_jwks()).unwrap();
        let keys = v["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let key = keys[0].as_object().unwrap();
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["e"], "AQAB");
        assert_eq!(key["n"], NEVER_MATCHING_N);
        assert!(!key.contains_key("kid"));
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(!key.contains_key(private));
        }
        // It passes our own validation and is already in normalized form.
        let set = KeySet::parse(never_matching_jwks().as_bytes()).unwrap();
        assert_eq!(&**set.json(), never_matching_jwks());
    }
}
