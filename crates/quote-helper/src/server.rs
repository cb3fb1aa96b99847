//! The Unix-socket server: one request per connection, bounded and timed.
//!
//! Connections are served by a pool of plain threads that each block in `accept`, read one
//! request, answer it and close, as aesmd does with a thread per connection. For a local
//! socket with one request per connection this costs the least: no event loop, no hand-off
//! between threads, no readiness registration per connection. The pool starts with two
//! workers. A worker that is about to wait (for a slow client, or on a backend that may
//! block) first makes sure another worker is accepting, starting one if none is; a worker
//! that only computes does not, so under a CPU-bound load the pool stays at about one worker
//! per core and connections queue in the kernel's backlog instead of contending for cores.
//! A worker retires when it finds [`SPARE_WORKERS`] others idle.
//!
//! * At most `max_connections` connections are served at once (that many workers); further
//!   clients wait in the kernel's listen backlog (their `connect` blocks) instead of costing
//!   memory here.
//! * Each connection has `io_timeout` in total to send its request, and `io_timeout` to take
//!   the response; a client that connects and sends nothing is dropped when it expires. In
//!   the usual case (the request is there when it is accepted, the response fits the socket
//!   buffer) no timeout needs setting: a connection costs accept, SO_PEERCRED, one read, one
//!   write and close.
//! * The length prefix is bounded by [`aesm::frame::MAX_REQUEST_LEN`] before anything is
//!   allocated; garbage, truncated frames and unknown requests close the connection without
//!   a reply, as aesmd does.
//! * Every request is logged as one structured line with the caller's pid/uid/gid from
//!   SO_PEERCRED, the request type, the result and the duration.

use std::future::Future;
use std::io::{Read, Write as _};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aesm::frame::MAX_REQUEST_LEN;
use aesm::{AesmError, Request, RequestKind};

use crate::QuoteBackend;
use crate::metrics::Metrics;
use crate::service::handle;

/// Idle workers beyond which a worker that finishes a connection retires.
pub const SPARE_WORKERS: usize = 8;
/// Workers started with the server.
const INITIAL_WORKERS: usize = 2;

/// Server settings (validated by the CLI before binding).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Socket path (its directory is created if missing).
    pub socket: PathBuf,
    /// Permission bits of the socket file (pods connect, so usually 0666).
    pub socket_mode: u32,
    /// Connections served at once (worker threads at most).
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
    /// `max_connections` is zero or too large.
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
    /// and sets the socket's mode.
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

    /// Serves on worker threads until `shutdown` resolves, then stops accepting, removes the
    /// socket file and waits up to `drain_timeout` for in-flight connections.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let pool = Arc::new(Pool {
            listener: self.listener,
            state: self.state,
            max: self.cfg.max_connections,
            stop: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
            workers: Mutex::new(0),
            all_gone: Condvar::new(),
        });
        for _ in 0..INITIAL_WORKERS.min(pool.max) {
            Pool::spawn_worker(&pool);
        }
        shutdown.await;
        pool.stop.store(true, Ordering::SeqCst);
        // Wake the workers blocked in accept: on Linux, shutdown(2) on a listening socket makes
        // every pending and later accept fail (EINVAL).
        if let Err(e) = rustix::net::shutdown(&pool.listener, rustix::net::Shutdown::Both) {
            tracing::warn!(error = %e, "shutting the listening socket down");
        }
        if let Err(e) = std::fs::remove_file(&self.cfg.socket) {
            tracing::debug!(error = %e, "removing socket on shutdown");
        }
        let drain = self.cfg.drain_timeout;
        let p = Arc::clone(&pool);
        let drained = tokio::task::spawn_blocking(move || p.wait_all_gone(drain))
            .await
            .unwrap_or(false);
        if drained {
            tracing::info!("quote helper stopped");
        } else {
            tracing::warn!("quote helper stopped with requests still in flight");
        }
    }
}

/// The listening socket and its workers.
struct Pool {
    listener: UnixListener,
    state: Arc<State>,
    /// Most workers (connections served at once).
    max: usize,
    stop: AtomicBool,
    /// Workers blocked in `accept`.
    idle: AtomicUsize,
    /// Live workers.
    workers: Mutex<usize>,
    /// Signalled when the last worker exits.
    all_gone: Condvar,
}

