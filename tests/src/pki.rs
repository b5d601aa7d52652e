//! Test certificates, generated in-process with rcgen (ring backend, ECDSA P-256).
//!
//! One CA signs a server certificate for the gateway's HTTPS listener and client certificates
//! whose URI SAN is a SPIFFE identity (what Istio `principals` match). Nothing is committed:
//! every test makes its own PKI and writes it to its temp dir.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The SPIFFE identity seed example 05 allows.
pub const CHECKOUT_SPIFFE: &str = "spiffe://cluster.local/ns/checkout/sa/checkout";
/// Another workload identity (refused by seed example 05).
pub const OTHER_SPIFFE: &str = "spiffe://cluster.local/ns/shop/sa/frontend";

/// A certificate and its private key.
#[derive(Debug, Clone)]
pub struct CertKey {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM private key (PKCS#8).
    pub key_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl CertKey {
    /// The certificate as DER for rustls.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert_der.clone())
    }

    /// The private key as DER for rustls.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Writes `<stem>.crt` and `<stem>.key` to `dir`; returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
        let crt = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&crt, &self.cert_pem).with_context(|| format!("{}", crt.display()))?;
        std::fs::write(&key, &self.key_pem).with_context(|| format!("{}", key.display()))?;
        Ok((crt, key))
    }
}

/// A test certificate authority.
pub struct Pki {
    ca: rcgen::Issuer<'static, KeyPair>,
    ca_pem: String,
    ca_der: Vec<u8>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "wayguard tests");
    dn.push(DnType::CommonName, common_name);
    dn
}

impl Pki {
    /// A new CA named `common_name`.
    pub fn new(common_name: &str) -> Result<Self> {
        let key = KeyPair::generate().context("CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).context("CA certificate")?;
        Ok(Self {
            ca_pem: cert.pem(),
            ca_der: cert.der().to_vec(),
            ca: rcgen::Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate (DER) for rustls root stores.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.ca_der.clone())
    }

    fn leaf(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<CertKey> {
        let key = KeyPair::generate().context("leaf key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.ca).context("signing a leaf")?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }

    /// A server certificate for `dns_names` and 127.0.0.1.
    pub fn server_cert(&self, dns_names: &[&str]) -> Result<CertKey> {
        let mut sans = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
        for dns in dns_names {
            sans.push(SanType::DnsName((*dns).try_into().context("DNS SAN")?));
        }
        let cn = dns_names.first().copied().unwrap_or("127.0.0.1");
        self.leaf(cn, sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose only SAN is the URI `spiffe_id`.
    pub fn client_cert(&self, spiffe_id: &str) -> Result<CertKey> {
        let san = SanType::URI(spiffe_id.try_into().context("URI SAN")?);
        self.leaf(spiffe_id, vec![san], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

fn b64(text: &str) -> String {
    STANDARD.encode(text.as_bytes())
}

/// A `kubernetes.io/tls` Secret holding `cert` (`tls.crt`, `tls.key`).
pub fn tls_secret_yaml(namespace: &str, name: &str, cert: &CertKey) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         type: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&cert.cert_pem),
        b64(&cert.key_pem)
    )
}

/// A ConfigMap with `ca.crt` (Gateway API frontend validation `caCertificateRefs`).
pub fn ca_configmap_yaml(namespace: &str, name: &str, ca_pem: &str) -> String {
    let indented: String = ca_pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         data:\n  ca.crt: |\n{indented}"
    )
}

/// A Secret with `ca.crt` (the Secret form of a CA reference).
pub fn ca_secret_yaml(namespace: &str, name: &str, ca_pem: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         type: Opaque\ndata:\n  ca.crt: {}\n",
        b64(ca_pem)
    )
}
