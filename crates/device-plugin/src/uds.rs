//! Unix-socket plumbing for tonic: binding a plugin socket and dialing one.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::{Channel, Endpoint};

use crate::{Error, Result};

/// Binds `path`, removing a stale socket file first.
///
/// # Errors
/// [`Error::Socket`] when the stale file cannot be removed or the bind fails.
pub fn bind(path: &Path) -> Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Socket {
                path: path.to_owned(),
                source,
            });
        }
    }
    UnixListener::bind(path).map_err(|source| Error::Socket {
        path: path.to_owned(),
        source,
    })
}

/// A gRPC channel over the unix socket at `path` (the URI is a placeholder; the kubelet uses
/// authority `localhost` the same way).
///
/// # Errors
/// [`Error::Socket`] when the socket cannot be connected.
pub async fn connect(path: &Path) -> Result<Channel> {
    let target: PathBuf = path.to_owned();
    let endpoint = Endpoint::from_static("http://localhost");
    let err_path = target.clone();
    endpoint
        .connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let target = target.clone();
            async move { UnixStream::connect(target).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|e| Error::Socket {
            path: err_path,
            source: std::io::Error::other(e),
        })
}