impl Pool {
    /// Starts one more worker unless `max` run already; false if none was started.
    fn spawn_worker(pool: &Arc<Pool>) -> bool {
        let mut n = pool.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if *n >= pool.max || pool.stop.load(Ordering::SeqCst) {
            return false;
        }
        let p = Arc::clone(pool);
        match std::thread::Builder::new()
            .name("aesm-worker".into())
            .spawn(move || p.work())
        {
            Ok(_) => {
                *n = n.saturating_add(1);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, workers = *n, "could not start a worker thread");
                false
            }
        }
    }

    /// A worker: accept, serve, repeat; retires when enough others are idle or on shutdown.
    fn work(self: Arc<Self>) {
        loop {
            self.idle.fetch_add(1, Ordering::SeqCst);
            // Without the peer's address (unnamed for a client socket anyway): saves the
            // kernel filling one in per connection.
            let accepted =
                rustix::net::accept_with(&self.listener, rustix::net::SocketFlags::CLOEXEC);
            self.idle.fetch_sub(1, Ordering::SeqCst);
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            match accepted {
                Ok(fd) => {
                    let stream = UnixStream::from(fd);
                    connection(stream, &self.state, &|| self.keep_accepting());
                    if self.idle.load(Ordering::SeqCst) >= SPARE_WORKERS {
                        break;
                    }
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        let mut n = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.all_gone.notify_all();
        }
    }

    /// Called before a worker may wait: starts a worker if none is in `accept`, so a slow
    /// client or a slow backend call never keeps the others waiting.
    fn keep_accepting(self: &Arc<Self>) {
        if self.idle.load(Ordering::SeqCst) == 0 {
            Pool::spawn_worker(self);
        }
    }

    /// Waits until every worker has exited, at most `timeout`; true if they all did.
    fn wait_all_gone(&self, timeout: Duration) -> bool {
        let n = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let (n, _) = self
            .all_gone
            .wait_timeout_while(n, timeout, |n| *n > 0)
            .unwrap_or_else(PoisonError::into_inner);
        *n == 0
    }
}

/// Reads from a connection within one deadline for the whole request. The first read does
/// not wait: clients send the request right after connecting, so it is usually there, and
/// then no read timeout needs setting. Otherwise (and for a request in pieces) each read
/// waits at most for what is left of the deadline.
struct Deadline<'a> {
    stream: &'a UnixStream,
    until: Instant,
    first: bool,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if std::mem::replace(&mut self.first, false) {
            match rustix::net::recv(self.stream, &mut *buf, rustix::net::RecvFlags::DONTWAIT) {
                Ok((n, _)) => return Ok(n),
                Err(rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        (&mut &*self.stream).read(buf)
    }
}

/// A request read with `MSG_PEEK` into the caller's buffer: still queued on the socket until
/// [`Peeked::consume`].
struct Peeked {
    /// Bytes of the frame (prefix and payload) on the socket and at the start of the buffer.
    frame_len: usize,
}

impl Peeked {
    /// The request's protobuf bytes, from the buffer the request was peeked into.
    fn payload<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(aesm::frame::PREFIX_LEN..self.frame_len)
            .unwrap_or_default()
    }

    /// Takes the request off the socket, after the response has been sent. Taking it earlier
    /// would wake the client (which waits in `recv` for the response) for nothing: freeing the
    /// client's sent data signals "writable" on the client's socket, and a task blocked in
    /// `recv` on a Unix socket is woken by that too. Taking it at all keeps `close` from
    /// reporting ECONNRESET to the client.
    fn consume(self, stream: &UnixStream, buf: &mut [u8]) {
        let want = self.frame_len.min(buf.len());
        let buf = buf.get_mut(..want).unwrap_or_default();
        if let Err(e) = rustix::net::recv(stream, buf, rustix::net::RecvFlags::DONTWAIT) {
            tracing::debug!(error = %e, "taking a served request off the socket");
        }
    }
}

/// The usual case, cheaply: the whole request arrives in one piece right after `connect`.
/// Peeks at what is queued (into `buf`), waiting (poll) once for the first bytes if there are
/// none yet; `None` when no complete, well-framed request that fits `buf` is queued after
/// that: the caller then reads it the general way, with the same deadline, and reports what
/// is wrong with it.
fn peek_request(
    stream: &UnixStream,
    until: Instant,
    before_wait: &dyn Fn(),
    buf: &mut [u8],
) -> Option<Peeked> {
    use rustix::net::RecvFlags;
    let peek = |buf: &mut [u8]| {
        rustix::net::recv(stream, buf, RecvFlags::PEEK | RecvFlags::DONTWAIT).map(|(n, _)| n)
    };
    let n = match peek(buf) {
        Ok(n) => n,
        Err(rustix::io::Errno::AGAIN) => {
            before_wait();
            let left = until.saturating_duration_since(Instant::now());
            let timeout = rustix::time::Timespec::try_from(left).ok()?;
            let mut fds = [rustix::event::PollFd::new(
                stream,
                rustix::event::PollFlags::IN,
            )];
            if rustix::event::poll(&mut fds, Some(&timeout)).ok()? == 0 {
                return None;
            }
            peek(buf).ok()?
        }
        Err(_) => return None,
    };
    let queued = buf.get(..n)?;
    let (prefix, rest) = queued.split_first_chunk::<{ aesm::frame::PREFIX_LEN }>()?;
    let len = aesm::frame::check_len(*prefix, MAX_REQUEST_LEN).ok()?;
    rest.get(..len)?;
    Some(Peeked {
        frame_len: aesm::frame::PREFIX_LEN.saturating_add(len),
    })
}

/// Writes `frame` whole. A frame that fits the socket's send buffer (any quote) goes out in
/// one non-blocking send; only the rest, if any, waits, at most `timeout`.
fn write_frame(
    stream: &UnixStream,
    frame: &[u8],
    timeout: Duration,
    before_wait: &dyn Fn(),
) -> std::io::Result<()> {
    let sent = match rustix::net::send(stream, frame, rustix::net::SendFlags::DONTWAIT) {
        Ok(n) => n,
        Err(rustix::io::Errno::AGAIN) => 0,
        Err(e) => return Err(e.into()),
    };
    let rest = frame.get(sent..).unwrap_or_default();
    if rest.is_empty() {
        return Ok(());
    }
    before_wait();
    stream.set_write_timeout(Some(timeout))?;
    (&mut &*stream).write_all(rest)
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

/// Whether a read error is the request deadline running out.
fn is_timeout(e: &aesm::Error) -> bool {
    matches!(e, aesm::Error::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ))
}

/// Serves one connection. `before_wait` runs before anything that may wait: for the client
/// (its request is not complete yet, or the response does not fit the socket buffer) or for
/// a backend that [may block](QuoteBackend::may_block).
fn connection(stream: UnixStream, st: &State, before_wait: &dyn Fn()) {
    let start = Instant::now();
    // The caller's credentials are for the request log line only: not fetched when it is
    // not logged.
    let cred = if tracing::enabled!(tracing::Level::INFO) {
        rustix::net::sockopt::socket_peercred(&stream).ok()
    } else {
        None
    };
    let pid = cred.as_ref().map(|c| c.pid.as_raw_nonzero().get());
    let uid = cred.as_ref().map(|c| c.uid.as_raw());
    let gid = cred.as_ref().map(|c| c.gid.as_raw());
    st.metrics.in_flight.inc();
    let until = start + st.io_timeout;
    let mut buf = [0u8; aesm::frame::REQUEST_FIRST_READ];
    let peeked = peek_request(&stream, until, before_wait, &mut buf);
    let read = match &peeked {
        Some(p) => Request::decode(p.payload(&buf)),
        None => {
            before_wait();
            let mut r = Deadline {
                stream: &stream,
                until,
                first: true,
            };
            aesm::frame::read_frame_blocking(
                &mut r,
                MAX_REQUEST_LEN,
                aesm::frame::REQUEST_FIRST_READ,
            )
            .and_then(|payload| Request::decode(&payload))
        }
    };
    let req = match read {
        Ok(req) => req,
        Err(e) if is_timeout(&e) => {
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
        Err(e) => {
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
    };
    let kind = req.kind();
    if st.backend.may_block() {
        before_wait();
    }
    let res = handle(st.backend.as_ref(), req);
    let code = res.code();
    let result = match res.into_frame() {
        Ok(frame) => match write_frame(&stream, &frame, st.io_timeout, before_wait) {
            Ok(()) => code.label(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                "write_timeout"
            }
            Err(_) => "write_failed",
        },
        Err(_) => "write_failed",
    };
    if let Some(p) = peeked {
        p.consume(&stream, &mut buf);
    }
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
