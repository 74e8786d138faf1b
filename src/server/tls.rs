//! TLS for the public listeners: rustls with aws-lc-rs, ALPN `h2` and
//! `http/1.1`, certificates chosen by SNI with a default for clients that send
//! no name (or one no certificate covers), and reload when the files change.
//!
//! rustls' own `ResolvesServerCertUsingSni` has neither a default nor reload,
//! hence this small resolver. Open connections keep the certificate they
//! started with; the next handshake gets the new one.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::{CertificateFiles, TlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a PEM certificate chain")]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path} is not a PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    BadKey {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path}: the private key is of a kind rustls cannot sign with")]
    UnsupportedKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{key} does not belong to the certificate in {certificate}")]
    KeyMismatch { certificate: PathBuf, key: PathBuf },
    #[error("cannot build the TLS configuration")]
    Config(#[source] rustls::Error),
}

/// The certificates currently served, with the file contents they came from
/// so a reload can tell whether anything changed.
struct Loaded {
    default: Arc<CertifiedKey>,
    by_sni: Vec<Arc<CertifiedKey>>,
    source_bytes: Vec<Vec<u8>>,
}

/// `provider` with AES-128-GCM first among its cipher suites, TLS 1.3 and 1.2
/// alike, every suite still offered: the order of ALB's TLS 1.3 security
/// policies. Clients usually list AES-256-GCM first, and with it comes
/// SHA-384 for the handshake, which aws-lc computes without its AVX code on
/// AMD CPUs (`sha512_avx_capable` requires an Intel CPU): 16 % of the CPU
/// for new connections on the benchmark's AMD EPYC (perf), and 1.07× the
/// handshakes per second once AES-128-GCM comes first (docs/performance.md).
fn server_suites(provider: &CryptoProvider) -> CryptoProvider {
    let mut provider = provider.clone();
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    provider
}

/// Chooses a certificate per handshake and swaps in renewed ones.
pub struct CertResolver {
    config: TlsConfig,
    provider: Arc<CryptoProvider>,
    loaded: RwLock<Arc<Loaded>>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("config", &self.config)
            .finish()
    }
}

impl CertResolver {
    pub fn load(config: &TlsConfig, provider: Arc<CryptoProvider>) -> Result<Arc<Self>, TlsError> {
        let source_bytes = read_all(config)?;
        let loaded = build(config, &provider, source_bytes)?;
        Ok(Arc::new(Self {
            config: config.clone(),
            provider,
            loaded: RwLock::new(Arc::new(loaded)),
        }))
    }

    /// The rustls server configuration for a listener using this resolver.
    /// The server's order of cipher suites decides ([`server_suites`]).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(server_suites(&self.provider));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.ignore_client_order = true;
        Ok(Arc::new(config))
    }

    /// Re-reads the files; swaps the certificates in when they changed and
    /// load cleanly. A broken renewal keeps the old certificates serving.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let source_bytes = read_all(&self.config)?;
        if source_bytes == self.current().source_bytes {
            return Ok(false);
        }
        let loaded = build(&self.config, &self.provider, source_bytes)?;
        *self
            .loaded
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(loaded);
        Ok(true)
    }

    /// Polls the files every `reload_interval` until the resolver is dropped.
    pub fn watch(self: &Arc<Self>) {
        let resolver: Weak<Self> = Arc::downgrade(self);
        let interval = self.config.reload_interval;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(resolver) = resolver.upgrade() else {
                    return;
                };
                let certificate = &resolver.config.default_certificate.certificate_file;
                match resolver.reload() {
                    Ok(true) => {
                        tracing::info!(certificate = %certificate.display(), "TLS certificates reloaded")
                    }
                    Ok(false) => {}
                    Err(error) => tracing::error!(
                        error = %error,
                        cause = ?std::error::Error::source(&error),
                        "TLS certificate reload failed; still serving the previous certificates"
                    ),
                }
            }
        });
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.current();
        let chosen = hello
            .server_name()
            .and_then(|name| ServerName::try_from(name).ok())
            .and_then(|name| loaded.by_sni.iter().find(|key| covers(key, &name)).cloned());
        Some(chosen.unwrap_or_else(|| loaded.default.clone()))
    }
}

/// True when the certificate is valid for the name, wildcards included.
fn covers(key: &CertifiedKey, name: &ServerName<'_>) -> bool {
    let Some(leaf) = key.cert.first() else {
        return false;
    };
    webpki::EndEntityCert::try_from(leaf)
        .and_then(|cert| cert.verify_is_valid_for_subject_name(name))
        .is_ok()
}

fn all_files(config: &TlsConfig) -> impl Iterator<Item = &CertificateFiles> {
    std::iter::once(&config.default_certificate).chain(config.certificates.iter())
}

fn read_all(config: &TlsConfig) -> Result<Vec<Vec<u8>>, TlsError> {
    let mut bytes = Vec::new();
    for files in all_files(config) {
        for path in [&files.certificate_file, &files.private_key_file] {
            let content = std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.clone(),
                source,
            })?;
            bytes.push(content);
        }
    }
    Ok(bytes)
}

fn build(
    config: &TlsConfig,
    provider: &CryptoProvider,
    source_bytes: Vec<Vec<u8>>,
) -> Result<Loaded, TlsError> {
    let mut keys = all_files(config)
        .zip(source_bytes.chunks(2))
        .map(|(files, pair)| certified_key(files, &pair[0], &pair[1], provider))
        .collect::<Result<Vec<_>, _>>()?;
    let default = keys.remove(0);
    Ok(Loaded {
        default,
        by_sni: keys,
        source_bytes,
    })
}

fn certified_key(
    files: &CertificateFiles,
    certificate_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(certificate_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadCertificate {
            path: files.certificate_file.clone(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.certificate_file.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsError::BadKey {
        path: files.private_key_file.clone(),
        source,
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::UnsupportedKey {
            path: files.private_key_file.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    // A renewal that wrote the key before the certificate must not be served half-done.
    certified.keys_match().map_err(|_| TlsError::KeyMismatch {
        certificate: files.certificate_file.clone(),
        key: files.private_key_file.clone(),
    })?;
    Ok(Arc::new(certified))
}
