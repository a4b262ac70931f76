//! TLS for intercepted connections: the per-installation CA, the leaf
//! certificates the gateway shows the sandbox for hosts where a secret is
//! due, and the upstream side, verified against the system roots plus the
//! operator's extra roots.
//!
//! The CA is made once (by the server, which keeps it sealed in its data
//! dir) and handed in as PEM; sandboxes trust it through their CA bundle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use tracing::warn;

use crate::spec::Secret;

/// How long a minted leaf is used before a new one is made; its validity
/// is longer, so a connection that outlives the reuse window stays valid.
const LEAF_REUSE: Duration = Duration::from_secs(24 * 3600);
const LEAF_VALIDITY: time::Duration = time::Duration::days(7);
/// Leaves cached per gateway process before the cache is emptied.
const MAX_CACHED_LEAVES: usize = 4096;

/// A CA certificate and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPem {
    pub cert_pem: String,
    pub key_pem: Secret,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A new CA for this installation, named `common_name`, valid for ten years.
pub fn generate_ca(common_name: &str) -> anyhow::Result<CaPem> {
    let key = KeyPair::generate().context("generate CA key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Bridle");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key).context("self-sign CA certificate")?;
    Ok(CaPem { cert_pem: cert.pem(), key_pem: Secret::new(key.serialize_pem()) })
}

/// Issues leaf certificates with a CA.
pub struct Minter {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
}

impl Minter {
    pub fn new(ca: &CaPem) -> anyhow::Result<Self> {
        let key = KeyPair::from_pem(ca.key_pem.expose()).context("the CA key is not a PEM private key")?;
        let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, key).context("the CA certificate cannot be read")?;
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).context("the CA certificate is not PEM")?;
        Ok(Self { issuer, ca_der })
    }

    /// A server certificate for `host` (a DNS name or an IP address) and its
    /// key: the chain (leaf, CA) in DER.
    pub fn issue(&self, host: &str) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let (cert, key) = self.issue_raw(host)?;
        let key = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| anyhow::anyhow!("leaf key: {e}"))?;
        Ok((vec![cert.der().clone(), self.ca_der.clone()], key))
    }

    /// [`issue`](Self::issue) as PEM (certificate, key), for servers outside
    /// the gateway (tests).
    pub fn issue_pem(&self, host: &str) -> anyhow::Result<(String, String)> {
        let (cert, key) = self.issue_raw(host)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    fn issue_raw(&self, host: &str) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let mut params = CertificateParams::new(vec![host.to_owned()])
            .with_context(|| format!("`{host}` cannot be named in a certificate"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + LEAF_VALIDITY;
        let key = KeyPair::generate().context("generate leaf key")?;
        let cert = params.signed_by(&key, &self.issuer).context("sign leaf certificate")?;
        Ok((cert, key))
    }
}

/// Parse every certificate of a PEM text (operator's extra roots).
pub fn parse_pem_certs(what: &str, pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{what} is not PEM"))?;
    anyhow::ensure!(!certs.is_empty(), "{what} holds no certificate");
    Ok(certs)
}

/// What the gateway needs to intercept: the minter with its cache of
/// server configs, and the upstream client config.
pub struct Interceptor {
    minter: Minter,
    leaves: Mutex<HashMap<String, (Instant, Arc<ServerConfig>)>>,
    upstream: Arc<ClientConfig>,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interceptor(..)")
    }
}

impl Interceptor {
    /// `extra_roots`: PEM texts of the operator's extra upstream roots.
    pub fn new(ca: &CaPem, extra_roots: &[String]) -> anyhow::Result<Self> {
        let minter = Minter::new(ca)?;
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        if !native.errors.is_empty() {
            warn!(errors = ?native.errors, "some system root certificates could not be loaded");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        if ignored > 0 {
            warn!(ignored, "system root certificates rustls cannot use were skipped");
        }
        if added == 0 && extra_roots.is_empty() {
            warn!("no system root certificates found: intercepted upstreams cannot be verified");
        }
        for (i, pem) in extra_roots.iter().enumerate() {
            for c in parse_pem_certs(&format!("extra upstream root #{i}"), pem)? {
                roots.add(c).with_context(|| format!("extra upstream root #{i} is not a usable CA certificate"))?;
            }
        }
        let mut upstream = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        upstream.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { minter, leaves: Mutex::new(HashMap::new()), upstream: Arc::new(upstream) })
    }

