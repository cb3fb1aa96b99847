//! The serving certificate: loaded from PEM files and reloaded when they change.
//!
//! cert-manager (or any Secret update) replaces `tls.crt` and `tls.key` in the mounted volume;
//! the kubelet swaps a symlink, so the files get a new inode and mtime. [`CertReloader`] is a
//! rustls [`ResolvesServerCert`]: on a TLS handshake, at most once per check interval, it
//! `stat`s both files and re-reads them when their identity (device, inode, size, mtime,
//! ctime) changed. A pair that does not load (half-written, key not matching the
//! certificate) is logged and ignored: the previous certificate keeps being served and the
//! next handshake after the interval tries again. Keep-alive connections keep the certificate
//! they were established with.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Metrics;

/// Why the certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("reading {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        reason: std::io::Error,
    },
    /// The certificate file holds no PEM `CERTIFICATE`.
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A PEM file is malformed.
    #[error("{} is not valid PEM: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: rustls_pki_types::pem::Error,
    },
    /// The key is unsupported, or does not match the certificate.
    #[error("certificate {} with key {}: {reason}", cert.display(), key.display())]
    Key {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: rustls::Error,
    },
    /// The TLS configuration could not be built.
    #[error("building the TLS configuration: {0}")]
    Config(rustls::Error),
}

/// Identity of a file as `stat` sees it; a change means "re-read".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        Some(Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

struct Loaded {
    key: Arc<CertifiedKey>,
    stamps: (Option<Stamp>, Option<Stamp>),
}

/// A rustls certificate resolver that reloads the certificate files when they change.
pub struct CertReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    check_every: Duration,
    last_check: Mutex<Instant>,
    current: RwLock<Loaded>,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertReloader")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("check_every", &self.check_every)
            .finish_non_exhaustive()
    }
}

/// The one crypto provider of the project (aws-lc-rs).
#[must_use]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl CertReloader {
    /// Loads the pair now (failing if it does not load) and checks the files for changes at
    /// most once per `check_every` (`Duration::ZERO`: on every handshake).
    pub fn new(
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
        check_every: Duration,
        metrics: Option<Metrics>,
    ) -> Result<Self, Error> {
        let (cert_path, key_path) = (cert_path.into(), key_path.into());
        let provider = provider();
        let stamps = (Stamp::of(&cert_path), Stamp::of(&key_path));
        let key = load(&cert_path, &key_path, &provider)?;
        if let Some(m) = &metrics {
            record_expiry(m, &key);
        }
        Ok(Self {
            cert_path,
            key_path,
            provider,
            check_every,
            last_check: Mutex::new(Instant::now()),
            current: RwLock::new(Loaded { key, stamps }),
            metrics,
        })
    }

    /// The certificate currently served.
    #[must_use]
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .key
            .clone()
    }

    /// Re-reads the files if they changed since the last load. Returns `Ok(true)` when a new
    /// certificate was loaded.
    pub fn reload_if_changed(&self) -> Result<bool, Error> {
        let stamps = (Stamp::of(&self.cert_path), Stamp::of(&self.key_path));
        {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if current.stamps == stamps {
                return Ok(false);
            }
        }
        let result = load(&self.cert_path, &self.key_path, &self.provider);
        if let Some(m) = &self.metrics {
            m.cert_reload(result.is_ok());
        }
        let key = result?;
        if let Some(m) = &self.metrics {
            record_expiry(m, &key);
        }
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Loaded { key, stamps };
        tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
        Ok(true)
    }

    fn maybe_reload(&self) {
        {
            // Another handshake is checking right now: use the current certificate.
            let Ok(mut last) = self.last_check.try_lock() else {
                return;
            };
            if last.elapsed() < self.check_every {
                return;
            }
            *last = Instant::now();
        }
        if let Err(e) = self.reload_if_changed() {
            tracing::warn!(error = %e, "certificate files changed but do not load; still serving the previous certificate");
        }
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.maybe_reload();
        Some(self.current())
    }
}

/// Publishes the leaf certificate's notAfter (0 if it cannot be read: rustls accepted the
/// chain, so this only happens for certificates outside what x509-cert parses).
fn record_expiry(metrics: &Metrics, key: &CertifiedKey) {
    metrics.cert_not_after(not_after(key).unwrap_or(0));
}

/// The leaf certificate's notAfter as Unix seconds.
pub fn not_after(key: &CertifiedKey) -> Option<i64> {
    use x509_cert::der::Decode as _;
    let leaf = x509_cert::Certificate::from_der(key.end_entity_cert().ok()?.as_ref()).ok()?;
    let secs = leaf
        .tbs_certificate
        .validity
        .not_after
        .to_unix_duration()
        .as_secs();
    i64::try_from(secs).ok()
}

/// Reads a certificate chain and its private key and checks that they match.
fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, Error> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|reason| Error::Read {
            path: path.to_owned(),
            reason,
        })
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| Error::Pem {
            path: cert.to_owned(),
            reason,
        })?;
    if chain.is_empty() {
        return Err(Error::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|reason| Error::Pem {
        path: key.to_owned(),
        reason,
    })?;
    let certified =
        CertifiedKey::from_der(chain, private, provider).map_err(|reason| Error::Key {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason,
        })?;
    Ok(Arc::new(certified))
}

/// A rustls server configuration around the reloader: TLS 1.3 and 1.2, ALPN `h2` and
/// `http/1.1`, no client authentication (the API server authenticates us, not the reverse).
pub fn server_config(resolver: Arc<CertReloader>) -> Result<Arc<ServerConfig>, Error> {
    let mut config = ServerConfig::builder_with_provider(resolver.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(Error::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
