//! The generated configuration directory: G gateways, each with a listener, a route, a Service and
//! its EndpointSlice, a RequestAuthentication with an inline JWKS and a few AuthorizationPolicies;
//! plus the RSA key (generated in-process, never written to disk) that signs the prober's token.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::json;

/// Audience of every generated RequestAuthentication.
pub const AUDIENCE: &str = "bench-api";
/// The path the prober requests; its decision flips with the policy change.
pub const PROBE_PATH: &str = "/probe";
/// Name of the AuthorizationPolicy (and its file) that the rounds rewrite.
pub const FLIP_POLICY: &str = "flip";

/// The signing key of the generated issuers.
pub struct SigningKey {
    encoding: EncodingKey,
    kid: String,
    n: String,
    e: String,
}

impl SigningKey {
    /// A fresh RSA-2048 key.
    pub fn generate() -> Result<Self> {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
            .map_err(|e| anyhow!("RSA key generation: {e}"))?;
        let der = key
            .to_pkcs1_der()
            .map_err(|e| anyhow!("PKCS#1 encoding: {e}"))?;
        Ok(Self {
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            kid: "wayguard-bench".into(),
            n: URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            e: URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        })
    }

    /// The public key set (`{"keys":[...]}`) as a JSON string.
    pub fn jwks(&self) -> String {
        json!({"keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": self.n, "e": self.e,
        }]})
        .to_string()
    }

    /// A token of `issuer` for [`AUDIENCE`], valid for `ttl`.
    pub fn mint(&self, issuer: &str, ttl: Duration) -> Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("clock before 1970")?
            .as_secs();
        let claims = json!({
            "iss": issuer, "sub": "bench-prober", "aud": AUDIENCE,
            "iat": now, "exp": now + ttl.as_secs(), "groups": ["dev"],
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).context("signing the probe token")
    }
}

/// The shape of the generated configuration.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Number of gateways.
    pub gateways: usize,
    /// Port of every gateway's HTTP listener (only gateway 0's is bound, by the real Envoy).
    pub listener_port: u16,
    /// Port of the loopback backend every route points to.
    pub backend_port: u16,
}

/// Namespace of gateway `i`.
pub fn namespace(i: usize) -> String {
    format!("bench-{i}")
}

/// `namespace/name` of gateway `i` (the node metadata `wayguard.io/gateway`).
pub fn gateway_id(i: usize) -> String {
    format!("{}/gw", namespace(i))
}

/// JWT issuer of gateway `i`.
pub fn issuer(i: usize) -> String {
    format!("https://issuer.bench.wayguard.test/gw-{i}")
}

/// A marker unique to `round` that ends up, verbatim, in the RBAC config of the changed policy:
/// clients find it in the bytes of a response without decoding it. Fixed width, so no marker is
/// a prefix of another.
pub fn marker(round: usize) -> String {
    format!("/wayguard-bench-marker-{round:06}")
}

/// The file holding gateway `i`'s flipping policy.
pub fn flip_file(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("gw-{i}"))
        .join(format!("{FLIP_POLICY}.yaml"))
}

const TARGET_REF: &str =
    "  targetRefs:\n  - kind: Gateway\n    group: gateway.networking.k8s.io\n    name: gw\n";

/// The flipping DENY policy of gateway `i` at `round`: when `deny` it denies [`PROBE_PATH`].
pub fn flip_policy(i: usize, round: usize, deny: bool) -> String {
    let path = if deny { PROBE_PATH } else { "/blocked" };
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {FLIP_POLICY}\n  namespace: {ns}\nspec:\n{TARGET_REF}  action: DENY\n  rules:\n  - to:\n    - operation:\n        paths: [\"{path}\", \"{marker}\"]\n",
        ns = namespace(i),
        marker = marker(round),
    )
}

