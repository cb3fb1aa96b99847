//! HTTP and HTTPS serving shared by the attestation server and the PCCS: a rustls
//! (aws-lc-rs) server configuration from PEM files, and serving an axum router over plain TCP
//! or, through [`confcom_runtime::tls::serve_tls`], TLS. Does no routing of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

/// After shutdown is signalled, open HTTPS connections get this long to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of loading the TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file cannot be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or a malformed one.
    #[error("certificate PEM: {0}")]
    CertificatePem(rustls_pki_types::pem::Error),
    /// The key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1), or a malformed one.
    #[error("private key PEM: {0}")]
    KeyPem(rustls_pki_types::pem::Error),
    /// Only one of the certificate and the key was given.
    #[error("a TLS certificate needs a key and a key needs a certificate")]
    Incomplete,
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("TLS configuration")]
    Rustls(#[source] rustls::Error),
}

/// Builds a rustls server configuration (ALPN h2, http/1.1) from a PEM certificate chain
/// (leaf first) and a PEM private key.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    crate::install_crypto_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(TlsError::CertificatePem)?;
    if certs.is_empty() {
        return Err(TlsError::CertificatePem(
            rustls_pki_types::pem::Error::NoItemsFound,
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsError::KeyPem)?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Rustls)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Reads `--tls-cert` and `--tls-key` and builds the server configuration.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    server_config(&read(cert)?, &read(key)?)
}

/// The server configuration of optional `--tls-cert`/`--tls-key` flags: `None` (plain
/// HTTP) when neither is given.
pub fn load_tls(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    match (cert, key) {
        (Some(c), Some(k)) => load_server_config(c, k).map(Some),
        (None, None) => Ok(None),
        _ => Err(TlsError::Incomplete),
    }
}

/// Serves `app` on an already-bound listener until `shutdown` resolves: plain HTTP when
/// `tls` is `None`, HTTPS otherwise. A client that fails the TLS handshake (plain HTTP sent
/// to the HTTPS port, an untrusted certificate) loses its connection only; the loop keeps
/// accepting.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        None => {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            confcom_runtime::tls::serve_tls(listener, tls, app, shutdown, DRAIN_TIMEOUT).await;
            Ok(())
        }
    }
}