    /// The server side for `host`: a leaf minted (or reused) for it.
    pub fn server_config(&self, host: &str) -> anyhow::Result<Arc<ServerConfig>> {
        let key = host.to_ascii_lowercase();
        if let Some((made, cfg)) = self.leaves.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && made.elapsed() < LEAF_REUSE
        {
            return Ok(cfg.clone());
        }
        let (chain, leaf_key) = self.minter.issue(&key)?;
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, leaf_key)
            .context("leaf certificate")?;
        // The gateway speaks HTTP/1.1 to both sides.
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        let mut leaves = self.leaves.lock().unwrap_or_else(|p| p.into_inner());
        if leaves.len() >= MAX_CACHED_LEAVES {
            leaves.clear();
        }
        leaves.insert(key, (Instant::now(), cfg.clone()));
        Ok(cfg)
    }

    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.upstream.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::{ServerName, UnixTime};

    fn verify(ca_pem: &str, chain: &[CertificateDer<'static>], name: &str) -> Result<(), rustls::Error> {
        let mut roots = RootCertStore::empty();
        for c in parse_pem_certs("ca", ca_pem).unwrap() {
            roots.add(c).unwrap();
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build().unwrap();
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn minted_leaves_verify_against_the_ca_for_their_host_only() {
        let ca = generate_ca("Bridle test CA").unwrap();
        assert!(ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let minter = Minter::new(&ca).unwrap();
        for host in ["api.example.com", "127.0.0.2", "localhost"] {
            let (chain, _key) = minter.issue(host).unwrap();
            assert_eq!(chain.len(), 2, "leaf and CA");
            verify(&ca.cert_pem, &chain, host).unwrap_or_else(|e| panic!("{host}: {e}"));
        }
        // For another name it does not verify.
        let (chain, _) = minter.issue("api.example.com").unwrap();
        assert!(verify(&ca.cert_pem, &chain, "evil.example.com").is_err());
        // Nor against another CA.
        let other = generate_ca("other").unwrap();
        assert!(verify(&other.cert_pem, &chain, "api.example.com").is_err());
    }

    #[test]
    fn a_ca_reloaded_from_pem_issues_for_the_same_root() {
        let ca = generate_ca("Bridle test CA").unwrap();
        let again = CaPem { cert_pem: ca.cert_pem.clone(), key_pem: Secret::new(ca.key_pem.expose().to_owned()) };
        let (chain, _) = Minter::new(&again).unwrap().issue("api.example.com").unwrap();
        verify(&ca.cert_pem, &chain, "api.example.com").unwrap();
        // A key that does not belong to the certificate issues leaves that do not verify.
        let other = generate_ca("other").unwrap();
        let mixed = CaPem { cert_pem: ca.cert_pem.clone(), key_pem: other.key_pem.clone() };
        let (chain, _) = Minter::new(&mixed).unwrap().issue("api.example.com").unwrap();
        assert!(verify(&ca.cert_pem, &chain, "api.example.com").is_err());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let ca = generate_ca("c").unwrap();
        assert!(Minter::new(&CaPem { cert_pem: "nonsense".into(), key_pem: ca.key_pem.clone() }).is_err());
        assert!(Minter::new(&CaPem { cert_pem: ca.cert_pem.clone(), key_pem: Secret::new("nonsense") }).is_err());
        assert!(parse_pem_certs("x", "not pem").is_err());
        assert!(Interceptor::new(&ca, &["garbage".into()]).is_err());
        let icpt = Interceptor::new(&ca, std::slice::from_ref(&ca.cert_pem)).unwrap();
        // The server config is cached per host.
        let a = icpt.server_config("api.example.com").unwrap();
        let b = icpt.server_config("API.example.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