fn routing(i: usize, layout: &Layout) -> String {
    let ns = namespace(i);
    let (listener, backend) = (layout.listener_port, layout.backend_port);
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: {ns}
spec:
  gatewayClassName: wayguard
  listeners:
  - name: http
    protocol: HTTP
    port: {listener}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: app
  namespace: {ns}
spec:
  parentRefs:
  - name: gw
  rules:
  - backendRefs:
    - name: app
      port: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: app
  namespace: {ns}
spec:
  ports:
  - name: http
    port: 8080
    targetPort: {backend}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: app-local
  namespace: {ns}
  labels:
    kubernetes.io/service-name: app
addressType: IPv4
ports:
- name: http
  port: {backend}
  protocol: TCP
endpoints:
- addresses: ["127.0.0.1"]
"#
    )
}

fn auth(i: usize, jwks: &str) -> String {
    let ns = namespace(i);
    let iss = issuer(i);
    format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt
  namespace: {ns}
spec:
{TARGET_REF}  jwtRules:
  - issuer: "{iss}"
    audiences: ["{AUDIENCE}"]
    jwks: '{jwks}'
    outputClaimToHeaders:
    - header: x-user-groups
      claim: groups
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: require-jwt
  namespace: {ns}
spec:
{TARGET_REF}  action: ALLOW
  rules:
  - from:
    - source:
        requestPrincipals: ["{iss}/*"]
  - to:
    - operation:
        paths: ["/healthz"]
        methods: ["GET"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: admins-write
  namespace: {ns}
spec:
{TARGET_REF}  action: DENY
  rules:
  - from:
    - source:
        requestPrincipals: ["*"]
    to:
    - operation:
        methods: ["POST", "PUT", "PATCH", "DELETE"]
    when:
    - key: request.auth.claims[groups]
      notValues: ["admin"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: audit-admin
  namespace: {ns}
spec:
{TARGET_REF}  action: AUDIT
  rules:
  - to:
    - operation:
        paths: ["/admin/*"]
"#
    )
}

/// Writes the whole directory: `gw-<i>/{{routing,auth,flip}}.yaml` for every gateway.
pub fn write_config(dir: &Path, layout: &Layout, jwks: &str) -> Result<()> {
    for i in 0..layout.gateways {
        let sub = dir.join(format!("gw-{i}"));
        std::fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
        for (name, text) in [
            ("routing.yaml", routing(i, layout)),
            ("auth.yaml", auth(i, jwks)),
            (
                &format!("{FLIP_POLICY}.yaml") as &str,
                flip_policy(i, 0, false),
            ),
        ] {
            let path = sub.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// How a round rewrites the policy file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteMode {
    /// Write a temporary file next to it, then rename it into place.
    Atomic,
    /// Truncate and write the file in place.
    Plain,
}

/// When a round's write happened.
#[derive(Clone, Copy, Debug)]
pub struct WriteTime {
    /// Monotonic, for every latency.
    pub at: Instant,
    /// Wall clock, to match wayguard's log timestamps.
    pub wall: SystemTime,
}

/// Rewrites gateway 0's flipping policy for `round`; the time is taken right before the
/// operation that makes the new content visible (the rename, or the write).
pub fn write_flip(dir: &Path, round: usize, deny: bool, mode: WriteMode) -> Result<WriteTime> {
    let path = flip_file(dir, 0);
    let text = flip_policy(0, round, deny);
    match mode {
        WriteMode::Atomic => {
            // A name without the .yaml extension: wayguard ignores it until the rename.
            let tmp = path.with_extension("yaml.tmp");
            std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
            let time = now();
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("renaming {} into place", tmp.display()))?;
            Ok(time)
        }
        WriteMode::Plain => {
            let time = now();
            std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
            Ok(time)
        }
    }
}

fn now() -> WriteTime {
    WriteTime {
        at: Instant::now(),
        wall: SystemTime::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_fixed_width_and_distinct() {
        assert_eq!(marker(1).len(), marker(999_999).len());
        assert!(!marker(10).contains(&marker(1)));
        assert!(flip_policy(0, 3, true).contains(&marker(3)));
        assert!(flip_policy(0, 3, true).contains(PROBE_PATH));
        assert!(!flip_policy(0, 4, false).contains(PROBE_PATH));
    }
}
