//! JWT verification against a [`KeySet`], for every validator wayguard runs itself (the
//! ext_authz login's id_tokens and logout tokens, the STS's subject and actor tokens).
//!
//! What is checked, in this order, each failure with its own [`JwtError`]:
//! 1. the token has three base64url parts and a JSON header;
//! 2. the header's `alg` is in the caller's allow-list, which can only hold asymmetric
//!    algorithms: `none` and HMAC (`HS*`) never verify, so a public key can never be used as an
//!    HMAC secret (algorithm confusion);
//! 3. a key is selected by `kid` (a token without `kid` only matches a set with exactly one
//!    usable key); its `kty`/`crv` must fit the algorithm and its `alg`, when set, must equal it;
//! 4. the signature;
//! 5. claims, against an explicit `now` (so tests run on a synthetic clock): `iss` exactly,
//!    `aud` (string or array) contains one of the expected audiences, `exp` present and in the
//!    future, `nbf` and `iat` not in the future, all within the leeway.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::keyset::KeySet;

/// Asymmetric algorithms wayguard accepts by default.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a token does not verify. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts with a JSON header and payload.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header's `alg` is not allowed (`none`, HMAC, or outside the allow-list).
    #[error("algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(String),
    /// No key of the set has the token's `kid` (or the token has none and the set has several).
    #[error("no key for kid {0:?} in the issuer's JWKS")]
    UnknownKid(Option<String>),
    /// The selected key does not fit the algorithm.
    #[error("key {kid:?} cannot verify {alg}: {why}")]
    KeyMismatch {
        /// The key.
        kid: Option<String>,
        /// The token's algorithm.
        alg: String,
        /// What does not fit.
        why: String,
    },
    /// The signature does not verify with the key.
    #[error("signature does not verify")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("expired {0}s ago")]
    Expired(u64),
    /// `nbf` is in the future (beyond the leeway).
    #[error("not valid before {0}s from now")]
    NotYetValid(u64),
    /// `iat` is in the future (beyond the leeway).
    #[error("issued {0}s in the future")]
    IssuedInFuture(u64),
    /// `iss` is not the expected issuer.
    #[error("issuer {got:?} is not {want:?}")]
    WrongIssuer {
        /// What the token says.
        got: String,
        /// What was expected.
        want: String,
    },
    /// `aud` contains none of the expected audiences.
    #[error("audience {got:?} contains none of {want:?}")]
    WrongAudience {
        /// What the token says.
        got: Vec<String>,
        /// What was expected.
        want: Vec<String>,
    },
    /// A required claim is missing or has the wrong type.
    #[error("claim {0:?} is missing or not of the right type")]
    MissingClaim(&'static str),
}

impl JwtError {
    /// A short, stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed(_) => "malformed",
            JwtError::AlgorithmNotAllowed(_) => "algorithm",
            JwtError::UnknownKid(_) => "unknown_kid",
            JwtError::KeyMismatch { .. } => "key_mismatch",
            JwtError::BadSignature => "signature",
            JwtError::Expired(_) => "expired",
            JwtError::NotYetValid(_) => "not_yet_valid",
            JwtError::IssuedInFuture(_) => "issued_in_future",
            JwtError::WrongIssuer { .. } => "issuer",
            JwtError::WrongAudience { .. } => "audience",
            JwtError::MissingClaim(_) => "missing_claim",
        }
    }
}

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// `iss`, compared exactly.
    pub issuer: String,
    /// `aud` must contain one of these; empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// Allowed algorithms (asymmetric only; HMAC entries are ignored).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Whether `exp` must be present (true for every token wayguard accepts, except logout
    /// tokens, which OIDC Back-Channel Logout does not require to carry one).
    pub require_exp: bool,
}

impl Expectations {
    /// Expect `issuer` and one of `audiences`, default algorithms, 60 s leeway, `exp` required.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            leeway: Duration::from_secs(60),
            require_exp: true,
        }
    }
}

/// A verified token: its header fields of interest and its claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The `kid` of the key that verified it.
    pub kid: Option<String>,
    /// The algorithm.
    pub alg: Algorithm,
    /// Every claim.
    pub claims: Map<String, Value>,
}

impl Verified {
    /// A string claim.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric-date claim (seconds since the epoch).
    pub fn time_claim(&self, name: &str) -> Option<u64> {
        numeric(self.claims.get(name)?)
    }
}

/// The decoding keys of one key set, built once per key set (parsing keys costs more than
/// verifying with them).
#[derive(Clone)]
pub struct VerifyingKeys {
    keys: Vec<(Option<String>, Jwk, DecodingKey)>,
}

impl std::fmt::Debug for VerifyingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|(k, _, _)| k).collect();
        f.debug_struct("VerifyingKeys")
            .field("kids", &kids)
            .finish()
    }
}

fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Whether `jwk` can verify `alg`, and why not.
fn fits(jwk: &Jwk, alg: Algorithm) -> Result<(), String> {
    if let Some(key_alg) = jwk.common.key_algorithm {
        let named = format!("{key_alg:?}");
        if named != format!("{alg:?}") {
            return Err(format!("the key is for {named}"));
        }
    }
    match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => Ok(()),
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256)
            if p.curve == EllipticCurve::P256 =>
        {
            Ok(())
        }
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384)
            if p.curve == EllipticCurve::P384 =>
        {
            Ok(())
        }
        (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA) => Ok(()),
        (AlgorithmParameters::OctetKey(_), _) => Err("symmetric keys never verify".into()),
        _ => Err("key type or curve does not match".into()),
    }
}

impl VerifyingKeys {
    /// The keys of `set` (a [`KeySet`] is already validated; a key jsonwebtoken cannot load is
    /// skipped).
    pub fn new(set: &KeySet) -> Self {
        let parsed: JwkSet = serde_json::from_str(set.json()).unwrap_or(JwkSet { keys: vec![] });
        let keys = parsed
            .keys
            .into_iter()
            .filter(|jwk| !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)))
            .filter_map(|jwk| {
                let key = DecodingKey::from_jwk(&jwk).ok()?;
                Some((jwk.common.key_id.clone(), jwk, key))
            })
            .collect();
        Self { keys }
    }

    /// Whether a key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|(k, _, _)| k.as_deref() == Some(kid))
    }

    /// Verifies `token` (see the module docs) at `now`.
    pub fn verify(
        &self,
        token: &str,
        expect: &Expectations,
        now: SystemTime,
    ) -> Result<Verified, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            // An unknown `alg` (e.g. `none`) fails header parsing: report it as such.
            match alg_of(token) {
                Some(alg) => JwtError::AlgorithmNotAllowed(alg),
                None => JwtError::Malformed(e.to_string()),
            }
        })?;
        let alg = header.alg;
        if !is_asymmetric(alg) || !expect.algorithms.contains(&alg) {
            return Err(JwtError::AlgorithmNotAllowed(format!("{alg:?}")));
        }
        let candidates: Vec<_> = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|(k, _, _)| k.as_deref() == Some(kid))
                .collect(),
            None if self.keys.len() == 1 => self.keys.iter().collect(),
            None => Vec::new(),
        };
        let Some((kid, jwk, key)) = candidates.first() else {
            return Err(JwtError::UnknownKid(header.kid));
        };
        fits(jwk, alg).map_err(|why| JwtError::KeyMismatch {
            kid: kid.clone(),
            alg: format!("{alg:?}"),
            why,
        })?;
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => JwtError::BadSignature,
                _ => JwtError::Malformed(e.to_string()),
            },
        )?;
        let verified = Verified {
            kid: kid.clone(),
            alg,
            claims: data.claims,
        };
        check_claims(&verified, expect, now)?;
        Ok(verified)
    }
}

/// The `alg` of a token's header, read without trusting anything else in it.
fn alg_of(token: &str) -> Option<String> {
    use base64::Engine as _;
    let head = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_string)
}

fn numeric(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

fn check_claims(v: &Verified, expect: &Expectations, now: SystemTime) -> Result<(), JwtError> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let leeway = expect.leeway.as_secs();
    match v.str_claim("iss") {
        Some(iss) if iss == expect.issuer => {}
        Some(iss) => {
            return Err(JwtError::WrongIssuer {
                got: iss.to_string(),
                want: expect.issuer.clone(),
            });
        }
        None => return Err(JwtError::MissingClaim("iss")),
    }
    match v.claims.get("exp") {
        Some(exp) => {
            let exp = numeric(exp).ok_or(JwtError::MissingClaim("exp"))?;
            if now > exp.saturating_add(leeway) {
                return Err(JwtError::Expired(now - exp));
            }
        }
        None if expect.require_exp => return Err(JwtError::MissingClaim("exp")),
        None => {}
    }
    for (claim, error) in [
        ("nbf", JwtError::NotYetValid as fn(u64) -> JwtError),
        ("iat", JwtError::IssuedInFuture),
    ] {
        if let Some(value) = v.claims.get(claim) {
            let t = numeric(value).ok_or(JwtError::MissingClaim(claim))?;
            if t > now.saturating_add(leeway) {
                return Err(error(t - now));
            }
        }
    }
    if !expect.audiences.is_empty() {
        let got = audiences(&v.claims);
        if !got.iter().any(|a| expect.audiences.contains(a)) {
            return Err(JwtError::WrongAudience {
                got,
                want: expect.audiences.clone(),
            });
        }
    }
    Ok(())
}

/// The `aud` claim as a list (a string is a list of one).
pub fn audiences(claims: &Map<String, Value>) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Claims of a token WITHOUT verifying it, for logs and operator tools only.
pub fn unverified_claims(token: &str) -> Option<BTreeMap<String, Value>> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
