//! Validation and normalization of fetched JWKS bodies.
//!
//! Every body, on the first fetch and on every refresh, goes through [`KeySet::parse`] before it
//! can replace anything. istiod validated only the first fetch and stored any 2xx refresh body
//! verbatim (SEMANTICS.md §1.6), so an HTML error page could end up inlined and the listener
//! NACKed (#39411). Here a body is accepted only when it yields at least one usable public key.
//!
//! The normalized JSON keeps only the members Envoy needs (`kty`, `kid`, `alg`, `use` and the
//! public parameters), sorts keys by `kid` then by their full JSON, and removes exact duplicates.
//! Two bodies that carry the same keys in a different order or with extra members therefore
//! normalize to the same string, which is what change detection compares.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Members that only a private (or symmetric) JWK carries. A key that has any of them is
/// dropped: its private half is world-readable at the JWKS URL, so anyone could sign tokens
/// with it and it must never be trusted.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a fetched body is not an acceptable key set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidJwks {
    /// The body is not JSON at all (an HTML page, truncated output, ...).
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("JWKS must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// The object has no `keys` member.
    #[error("JWKS has no \"keys\" member")]
    MissingKeys,
    /// `keys` is not an array.
    #[error("JWKS \"keys\" must be an array, got {0}")]
    KeysNotAnArray(&'static str),
    /// No key survived validation.
    #[error("JWKS has no usable public key{}", fmt_dropped(.dropped))]
    NoUsableKey {
        /// One line per dropped key, saying why it was dropped.
        dropped: Vec<String>,
    },
}

fn fmt_dropped(dropped: &[String]) -> String {
    if dropped.is_empty() {
        " (\"keys\" is empty)".to_owned()
    } else {
        format!(" ({})", dropped.join("; "))
    }
}

/// A validated, normalized key set, ready to inline as Envoy `local_jwks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    json: Arc<str>,
    kids: Vec<String>,
    key_count: usize,
    dropped: Vec<String>,
}

// === impl KeySet ===

impl KeySet {
    /// Validates `body` and normalizes it.
    ///
    /// Accepted keys: `kty: RSA` with `n` and `e`; `kty: EC` with `crv` (P-256, P-384, P-521),
    /// `x` and `y`; `kty: OKP` with `crv: Ed25519` and `x`. Public parameters must be
    /// non-empty base64url. Keys of other types, keys with bad parameters and keys carrying
    /// private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`) are dropped and listed in
    /// [`KeySet::dropped`]; the body is rejected only when no usable key remains.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidJwks> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| InvalidJwks::NotJson(e.to_string()))?;
        let Value::Object(obj) = value else {
            return Err(InvalidJwks::NotAnObject(json_type(&value)));
        };
        let keys = match obj.get("keys") {
            None => return Err(InvalidJwks::MissingKeys),
            Some(Value::Array(keys)) => keys,
            Some(other) => return Err(InvalidJwks::KeysNotAnArray(json_type(other))),
        };

        let mut dropped = Vec::new();
        let mut usable: Vec<(String, Value)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match normalize_key(key) {
                Ok(jwk) => {
                    let kid = jwk
                        .get("kid")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    usable.push((kid, Value::Object(jwk)));
                }
                Err(why) => dropped.push(format!("key #{i}{}: {why}", kid_suffix(key))),
            }
        }
        if usable.is_empty() {
            return Err(InvalidJwks::NoUsableKey { dropped });
        }

        // Sort by kid, then by the full JSON (serde_json maps are ordered by member name, so the
        // serialization is canonical), and drop exact duplicates.
        let mut usable: Vec<(String, String, Value)> = usable
            .into_iter()
            .map(|(kid, v)| (kid, v.to_string(), v))
            .collect();
        usable.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        usable.dedup_by(|a, b| a.1 == b.1);

        let kids = usable
            .iter()
            .filter(|(kid, _, _)| !kid.is_empty())
            .map(|(kid, _, _)| kid.clone())
            .collect();
        let key_count = usable.len();
        let mut out = Map::new();
        out.insert(
            "keys".to_owned(),
            Value::Array(usable.into_iter().map(|(_, _, v)| v).collect()),
        );
        Ok(Self {
            json: Value::Object(out).to_string().into(),
            kids,
            key_count,
            dropped,
        })
    }

    /// The normalized JSON (`{"keys":[...]}`) to inline as `local_jwks`.
    pub fn json(&self) -> &Arc<str> {
        &self.json
    }

    /// The `kid`s of the usable keys, sorted (keys without a `kid` are not listed).
    pub fn kids(&self) -> &[String] {
        &self.kids
    }

    /// Whether a usable key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.kids.binary_search_by(|k| k.as_str().cmp(kid)).is_ok()
    }

    /// How many usable keys the set holds.
    pub fn key_count(&self) -> usize {
        self.key_count
    }

    /// Keys that were present in the body but dropped, with the reason (for diagnostics).
    pub fn dropped(&self) -> &[String] {
        &self.dropped
    }
}

fn kid_suffix(key: &Value) -> String {
    match key.get("kid").and_then(Value::as_str) {
        Some(kid) => format!(" (kid {kid:?})"),
        None => String::new(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks one JWK and returns the members to keep, or why it is unusable.
fn normalize_key(key: &Value) -> Result<Map<String, Value>, String> {
    let Value::Object(key) = key else {
        return Err(format!("not an object but {}", json_type(key)));
    };
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| key.contains_key(**m)) {
        return Err(format!(
            "carries private or symmetric key member {member:?}; never trusted"
        ));
    }
    let kty = key
        .get("kty")
        .and_then(Value::as_str)
        .ok_or("missing \"kty\"")?;
    let required: &[&str] = match kty {
        "RSA" => &["n", "e"],
        "EC" => {
            let crv = str_member(key, "crv")?;
            if !matches!(crv, "P-256" | "P-384" | "P-521") {
                return Err(format!("unsupported EC curve {crv:?}"));
            }
            &["crv", "x", "y"]
        }
        "OKP" => {
            let crv = str_member(key, "crv")?;
            if crv != "Ed25519" {
                return Err(format!("unsupported OKP curve {crv:?}"));
            }
            &["crv", "x"]
        }
        other => return Err(format!("unsupported \"kty\" {other:?}")),
    };

    let mut out = Map::new();
    out.insert("kty".to_owned(), Value::String(kty.to_owned()));
    for member in required {
        let value = str_member(key, member)?;
        if *member != "crv" {
            match URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')) {
                Ok(bytes) if !bytes.is_empty() => {}
                _ => return Err(format!("{member:?} is not non-empty base64url")),
            }
        }
        out.insert((*member).to_owned(), Value::String(value.to_owned()));
    }
    for member in ["kid", "alg", "use"] {
        match key.get(member) {
            None => {}
            Some(Value::String(s)) => {
                out.insert(member.to_owned(), Value::String(s.clone()));
            }
            Some(other) => {
                return Err(format!(
                    "{member:?} must be a string, got {}",
                    json_type(other)
                ));
            }
        }
    }
    Ok(out)
}

fn str_member<'a>(key: &'a Map<String, Value>, member: &str) -> Result<&'a str, String> {
    match key.get(member) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(format!("{member:?} is empty")),
        Some(other) => Err(format!(
            "{member:?} must be a string, got {}",
            json_type(other)
        )),
        None => Err(format!("missing {member:?}")),
    }
}

#[cfg(test)]
#[path = "keyset_tests.rs"]
mod tests;
