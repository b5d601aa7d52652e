//! Verification against generated keys on a synthetic clock: every check, and the attacks the
//! allow-list exists for (`alg: none`, HMAC keyed with the public key, a key of another issuer).

use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;

const ISS: &str = "https://idp.example";
const NOW: u64 = 1_800_000_000;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct TestKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
    public_der: Vec<u8>,
}

fn ec_key(kid: &str) -> TestKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let raw = pair.public_key_raw().to_vec(); // 0x04 || x || y
    TestKey {
        kid: kid.into(),
        encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}),
        public_der: pair.public_key_raw().to_vec(),
    }
}

fn ed_key(kid: &str) -> TestKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    TestKey {
        kid: kid.into(),
        encoding: EncodingKey::from_ed_der(&pair.serialize_der()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(pair.public_key_raw())}),
        public_der: pair.public_key_raw().to_vec(),
    }
}

fn set(keys: &[&TestKey]) -> VerifyingKeys {
    let jwks = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    VerifyingKeys::new(&KeySet::parse(jwks.to_string().as_bytes()).expect("jwks"))
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "aud": "app", "sub": "alice", "iat": NOW, "exp": NOW + 300});
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c
}

fn sign(key: &TestKey, alg: Algorithm, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign")
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn expect() -> Expectations {
    Expectations::new(ISS, vec!["app".into()])
}

#[test]
fn a_good_token_verifies_with_its_claims() {
    let (k1, k2) = (ec_key("k1"), ed_key("k2"));
    let keys = set(&[&k1, &k2]);
    for (key, alg) in [(&k1, Algorithm::ES256), (&k2, Algorithm::EdDSA)] {
        let v = keys
            .verify(&sign(key, alg, &claims(json!({}))), &expect(), at(NOW))
            .expect("verifies");
        assert_eq!(v.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(v.str_claim("sub"), Some("alice"));
        assert_eq!(v.time_claim("exp"), Some(NOW + 300));
    }
    // An audience list containing ours.
    let token = sign(&k1, Algorithm::ES256, &claims(json!({"aud": ["x", "app"]})));
    assert!(keys.verify(&token, &expect(), at(NOW)).is_ok());
}

#[test]
fn time_claims_are_checked_against_now_with_the_leeway() {
    let k = ec_key("k1");
    let keys = set(&[&k]);
    let token = sign(&k, Algorithm::ES256, &claims(json!({"nbf": NOW + 10})));
    assert!(
        keys.verify(&token, &expect(), at(NOW)).is_ok(),
        "within 60s leeway"
    );
    let strict = Expectations {
        leeway: Duration::ZERO,
        ..expect()
    };
    assert_eq!(
        keys.verify(&token, &strict, at(NOW)),
        Err(JwtError::NotYetValid(10))
    );
    assert_eq!(
        keys.verify(&token, &strict, at(NOW + 400)),
        Err(JwtError::Expired(100))
    );
    let future = sign(&k, Algorithm::ES256, &claims(json!({"iat": NOW + 120})));
    assert_eq!(
        keys.verify(&future, &expect(), at(NOW)),
        Err(JwtError::IssuedInFuture(120))
    );
    let no_exp = claims(json!({}));
    let mut no_exp = no_exp.as_object().cloned().expect("object");
    no_exp.remove("exp");
    let token = sign(&k, Algorithm::ES256, &Value::Object(no_exp));
    assert_eq!(
        keys.verify(&token, &expect(), at(NOW)),
        Err(JwtError::MissingClaim("exp"))
    );
    let logout = Expectations {
        require_exp: false,
        ..expect()
    };
    assert!(keys.verify(&token, &logout, at(NOW)).is_ok());
}

#[test]
fn issuer_and_audience_must_match() {
    let k = ec_key("k1");
    let keys = set(&[&k]);
    let other_iss = sign(
        &k,
        Algorithm::ES256,
        &claims(json!({"iss": "https://evil"})),
    );
    assert!(matches!(
        keys.verify(&other_iss, &expect(), at(NOW)),
        Err(JwtError::WrongIssuer { .. })
    ));
    let other_aud = sign(
        &k,
        Algorithm::ES256,
        &claims(json!({"aud": "other-client"})),
    );
    assert_eq!(
        keys.verify(&other_aud, &expect(), at(NOW)),
        Err(JwtError::WrongAudience {
            got: vec!["other-client".into()],
            want: vec!["app".into()]
        })
    );
}

#[test]
fn alg_none_and_hmac_with_the_public_key_never_verify() {
    let k = ec_key("k1");
    let keys = set(&[&k]);
    let payload = b64(claims(json!({})).to_string().as_bytes());
    let none = format!("{}.{payload}.", b64(br#"{"alg":"none","kid":"k1"}"#));
    assert_eq!(
        keys.verify(&none, &expect(), at(NOW)),
        Err(JwtError::AlgorithmNotAllowed("none".into()))
    );
    // HS256 "signed" with the public key bytes: the classic confusion attack.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(json!({})),
        &EncodingKey::from_secret(&k.public_der),
    )
    .expect("sign");
    assert_eq!(
        keys.verify(&forged, &expect(), at(NOW)),
        Err(JwtError::AlgorithmNotAllowed("HS256".into()))
    );
    // Even when the caller's list names HS256.
    let lax = Expectations {
        algorithms: vec![Algorithm::HS256, Algorithm::ES256],
        ..expect()
    };
    assert!(matches!(
        keys.verify(&forged, &lax, at(NOW)),
        Err(JwtError::AlgorithmNotAllowed(_))
    ));
}

#[test]
fn keys_are_selected_by_kid_and_must_fit_the_algorithm() {
    let (k1, k2) = (ec_key("k1"), ec_key("k2"));
    let keys = set(&[&k1]);
    // Signed by a key of another issuer that reuses a known kid: the signature fails.
    let impostor = TestKey {
        kid: "k1".into(),
        ..ec_key("k1")
    };
    let token = sign(&impostor, Algorithm::ES256, &claims(json!({})));
    assert_eq!(
        keys.verify(&token, &expect(), at(NOW)),
        Err(JwtError::BadSignature)
    );
    let token = sign(&k2, Algorithm::ES256, &claims(json!({})));
    assert_eq!(
        keys.verify(&token, &expect(), at(NOW)),
        Err(JwtError::UnknownKid(Some("k2".into())))
    );
    // ES384 header on a P-256 key.
    let payload = b64(claims(json!({})).to_string().as_bytes());
    let token = format!("{}.{payload}.c2ln", b64(br#"{"alg":"ES384","kid":"k1"}"#));
    assert!(matches!(
        keys.verify(&token, &expect(), at(NOW)),
        Err(JwtError::KeyMismatch { .. })
    ));
    // No kid: only a single-key set is unambiguous.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = None;
    let no_kid = jsonwebtoken::encode(&header, &claims(json!({})), &k1.encoding).expect("sign");
    assert!(keys.verify(&no_kid, &expect(), at(NOW)).is_ok());
    assert_eq!(
        set(&[&k1, &k2]).verify(&no_kid, &expect(), at(NOW)),
        Err(JwtError::UnknownKid(None))
    );
}

#[test]
fn garbage_is_malformed_and_errors_never_echo_the_token() {
    let k = ec_key("k1");
    let keys = set(&[&k]);
    for token in ["", "abc", "a.b.c", "....", "eyJhbGciOiJFUzI1NiJ9.!!!.x"] {
        let err = keys.verify(token, &expect(), at(NOW)).expect_err(token);
        assert!(
            matches!(err, JwtError::Malformed(_) | JwtError::UnknownKid(_)),
            "{token}: {err}"
        );
    }
    let token = sign(&k, Algorithm::ES256, &claims(json!({"aud": "x"})));
    let err = keys.verify(&token, &expect(), at(NOW)).expect_err("aud");
    assert!(!err.to_string().contains(&token));
}
