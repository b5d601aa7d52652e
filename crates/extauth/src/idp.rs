//! The I/O seam to the OpenID provider ([`Idp`]): discovery, the token endpoint and the JWKS.
//! [`HttpIdp`] is the real one (reqwest over rustls, bounded in time and size); tests use fakes.

use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use wayguard_core::login::{ClientAuth, LoginConfig};
use wayguard_jwks::KeySet;

/// Largest discovery, JWKS or token response read.
const MAX_BODY: usize = 256 * 1024;
/// Timeout of one call to the provider (code redemption must fit well inside the ext_authz
/// filter's timeout; see crates/translate).
pub const IDP_TIMEOUT: Duration = Duration::from_secs(8);

/// What discovery (or its override) gives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    /// `issuer`.
    pub issuer: String,
    /// `authorization_endpoint`.
    pub authorization_endpoint: String,
    /// `token_endpoint`.
    pub token_endpoint: String,
    /// `jwks_uri`.
    pub jwks_uri: String,
    /// `end_session_endpoint`.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// `id_token_signing_alg_values_supported`.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// A token endpoint response (RFC 6749 5.1, OIDC Core 3.1.3.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct TokenResponse {
    /// `access_token`.
    #[serde(default)]
    pub access_token: Option<String>,
    /// `token_type`.
    #[serde(default)]
    pub token_type: Option<String>,
    /// `expires_in` (seconds).
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// `refresh_token`.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// `id_token`.
    #[serde(default)]
    pub id_token: Option<String>,
    /// `scope`.
    #[serde(default)]
    pub scope: Option<String>,
}

/// A grant sent to the token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// `authorization_code` with the PKCE verifier.
    Code {
        /// The code.
        code: String,
        /// The PKCE verifier.
        verifier: String,
        /// The redirect URI of the authorization request.
        redirect_uri: String,
    },
    /// `refresh_token`.
    Refresh(String),
}

/// Why a provider call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdpError {
    /// Unreachable, timed out, or a 5xx.
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the grant (`invalid_grant`: a used or expired code or refresh token).
    #[error("identity provider refused the grant: {error}")]
    Refused {
        /// The OAuth `error` code.
        error: String,
    },
    /// The response is not what the protocol says.
    #[error("identity provider sent an invalid response: {0}")]
    Invalid(String),
}

impl IdpError {
    /// Metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            IdpError::Unavailable(_) => "idp_unavailable",
            IdpError::Refused { .. } => "grant_refused",
            IdpError::Invalid(_) => "idp_invalid_response",
        }
    }
}

/// The provider calls the login flow makes.
pub trait Idp: Send + Sync + 'static {
    /// Fetches `<issuer>/.well-known/openid-configuration`.
    fn discover(&self, issuer_url: &str) -> BoxFuture<'static, Result<Discovery, IdpError>>;
    /// Redeems `grant` at `endpoint` for the client of `cfg`.
    fn token(
        &self,
        cfg: &LoginConfig,
        endpoint: &str,
        grant: Grant,
    ) -> BoxFuture<'static, Result<TokenResponse, IdpError>>;
    /// Fetches and validates the JWKS at `uri`.
    fn jwks(&self, uri: &str) -> BoxFuture<'static, Result<KeySet, IdpError>>;
}

/// The discovery URL of an issuer (OIDC Discovery 4: append, keeping any path).
pub fn discovery_url(issuer_url: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer_url.trim_end_matches('/')
    )
}

/// The provider over HTTP.
#[derive(Clone, Debug)]
pub struct HttpIdp {
    client: reqwest::Client,
}

impl HttpIdp {
    /// A client with [`IDP_TIMEOUT`] and the same TLS and SSRF guard as the JWKS fetcher
    /// (`wayguard_jwks::guarded_client`), pooling connections (a login makes several calls).
    pub fn new(config: &wayguard_jwks::HttpConfig) -> Result<Self, IdpError> {
        let (builder, _guard) = wayguard_jwks::guarded_client(config)
            .map_err(|e| IdpError::Unavailable(format!("building the HTTP client: {e}")))?;
        let client = builder
            .timeout(IDP_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("wayguard-extauth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| IdpError::Unavailable(format!("building the HTTP client: {e}")))?;
        Ok(Self { client })
    }
}

async fn body(resp: reqwest::Response) -> Result<(u16, Vec<u8>), IdpError> {
    let status = resp.status().as_u16();
    if resp.content_length().is_some_and(|l| l > MAX_BODY as u64) {
        return Err(IdpError::Invalid(format!(
            "response larger than {MAX_BODY} bytes"
        )));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| IdpError::Unavailable(format!("reading the response: {e}")))?;
    if bytes.len() > MAX_BODY {
        return Err(IdpError::Invalid(format!(
            "response larger than {MAX_BODY} bytes"
        )));
    }
    Ok((status, bytes.to_vec()))
}

fn send_error(url: &str, e: &reqwest::Error) -> IdpError {
    let what = if e.is_timeout() {
        "timed out"
    } else {
        "failed"
    };
    IdpError::Unavailable(format!("{url}: request {what}"))
}

/// A `private_key_jwt` client assertion (RFC 7523 2.2) for `audience` (the token endpoint).
pub fn client_assertion(
    client_id: &str,
    audience: &str,
    key_pem: &[u8],
    kid: Option<&str>,
    valid_for: Duration,
    now: SystemTime,
) -> Result<String, IdpError> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let (key, alg) = if let Ok(k) = EncodingKey::from_ec_pem(key_pem) {
        (k, Algorithm::ES256)
    } else {
        let k = EncodingKey::from_rsa_pem(key_pem)
            .map_err(|e| IdpError::Invalid(format!("private_key_jwt signing key: {e}")))?;
        (k, Algorithm::RS256)
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    let iat = crate::flow::unix(now);
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": audience,
        "jti": crate::crypto::random_token(),
        "iat": iat, "exp": iat + valid_for.as_secs().max(1),
    });
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| IdpError::Invalid(format!("signing the client assertion: {e}")))
}

