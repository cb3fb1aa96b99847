//! The Unix-socket server: one request per connection, bounded and timed.
//!
//! * At most `max_connections` connections are served at once; further clients wait in the
//!   kernel's listen backlog (their `connect` blocks) instead of costing memory here.
//! * Each connection has `io_timeout` to send its request and to take the response; a
//!   client that connects and sends nothing is dropped when it expires.
//! * The length prefix is bounded by [`aesm::frame::MAX_REQUEST_LEN`] before anything is
//!   allocated; garbage, truncated frames and unknown requests close the connection without
//!   a reply, as aesmd does.
//! * Every request is logged as one structured line with the caller's pid/uid/gid from
//!   SO_PEERCRED, the request type, the result and the duration.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aesm::frame::MAX_REQUEST_LEN;
use aesm::{AesmError, RequestKind, Response};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::QuoteBackend;
use crate::metrics::Metrics;
use crate::service::handle;

/// Server settings (validated by the CLI before binding).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Socket path (its directory is created if missing).
    pub socket: PathBuf,
    /// Permission bits of the socket file (pods connect, so usually 0666).
    pub socket_mode: u32,
    /// Connections served at once.
    pub max_connections: usize,
    /// Per-connection bound on reading the request and on writing the response.
    pub io_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A filesystem or socket operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Something is listening on the socket already.
    #[error("another service is already listening on {}", .0.display())]
    InUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("{} exists and is not a socket; refusing to remove it", .0.display())]
    NotASocket(PathBuf),
    /// `max_connections` is zero or too large for the semaphore.
    #[error("max connections must be between 1 and {max}", max = u32::MAX)]
    BadLimit,
}

struct State {
    backend: Arc<dyn QuoteBackend>,
    metrics: Metrics,
    io_timeout: Duration,
}

/// A bound server, ready to [`Server::serve`].
pub struct Server {
    listener: UnixListener,
    cfg: ServerConfig,
    state: Arc<State>,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServerError {
    let path = path.to_owned();
    move |source| ServerError::Io { op, path, source }
}

/// Removes `path` if it is a socket nobody listens on.
fn remove_stale(path: &Path) -> Result<(), ServerError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("inspecting", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket(path.to_owned()));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ServerError::InUse(path.to_owned()));
    }
    tracing::info!(path = %path.display(), "removing stale socket");
    std::fs::remove_file(path).map_err(io("removing stale socket", path))
}

impl Server {
    /// Creates the socket directory if missing (mode 0755), removes a stale socket, binds
    /// and sets the socket's mode. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// [`ServerError`] naming the path and operation.
    pub fn bind(
        cfg: ServerConfig,
        backend: Arc<dyn QuoteBackend>,
        metrics: Metrics,
    ) -> Result<Self, ServerError> {
        if cfg.max_connections == 0 || u32::try_from(cfg.max_connections).is_err() {
            return Err(ServerError::BadLimit);
        }
        if let Some(dir) = cfg.socket.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(io("creating socket directory", dir))?;
        }
        remove_stale(&cfg.socket)?;
        let listener = UnixListener::bind(&cfg.socket).map_err(io("binding", &cfg.socket))?;
        std::fs::set_permissions(
            &cfg.socket,
            std::fs::Permissions::from_mode(cfg.socket_mode),
        )
        .map_err(io("setting permissions of", &cfg.socket))?;
        tracing::info!(
            socket = %cfg.socket.display(),
            mode = format_args!("{:o}", cfg.socket_mode),
            backend = backend.name(),
            max_connections = cfg.max_connections,
            "quote helper listening"
        );
        let state = Arc::new(State {
            backend,
            metrics,
            io_timeout: cfg.io_timeout,
        });
        Ok(Self {
            listener,
            cfg,
            state,
        })
    }

    /// The socket path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.cfg.socket
    }

    /// Serves until `shutdown` resolves, then stops accepting, removes the socket file and
    /// waits up to `drain_timeout` for in-flight connections.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let max = self.cfg.max_connections;
        let sem = Arc::new(Semaphore::new(max));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                p = sem.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                () = &mut shutdown => break,
                r = self.listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let state = self.state.clone();
            tokio::spawn(async move {
                connection(stream, &state).await;
                drop(permit);
            });
        }
        drop(self.listener);
        if let Err(e) = std::fs::remove_file(&self.cfg.socket) {
            tracing::debug!(error = %e, "removing socket on shutdown");
        }
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        match tokio::time::timeout(self.cfg.drain_timeout, sem.acquire_many(all)).await {
            Ok(_) => tracing::info!("quote helper stopped"),
            Err(_) => tracing::warn!("quote helper stopped with requests still in flight"),
        }
    }
}

fn transport_label(e: &aesm::Error) -> &'static str {
    match e {
        aesm::Error::FrameTooLarge { .. } => "frame_too_large",
        aesm::Error::Truncated { .. } => "truncated",
        aesm::Error::Decode(_) => "malformed",
        aesm::Error::UnknownRequest => "unknown_request",
        _ => "io_error",
    }
}

async fn connection(mut stream: UnixStream, st: &State) {
    let start = Instant::now();
    let cred = stream.peer_cred().ok();
    let pid = cred.and_then(|c| c.pid());
    let uid = cred.map(|c| c.uid());
    let gid = cred.map(|c| c.gid());
    st.metrics.in_flight.inc();
    let read = tokio::time::timeout(
        st.io_timeout,
        aesm::server::read_request(&mut stream, MAX_REQUEST_LEN),
    )
    .await;
    let req = match read {
        Ok(Ok(req)) => req,
        Ok(Err(e)) => {
            let result = transport_label(&e);
            st.metrics.count("invalid", result);
            tracing::info!(
                peer_pid = pid, peer_uid = uid, peer_gid = gid, request = "invalid", result,
                error = %e, duration_ms = start.elapsed().as_secs_f64() * 1e3,
                "aesm request rejected; closing"
            );
            st.metrics.in_flight.dec();
            return;
        }
        Err(_) => {
            st.metrics.count("invalid", "timeout");
            tracing::info!(
                peer_pid = pid,
                peer_uid = uid,
                peer_gid = gid,
                request = "none",
                result = "timeout",
                duration_ms = start.elapsed().as_secs_f64() * 1e3,
                "client sent no complete request in time; closing"
            );
            st.metrics.in_flight.dec();
            return;
        }
    };
    let kind = req.kind();
    let res = if st.backend.is_blocking() {
        let backend = st.backend.clone();
        tokio::task::spawn_blocking(move || handle(backend.as_ref(), req))
            .await
            .unwrap_or(Response::Error {
                kind,
                code: AesmError::Unexpected,
            })
    } else {
        handle(st.backend.as_ref(), req)
    };
    let code = res.code();
    let written = tokio::time::timeout(
        st.io_timeout,
        aesm::server::write_response(&mut stream, res),
    )
    .await;
    let result = match written {
        Ok(Ok(())) => code.label(),
        Ok(Err(_)) => "write_failed",
        Err(_) => "write_timeout",
    };
    let elapsed = start.elapsed();
    st.metrics.count(kind.label(), result);
    if kind == RequestKind::GetQuoteEx && code == AesmError::Success {
        st.metrics.quote_latency.observe(elapsed.as_secs_f64());
    }
    tracing::info!(
        peer_pid = pid,
        peer_uid = uid,
        peer_gid = gid,
        request = kind.label(),
        result,
        aesm_code = code.code(),
        duration_ms = elapsed.as_secs_f64() * 1e3,
        "aesm request"
    );
    st.metrics.in_flight.dec();
}