/// A GET whose answer must be 200; returns the body.
async fn get_ok(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, IdpError> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| send_error(url, &e))?;
    let (status, bytes) = body(resp).await?;
    if status != 200 {
        return Err(IdpError::Unavailable(format!("{url}: HTTP {status}")));
    }
    Ok(bytes)
}

impl Idp for HttpIdp {
    fn discover(&self, issuer_url: &str) -> BoxFuture<'static, Result<Discovery, IdpError>> {
        let (client, url) = (self.client.clone(), discovery_url(issuer_url));
        Box::pin(async move {
            let bytes = get_ok(&client, &url).await?;
            serde_json::from_slice(&bytes)
                .map_err(|e| IdpError::Invalid(format!("{url}: not a discovery document: {e}")))
        })
    }

    fn token(
        &self,
        cfg: &LoginConfig,
        endpoint: &str,
        grant: Grant,
    ) -> BoxFuture<'static, Result<TokenResponse, IdpError>> {
        let mut form: Vec<(String, String)> = match grant {
            Grant::Code {
                code,
                verifier,
                redirect_uri,
            } => vec![
                ("grant_type".into(), "authorization_code".into()),
                ("code".into(), code),
                ("redirect_uri".into(), redirect_uri),
                ("code_verifier".into(), verifier),
            ],
            Grant::Refresh(rt) => vec![
                ("grant_type".into(), "refresh_token".into()),
                ("refresh_token".into(), rt),
            ],
        };
        for (k, v) in &cfg.token_query_params {
            if !form.iter().any(|(name, _)| name == k) && k != "client_id" && k != "client_secret" {
                form.push((k.clone(), v.clone()));
            }
        }
        let mut request = self.client.post(endpoint);
        match &cfg.client_auth {
            ClientAuth::None => form.push(("client_id".into(), cfg.client_id.clone())),
            ClientAuth::SecretBasic(secret) => {
                // RFC 6749 2.3.1: both parts form-urlencoded before the Basic encoding.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                request = request.basic_auth(enc(&cfg.client_id), Some(enc(secret.expose_str())));
            }
            ClientAuth::SecretPost(secret) => {
                form.push(("client_id".into(), cfg.client_id.clone()));
                form.push(("client_secret".into(), secret.expose_str().to_string()));
            }
            ClientAuth::PrivateKeyJwt {
                key_pem,
                kid,
                valid_for,
            } => {
                let assertion = match client_assertion(
                    &cfg.client_id,
                    endpoint,
                    key_pem.expose(),
                    kid.as_deref(),
                    *valid_for,
                    SystemTime::now(),
                ) {
                    Ok(a) => a,
                    Err(e) => return Box::pin(async move { Err(e) }),
                };
                form.push(("client_id".into(), cfg.client_id.clone()));
                form.push((
                    "client_assertion_type".into(),
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion".into(), assertion));
            }
        }
        let url = endpoint.to_string();
        let request = request.form(&form).header("accept", "application/json");
        Box::pin(async move {
            let resp = request.send().await.map_err(|e| send_error(&url, &e))?;
            let (status, bytes) = body(resp).await?;
            if status >= 500 {
                return Err(IdpError::Unavailable(format!("{url}: HTTP {status}")));
            }
            if status != 200 {
                #[derive(Deserialize)]
                struct OAuthError {
                    error: String,
                }
                let error = serde_json::from_slice::<OAuthError>(&bytes)
                    .map(|e| e.error.chars().take(64).collect())
                    .unwrap_or_else(|_| format!("HTTP {status}"));
                return Err(IdpError::Refused { error });
            }
            serde_json::from_slice(&bytes)
                .map_err(|e| IdpError::Invalid(format!("{url}: not a token response: {e}")))
        })
    }

    fn jwks(&self, uri: &str) -> BoxFuture<'static, Result<KeySet, IdpError>> {
        let (client, url) = (self.client.clone(), uri.to_string());
        Box::pin(async move {
            let bytes = get_ok(&client, &url).await?;
            KeySet::parse(&bytes).map_err(|e| IdpError::Invalid(format!("{url}: {e}")))
        })
    }
}
