//! The Unix-socket server: one request per connection, bounded and timed.
//!
//! Connections are served by a pool of plain threads that each block in `accept`, take the
//! request, answer it and close, as aesmd does with a thread per connection. For a local
//! socket with one request per connection this costs the least: no event loop, no hand-off
//! between threads, no readiness registration per connection. The pool starts with two
//! workers. A worker that is about to wait (on a backend that may block, or briefly for a
//! request still on its way) first makes sure another worker is accepting, starting one if
//! none is; a worker that only computes does not, so under a CPU-bound load the pool stays at
//! about one worker per core and connections queue in the kernel's backlog instead of
//! contending for cores. A worker retires when it finds [`SPARE_WORKERS`] others idle.
//!
//! A connection holds a worker while it waits for its client at most [`REQUEST_GRACE`]:
//!
//! * A request that has not arrived whole within [`REQUEST_GRACE`] of `accept` (real clients
//!   send it right after `connect`, some as two writes: the length prefix, then the payload),
//!   and a response the client does not take as fast as it is written (it does not fit the
//!   socket buffer), are handed to one *waiter* thread. It polls all such connections, reads
//!   or writes what they allow, and gives a request that has come in whole to a new worker
//!   (workers waiting in `accept` cannot take it). So clients that
//!   connect and send nothing, or never read, cost a slot in the waiter, not a worker, and
//!   everyone else is served meanwhile.
//! * The waiter holds at most `max_pending` connections (lowered at start-up to fit the
//!   open-file limit, which is first raised to its hard limit) and
//!   [`MAX_HELD_RESPONSE_BYTES`] of unsent responses; beyond that it closes the connection
//!   that has waited longest (counted as `result="evicted"`).
//! * Each connection has `io_timeout` in total to send its request, and `io_timeout` to take
//!   the response, whoever holds it; a client that connects and sends nothing is dropped when
//!   it expires.
//! * At most `max_connections` requests are answered at once (a permit around the backend
//!   call; a worker that finds none waits for one, after making sure another accepts). Worker
//!   threads number at most `max_connections` plus [`SPARE_WORKERS`] (and the waiter): a
//!   worker started for a handed-back request leaves once it is answered if the pool is full.
//!   A panic in the backend answers that request with `AESM_UNEXPECTED_ERROR` and costs
//!   nothing else.
//! * The length prefix is bounded by [`aesm::frame::MAX_REQUEST_LEN`] before anything is
//!   allocated; garbage, truncated frames and unknown requests close the connection without
//!   a reply, as aesmd does.
//! * In the usual case (the request is there when it is accepted, the response fits the
//!   socket buffer) a connection costs accept, a peek at the request, one send, taking the
//!   request off the socket, and close: no timeouts are set and nothing is handed over.
//! * Every request is logged as one structured line with the caller's pid/uid/gid from
//!   SO_PEERCRED, the request type, the result and the duration.
//! * On shutdown the socket file is removed first (if it is still ours); the connections
//!   already waiting in the backlog are served by the workers and the shutting-down thread
//!   together, and responses still going out are finished, all within `drain_timeout`.

use std::collections::VecDeque;
use std::future::Future;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aesm::frame::{MAX_REQUEST_LEN, PREFIX_LEN};
use aesm::{AesmError, Request, RequestKind};
use rustix::event::{PollFd, PollFlags};
use rustix::net::{RecvFlags, SendFlags};

use crate::QuoteBackend;
use crate::metrics::Metrics;
use crate::service::handle;

/// Idle workers beyond which a worker that finishes a connection retires.
pub const SPARE_WORKERS: usize = 8;
/// Workers started with the server.
const INITIAL_WORKERS: usize = 2;
/// How long a worker waits for a request that is not there yet when it accepts the
/// connection, before handing the connection to the waiter. Clients send the request right
/// after `connect`; this only covers the moments between the two.
pub const REQUEST_GRACE: Duration = Duration::from_millis(2);
/// How often the waiter retries handing a complete request to a worker when `max_connections`
/// are busy.
const HANDOFF_RETRY: Duration = Duration::from_millis(10);

/// Server settings (validated by the CLI before binding).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Socket path (its directory is created if missing).
    pub socket: PathBuf,
    /// Permission bits of the socket file (pods connect, so usually 0666).
    pub socket_mode: u32,
    /// Requests served at once (worker threads at most).
    pub max_connections: usize,
    /// Connections held at once while they wait for their client (a request still coming, a
    /// response not yet taken); beyond it the longest-waiting one is closed.
    pub max_pending: usize,
    /// Per-connection bound on receiving the request and on the client taking the response.
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
    /// `max_connections` or `max_pending` is zero or too large.
    #[error("max connections and max pending connections must be between 1 and {max}", max = u32::MAX)]
    BadLimit,
}

struct State {
    backend: Arc<dyn QuoteBackend>,
    metrics: Metrics,
    io_timeout: Duration,
    /// Bounds the log lines of connections that brought no valid request.
    rejected_log: LogLimit,
    /// Requests answered at once (`max_connections`).
    permits: Permits,
}

/// Log lines of connections that brought no valid request (garbage, truncated, silent,
/// evicted), per second: beyond it they are counted in the metrics only, and the number left
/// out is logged once the next second begins. One pod sending garbage in a loop would
/// otherwise rotate everyone else's request lines out of the log.
pub const REJECTED_LOG_LINES_PER_SEC: u32 = 20;

/// A per-second budget of log lines.
struct LogLimit {
    since: Instant,
    /// The second (since `since`) the budget is counted in.
    second: AtomicU64,
    used: AtomicU32,
    suppressed: AtomicU64,
}

impl LogLimit {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            second: AtomicU64::new(0),
            used: AtomicU32::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Starts a new second's budget if the second has turned, logging how many lines the last
    /// one left out.
    fn roll(&self) {
        let now = self.since.elapsed().as_secs();
        let second = self.second.load(Ordering::Relaxed);
        if now != second
            && self
                .second
                .compare_exchange(second, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
            let left_out = self.suppressed.swap(0, Ordering::Relaxed);
            if left_out > 0 {
                tracing::warn!(
                    left_out,
                    limit_per_sec = REJECTED_LOG_LINES_PER_SEC,
                    "log lines of rejected connections left out (they are still counted in \
                     confcom_quote_helper_requests_total{{type=\"invalid\"}})"
                );
            }
        }
    }

    /// Whether lines were left out and not reported yet.
    fn owes_report(&self) -> bool {
        self.suppressed.load(Ordering::Relaxed) > 0
    }

    /// Whether one more line may be logged now.
    fn allow(&self) -> bool {
        self.roll();
        if self.used.fetch_add(1, Ordering::Relaxed) < REJECTED_LOG_LINES_PER_SEC {
            return true;
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// A bound server, ready to [`Server::serve`].
pub struct Server {
    listener: UnixListener,
    /// Device and inode of the socket file this server created: shutdown removes the path
    /// only while it is still this file.
    identity: (u64, u64),
    /// The waiter's wake-up socket pair (read end, write end).
    wake: (UnixStream, UnixStream),
    cfg: ServerConfig,
    state: Arc<State>,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServerError {
    let path = path.to_owned();
    move |source| ServerError::Io { op, path, source }
}

/// Requests being answered (backend call and response) at once, at most `max`. Taking one is
/// an atomic increment when one is free; a worker that finds none waits for one.
struct Permits {
    max: usize,
    used: AtomicUsize,
    waiting: AtomicUsize,
    lock: Mutex<()>,
    freed: Condvar,
}

impl Permits {
    fn new(max: usize) -> Self {
        Self {
            max,
            used: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            lock: Mutex::new(()),
            freed: Condvar::new(),
        }
    }

    fn try_take(&self) -> Option<Permit<'_>> {
        let mut n = self.used.load(Ordering::SeqCst);
        while n < self.max {
            match self.used.compare_exchange(
                n,
                n.saturating_add(1),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(Permit(self)),
                Err(now) => n = now,
            }
        }
        None
    }

    fn take(&self) -> Permit<'_> {
        loop {
            if let Some(p) = self.try_take() {
                return p;
            }
            let guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.waiting.fetch_add(1, Ordering::SeqCst);
            // Checked again after announcing the wait: a release in between notifies.
            let guard = if self.used.load(Ordering::SeqCst) >= self.max {
                self.freed
                    .wait(guard)
                    .unwrap_or_else(PoisonError::into_inner)
            } else {
                guard
            };
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
        }
    }

    fn available(&self) -> bool {
        self.used.load(Ordering::SeqCst) < self.max
    }
}

/// One request being answered; released when dropped (a panic included).
struct Permit<'a>(&'a Permits);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let permits = self.0;
        permits.used.fetch_sub(1, Ordering::SeqCst);
        if permits.waiting.load(Ordering::SeqCst) > 0 {
            let _guard = permits.lock.lock().unwrap_or_else(PoisonError::into_inner);
            permits.freed.notify_one();
        }
    }
}

/// File descriptors kept free of connections: the listening socket, the metrics endpoint,
/// the backend's files and libraries, logs.
const FD_RESERVE: u64 = 64;

/// Raises the soft limit on open files to the hard limit, and lowers `max_pending` so that
/// the waiter's connections, the workers' and [`FD_RESERVE`] fit under it: silent
/// connections must be evicted before `accept` fails with EMFILE for everyone.
fn fit_to_fd_limit(max_pending: usize, max_connections: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = raised,
            Err(e) => tracing::debug!(error = %e, "raising the open-file limit"),
        }
    }
    let Some(soft) = limit.current else {
        return max_pending;
    };
    let room = soft
        .saturating_sub(FD_RESERVE)
        .saturating_sub(u64::try_from(max_connections).unwrap_or(u64::MAX))
        .max(1);
    let fits = usize::try_from(room).unwrap_or(usize::MAX);
    if fits < max_pending {
        tracing::warn!(
            open_file_limit = soft,
            max_pending,
            lowered_to = fits,
            "max pending connections lowered to fit the open-file limit"
        );
        return fits;
    }
    max_pending
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
        mut cfg: ServerConfig,
        backend: Arc<dyn QuoteBackend>,
        metrics: Metrics,
    ) -> Result<Self, ServerError> {
        if cfg.max_connections == 0
            || u32::try_from(cfg.max_connections).is_err()
            || cfg.max_pending == 0
            || u32::try_from(cfg.max_pending).is_err()
        {
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
        let wake = UnixStream::pair()
            .and_then(|(rx, tx)| {
                rx.set_nonblocking(true)?;
                tx.set_nonblocking(true)?;
                Ok((rx, tx))
            })
            .map_err(io("creating the waiter's wake-up socket for", &cfg.socket))?;
        cfg.max_pending = fit_to_fd_limit(cfg.max_pending, cfg.max_connections);
        remove_stale(&cfg.socket)?;
        let listener = UnixListener::bind(&cfg.socket).map_err(io("binding", &cfg.socket))?;
        let meta = std::fs::symlink_metadata(&cfg.socket).map_err(io("inspecting", &cfg.socket))?;
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
            max_pending = cfg.max_pending,
            "quote helper listening"
        );
        let state = Arc::new(State {
            backend,
            metrics,
            io_timeout: cfg.io_timeout,
            rejected_log: LogLimit::new(),
            permits: Permits::new(cfg.max_connections),
        });
        Ok(Self {
            listener,
            identity: (meta.dev(), meta.ino()),
            wake,
            cfg,
            state,
        })
    }

    /// The socket path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.cfg.socket
    }

    /// Serves on worker threads until `shutdown` resolves, then removes the socket file (if
    /// it is still the one this server created), serves the connections already waiting in
    /// the backlog, stops accepting and waits up to `drain_timeout` for in-flight connections.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (wake_rx, wake_tx) = self.wake;
        let pool = Arc::new(Pool {
            listener: self.listener,
            state: self.state,
            max: self.cfg.max_connections,
            max_pending: self.cfg.max_pending,
            stop: AtomicBool::new(false),
            backlog_drained: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
            live: Mutex::new(Live::default()),
            all_gone: Condvar::new(),
            parking: Mutex::new(Parking::default()),
            wake: wake_tx,
            accept_log: LogLimit::new(),
        });
        Pool::start_waiter(&pool, wake_rx);
        for _ in 0..INITIAL_WORKERS.min(pool.max) {
            Pool::spawn_worker(&pool, &mut None);
        }
        shutdown.await;
        pool.stop.store(true, Ordering::SeqCst);
        remove_if_ours(&self.cfg.socket, self.identity);
        let drain = self.cfg.drain_timeout;
        let p = Arc::clone(&pool);
        let drained = tokio::task::spawn_blocking(move || {
            let until = Instant::now() + drain;
            p.drain_backlog(until);
            p.backlog_drained.store(true, Ordering::SeqCst);
            p.wake_waiter();
            p.wait_all_gone(until.saturating_duration_since(Instant::now()))
        })
        .await
        .unwrap_or(false);
        if drained {
            tracing::info!("quote helper stopped");
        } else {
            tracing::warn!("quote helper stopped with requests still in flight");
        }
    }
}

/// Removes the socket file at `path` if it is still the file this server bound (a newer
/// instance may have replaced it meanwhile: its socket is left alone).
fn remove_if_ours(path: &Path, identity: (u64, u64)) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if (m.dev(), m.ino()) == identity => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(error = %e, path = %path.display(), "removing socket on shutdown");
            }
        }
        Ok(_) => tracing::info!(
            path = %path.display(),
            "socket path now belongs to another instance; leaving it"
        ),
        Err(e) => tracing::debug!(error = %e, "socket already gone on shutdown"),
    }
}

/// Takes its worker out of the pool when dropped: at the end of [`Pool::work`], or if it
/// unwinds.
struct Retire<'a>(&'a Pool);

impl Drop for Retire<'_> {
    fn drop(&mut self) {
        self.0.retire();
    }
}

/// Threads alive, under one lock so shutdown can wait for all of them.
#[derive(Default)]
struct Live {
    workers: usize,
    waiter: bool,
}

/// Connections handed to the waiter and not yet taken in by it.
#[derive(Default)]
struct Parking {
    list: Vec<Parked>,
    /// The waiter is gone (or never started): nothing more is taken in.
    closed: bool,
}

/// The listening socket, its workers and its waiter.
struct Pool {
    listener: UnixListener,
    state: Arc<State>,
    /// Most requests served at once.
    max: usize,
    /// Most connections held by the waiter.
    max_pending: usize,
    stop: AtomicBool,
    /// Set once shutdown has served the backlog: the waiter may exit when nothing is left.
    backlog_drained: AtomicBool,
    /// Workers blocked in `accept`.
    idle: AtomicUsize,
    live: Mutex<Live>,
    /// Signalled when the last thread exits.
    all_gone: Condvar,
    parking: Mutex<Parking>,
    /// Write end of the waiter's wake-up socket.
    wake: UnixStream,
    /// Bounds the warnings of a failing `accept` (EMFILE under a flood).
    accept_log: LogLimit,
}

/// A caller, for the request log line; holds its connection's place in
/// `connections_in_flight` until dropped.
struct Peer {
    start: Instant,
    pid: Option<i32>,
    uid: Option<u32>,
    gid: Option<u32>,
    in_flight: prometheus_client::metrics::gauge::Gauge,
}

impl Peer {
    fn of(stream: &UnixStream, metrics: &Metrics) -> Self {
        let start = Instant::now();
        // The caller's credentials are for the request log line only: not fetched when it is
        // not logged.
        let (pid, uid, gid) = if tracing::enabled!(tracing::Level::INFO) {
            peer_credentials(stream)
        } else {
            (None, None, None)
        };
        metrics.in_flight.inc();
        Self {
            start,
            pid,
            uid,
            gid,
            in_flight: metrics.in_flight.clone(),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

/// SO_PEERCRED of the caller. The kernel reports pid 0 for a caller outside this process's
/// pid namespace (the usual case in Kubernetes: apps run in their own pods): that pid is left
/// out, uid and gid are still reported.
fn peer_credentials(stream: &UnixStream) -> (Option<i32>, Option<u32>, Option<u32>) {
    match nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials) {
        Ok(c) => (
            Some(c.pid()).filter(|p| *p > 0),
            Some(c.uid()),
            Some(c.gid()),
        ),
        Err(e) => {
            tracing::debug!(error = %e, "SO_PEERCRED");
            (None, None, None)
        }
    }
}

/// A complete request taken in by the waiter, for a worker to answer.
struct Ready {
    stream: UnixStream,
    req: Request,
    peer: Peer,
    /// A worker must take it by then (the request's own deadline).
    deadline: Instant,
    /// The request's size on the wire, counted against [`MAX_HELD_RESPONSE_BYTES`].
    size: usize,
}

/// A connection the waiter holds while its client is slow.
struct Parked {
    stream: UnixStream,
    peer: Peer,
    /// When the client's time for this step runs out.
    deadline: Instant,
    wait: Wait,
}

enum Wait {
    /// The request has not come in whole: the waiter reads the rest (taking it off the
    /// socket); `buf` holds what was taken already.
    Request { buf: Vec<u8> },
    /// The response did not fit the socket buffer: the waiter writes the rest.
    Response {
        frame: Vec<u8>,
        sent: usize,
        /// Bytes of the request still queued on the socket (peeked, not taken).
        drain: usize,
        kind: RequestKind,
        code: AesmError,
        /// When the request was complete (for the latency histogram).
        since: Instant,
    },
}

impl Wait {
    /// Bytes held in memory: the request read so far, or the response.
    fn held_bytes(&self) -> usize {
        match self {
            Wait::Request { buf } => buf.len(),
            Wait::Response { frame, .. } => frame.len(),
        }
    }
}

impl Pool {
    /// Starts one more worker, which first answers the request in `ready` (taken from it) if
    /// there is one, unless `max` requests are being served already (workers not waiting in
    /// `accept`); false if none was started (`ready` then keeps its request). Without a
    /// request to answer, none is started after shutdown began.
    fn spawn_worker(pool: &Arc<Pool>, ready: &mut Option<Ready>) -> bool {
        let mut live = pool.live.lock().unwrap_or_else(PoisonError::into_inner);
        let allowed = if ready.is_some() {
            // A request handed back needs a permit free, and a thread: the workers in
            // `accept` cannot take it.
            pool.state.permits.available() && live.workers < pool.max.saturating_add(SPARE_WORKERS)
        } else {
            let busy = live
                .workers
                .saturating_sub(pool.idle.load(Ordering::SeqCst));
            busy < pool.max && !pool.stop.load(Ordering::SeqCst)
        };
        if !allowed {
            return false;
        }
        let p = Arc::clone(pool);
        // The request moves into the thread only once it exists: kept here until then.
        let slot = Arc::new(Mutex::new(ready.take()));
        let for_thread = Arc::clone(&slot);
        match std::thread::Builder::new()
            .name("aesm-worker".into())
            .spawn(move || {
                let first = for_thread
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                p.work(first);
            }) {
            Ok(_) => {
                live.workers = live.workers.saturating_add(1);
                true
            }
            Err(e) => {
                if pool.accept_log.allow() {
                    tracing::warn!(error = %e, workers = live.workers, "could not start a worker thread");
                }
                *ready = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
                false
            }
        }
    }

    fn start_waiter(pool: &Arc<Pool>, wake: UnixStream) {
        let p = Arc::clone(pool);
        let mut live = pool.live.lock().unwrap_or_else(PoisonError::into_inner);
        match std::thread::Builder::new()
            .name("aesm-waiter".into())
            .spawn(move || p.wait_loop(&wake))
        {
            Ok(_) => live.waiter = true,
            Err(e) => {
                // Slow clients are then closed when handed over (see `park`).
                tracing::error!(error = %e, "could not start the waiter thread");
                pool.parking
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .closed = true;
            }
        }
    }

    /// A worker: answers `first` if given, then accept, serve, repeat. It retires when it
    /// finds [`SPARE_WORKERS`] others idle, and at shutdown once the backlog is empty (the
    /// listening socket is then non-blocking) or shut down.
    fn work(self: Arc<Self>, first: Option<Ready>) {
        // Leaves the pool however the thread ends.
        let _retire = Retire(&self);
        let keep_accepting = || self.keep_accepting();
        if let Some(r) = first {
            respond(
                r.stream,
                r.req,
                r.peer,
                0,
                &self.state,
                &keep_accepting,
                self.as_ref(),
            );
            let workers = self
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .workers;
            // Started for one request: it stays only if the pool is not full.
            if workers > self.max || self.idle.load(Ordering::SeqCst) >= SPARE_WORKERS {
                return;
            }
        }
        loop {
            self.idle.fetch_add(1, Ordering::SeqCst);
            // Without the peer's address (unnamed for a client socket anyway): saves the
            // kernel filling one in per connection.
            let accepted =
                rustix::net::accept_with(&self.listener, rustix::net::SocketFlags::CLOEXEC);
            self.idle.fetch_sub(1, Ordering::SeqCst);
            match accepted {
                Ok(fd) => {
                    // Served even when shutdown began meanwhile: the client is waiting.
                    connection(
                        UnixStream::from(fd),
                        &self.state,
                        &keep_accepting,
                        self.as_ref(),
                    );
                    if !self.stop.load(Ordering::SeqCst)
                        && self.idle.load(Ordering::SeqCst) >= SPARE_WORKERS
                    {
                        break;
                    }
                }
                Err(_) if self.stop.load(Ordering::SeqCst) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    if self.accept_log.allow() {
                        tracing::warn!(error = %e, "accept failed");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// A worker leaves the pool (see [`Retire`]).
    fn retire(&self) {
        self.exited(|live| live.workers = live.workers.saturating_sub(1));
        if self.stop.load(Ordering::SeqCst) {
            // The waiter exits only once every worker has: it may be waiting for this one.
            self.wake_waiter();
        }
    }

    fn exited(&self, what: impl FnOnce(&mut Live)) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        what(&mut live);
        if live.workers == 0 && !live.waiter {
            self.all_gone.notify_all();
        }
    }

    /// Called before a worker may wait: starts a worker if none is in `accept`, so a slow
    /// backend call never keeps the others waiting.
    fn keep_accepting(self: &Arc<Self>) {
        if self.idle.load(Ordering::SeqCst) == 0 {
            Pool::spawn_worker(self, &mut None);
        }
    }

    /// At shutdown: makes `accept` non-blocking, serves the connections already in the
    /// backlog alongside the workers (their clients are waiting) until it is empty or
    /// `until`, then shuts the listening socket down so the workers still blocked in
    /// `accept` wake and exit.
    fn drain_backlog(self: &Arc<Self>, until: Instant) {
        if let Err(e) = self.listener.set_nonblocking(true) {
            tracing::warn!(error = %e, "making the listening socket non-blocking");
        }
        let keep_accepting = || {};
        while Instant::now() < until {
            match rustix::net::accept_with(&self.listener, rustix::net::SocketFlags::CLOEXEC) {
                Ok(fd) => connection(UnixStream::from(fd), &self.state, &keep_accepting, self),
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
        }
        // On Linux, shutdown(2) on a listening socket makes every pending and later accept
        // fail (EINVAL).
        if let Err(e) = rustix::net::shutdown(&self.listener, rustix::net::Shutdown::Both) {
            tracing::warn!(error = %e, "shutting the listening socket down");
        }
    }

    /// Hands a connection to the waiter.
    fn park(&self, p: Parked) {
        let mut parking = self.parking.lock().unwrap_or_else(PoisonError::into_inner);
        if parking.closed {
            drop(parking);
            finish_parked(p, "no_waiter", &self.state);
            return;
        }
        parking.list.push(p);
        drop(parking);
        self.wake_waiter();
    }

    fn wake_waiter(&self) {
        // Non-blocking: a full socket means a wake-up is pending already.
        let _ = rustix::net::send(&self.wake, &[1], SendFlags::DONTWAIT | SendFlags::NOSIGNAL);
    }

    /// Whether the waiter may exit: shutdown began, the backlog was served, it holds nothing
    /// and no worker is left that could hand it something. Closes the parking when so.
    fn waiter_done(&self, holds_nothing: bool) -> bool {
        if !holds_nothing
            || !self.stop.load(Ordering::SeqCst)
            || !self.backlog_drained.load(Ordering::SeqCst)
        {
            return false;
        }
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let mut parking = self.parking.lock().unwrap_or_else(PoisonError::into_inner);
        if live.workers > 0 || !parking.list.is_empty() {
            return false;
        }
        parking.closed = true;
        true
    }

    /// The waiter: holds connections whose clients are slow until they complete a step, run
    /// out of time or are evicted.
    fn wait_loop(self: Arc<Self>, wake: &UnixStream) {
        let st = Arc::clone(&self.state);
        let mut parked: Vec<Parked> = Vec::new();
        let mut ready: VecDeque<Ready> = VecDeque::new();
        let mut drained = [0u8; 64];
        loop {
            parked.append(
                &mut self
                    .parking
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .list,
            );
            let now = Instant::now();
            // Out of time: closed before anything else is done for them.
            let (expired, live): (Vec<_>, Vec<_>) =
                parked.into_iter().partition(|p| now >= p.deadline);
            parked = live;
            for p in expired {
                let result = match p.wait {
                    Wait::Request { .. } => "timeout",
                    Wait::Response { .. } => "write_timeout",
                };
                finish_parked(p, result, &st);
            }
            let (expired, live): (VecDeque<_>, VecDeque<_>) =
                ready.into_iter().partition(|r| now >= r.deadline);
            ready = live;
            for r in expired {
                drop_ready(&r, "timeout", &st);
            }
            self.evict(&mut parked, &mut ready);
            while let Some(r) = ready.pop_front() {
                let mut r = Some(r);
                if !Pool::spawn_worker(&self, &mut r) {
                    if let Some(r) = r {
                        ready.push_front(r);
                    }
                    break;
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                // Requests still to come are not awaited; responses going out are.
                let (waiting, rest): (Vec<_>, Vec<_>) = parked
                    .into_iter()
                    .partition(|p| matches!(p.wait, Wait::Request { .. }));
                parked = rest;
                for p in waiting {
                    finish_parked(p, "shutdown", &st);
                }
            }
            st.metrics
                .parked
                .set(i64::try_from(parked.len().saturating_add(ready.len())).unwrap_or(i64::MAX));
            if self.waiter_done(parked.is_empty() && ready.is_empty()) {
                break;
            }
            let now = Instant::now();
            let mut timeout = parked
                .iter()
                .map(|p| p.deadline)
                .chain(ready.iter().map(|r| r.deadline))
                .min()
                .map(|d| d.saturating_duration_since(now));
            if !ready.is_empty() {
                timeout = Some(timeout.map_or(HANDOFF_RETRY, |t| t.min(HANDOFF_RETRY)));
            }
            // Lines left out of the log are reported within a second or so, even if no more
            // rejected connections come.
            st.rejected_log.roll();
            if st.rejected_log.owes_report() {
                timeout =
                    Some(timeout.map_or(Duration::from_secs(1), |t| t.min(Duration::from_secs(1))));
            }
            let revents = {
                let mut fds = Vec::with_capacity(parked.len().saturating_add(1));
                fds.push(PollFd::new(wake, PollFlags::IN));
                fds.extend(parked.iter().map(|p| {
                    let want = match p.wait {
                        Wait::Request { .. } => PollFlags::IN,
                        Wait::Response { .. } => PollFlags::OUT,
                    };
                    PollFd::new(&p.stream, want)
                }));
                let ts = timeout.and_then(|t| rustix::time::Timespec::try_from(t).ok());
                if let Err(e) = rustix::event::poll(&mut fds, ts.as_ref())
                    && e != rustix::io::Errno::INTR
                {
                    tracing::warn!(error = %e, "waiter poll failed");
                    std::thread::sleep(HANDOFF_RETRY);
                }
                fds.iter().map(PollFd::revents).collect::<Vec<_>>()
            };
            if revents.first().is_some_and(|r| !r.is_empty()) {
                while matches!(
                    rustix::net::recv(wake, &mut drained, RecvFlags::DONTWAIT),
                    Ok((n, _)) if n > 0
                ) {}
            }
            let mut kept = Vec::with_capacity(parked.len());
            for (p, ev) in parked.into_iter().zip(revents.into_iter().skip(1)) {
                if ev.is_empty() {
                    kept.push(p);
                    continue;
                }
                match step(p, &st) {
                    Step::Wait(p) => kept.push(p),
                    Step::Ready(r) => ready.push_back(r),
                    Step::Done => {}
                }
            }
            parked = kept;
        }
        st.metrics.parked.set(0);
        self.exited(|live| live.waiter = false);
    }

    /// Keeps what the waiter holds within `max_pending` connections and
    /// [`MAX_HELD_RESPONSE_BYTES`] of unsent responses, closing the connections that have
    /// waited longest.
    fn evict(&self, parked: &mut Vec<Parked>, ready: &mut VecDeque<Ready>) {
        let mut held = parked
            .iter()
            .map(|p| p.wait.held_bytes())
            .chain(ready.iter().map(|r| r.size))
            .fold(0usize, usize::saturating_add);
        let over = |parked: &[Parked], ready: &VecDeque<Ready>, held: usize| {
            parked.len().saturating_add(ready.len()) > self.max_pending
                || held > MAX_HELD_RESPONSE_BYTES
        };
        if !over(parked, ready, held) {
            return;
        }
        // Latest deadline first, so the longest-waiting connection is at the end.
        parked.sort_by_key(|p| std::cmp::Reverse(p.deadline));
        ready.make_contiguous().sort_by_key(|r| r.deadline);
        while over(parked, ready, held) {
            let oldest_parked = parked.last().map(|p| p.deadline);
            let oldest_ready = ready.front().map(|r| r.deadline);
            let from_ready = match (oldest_parked, oldest_ready) {
                (Some(p), Some(r)) => r < p,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (None, None) => break,
            };
            if from_ready {
                if let Some(r) = ready.pop_front() {
                    held = held.saturating_sub(r.size);
                    drop_ready(&r, "evicted", &self.state);
                }
            } else if let Some(p) = parked.pop() {
                held = held.saturating_sub(p.wait.held_bytes());
                finish_parked(p, "evicted", &self.state);
            }
        }
    }

    /// Waits until every thread has exited, at most `timeout`; true if they all did.
    fn wait_all_gone(&self, timeout: Duration) -> bool {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let (live, _) = self
            .all_gone
            .wait_timeout_while(live, timeout, |l| l.workers > 0 || l.waiter)
            .unwrap_or_else(PoisonError::into_inner);
        live.workers == 0 && !live.waiter
    }
}

/// Most bytes of responses and requests the waiter holds in memory (a response to a GetQuoteEx
/// with a large `buf_size` that its client does not read, requests read in part or waiting for
/// a worker); beyond this the longest-waiting connection is closed.
pub const MAX_HELD_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Counts (and logs) a complete request the waiter drops before a worker took it.
fn drop_ready(r: &Ready, result: &'static str, st: &State) {
    let kind = r.req.kind();
    st.metrics.count(kind.label(), result);
    if st.rejected_log.allow() {
        tracing::info!(
            peer_pid = r.peer.pid,
            peer_uid = r.peer.uid,
            peer_gid = r.peer.gid,
            request = kind.label(),
            result,
            duration_ms = r.peer.start.elapsed().as_secs_f64() * 1e3,
            "aesm request dropped before it was served; closing"
        );
    }
}

/// What a parked connection did when its socket became ready.
enum Step {
    Wait(Parked),
    Ready(Ready),
    Done,
}

/// Reads what a slow request allows, or writes what a slow reader takes.
fn step(mut p: Parked, st: &State) -> Step {
    match &mut p.wait {
        Wait::Request { buf } => {
            let mut chunk = [0u8; 4096];
            loop {
                let want = match frame_want(buf) {
                    Ok(want) => want,
                    Err(e) => return reject(p, &e, st),
                };
                if buf.len() >= want {
                    let payload = buf.get(PREFIX_LEN..want).unwrap_or_default();
                    return match Request::decode(payload) {
                        Ok(req) => Step::Ready(Ready {
                            stream: p.stream,
                            req,
                            deadline: p.deadline,
                            size: want,
                            peer: p.peer,
                        }),
                        Err(e) => reject(p, &e, st),
                    };
                }
                let room = want.saturating_sub(buf.len()).min(chunk.len());
                let Some(into) = chunk.get_mut(..room) else {
                    return Step::Wait(p);
                };
                match rustix::net::recv(&p.stream, into, RecvFlags::DONTWAIT) {
                    Ok((0, _)) => {
                        let e = aesm::frame::eof_error(buf.len(), want);
                        return reject(p, &e, st);
                    }
                    Ok((n, _)) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                    Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {
                        return Step::Wait(p);
                    }
                    Err(e) => return reject(p, &aesm::Error::Io(e.into()), st),
                }
            }
        }
        Wait::Response {
            frame,
            sent,
            drain,
            kind,
            code,
            since,
        } => loop {
            let rest = frame.get(*sent..).unwrap_or_default();
            if rest.is_empty() {
                take_request(&p.stream, *drain);
                finish(&p.peer, *kind, *code, code.label(), *since, st);
                return Step::Done;
            }
            match rustix::net::send(&p.stream, rest, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
                Ok(n) => *sent = sent.saturating_add(n),
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return Step::Wait(p),
                Err(_) => {
                    finish(&p.peer, *kind, *code, "write_failed", *since, st);
                    return Step::Done;
                }
            }
        },
    }
}

/// Closes a parked connection that did not complete its step, with its log line.
fn finish_parked(p: Parked, result: &'static str, st: &State) {
    match p.wait {
        Wait::Request { .. } => {
            st.metrics.count("invalid", result);
            if !st.rejected_log.allow() {
                return;
            }
            tracing::info!(
                peer_pid = p.peer.pid,
                peer_uid = p.peer.uid,
                peer_gid = p.peer.gid,
                request = "none",
                result,
                duration_ms = p.peer.start.elapsed().as_secs_f64() * 1e3,
                "client sent no complete request in time; closing"
            );
        }
        Wait::Response {
            kind, code, since, ..
        } => finish(&p.peer, kind, code, result, since, st),
    }
}

/// Closes a connection whose request could not be read, with its log line.
fn reject(p: Parked, e: &aesm::Error, st: &State) -> Step {
    log_rejected(&p.peer, e, st);
    Step::Done
}

fn log_rejected(peer: &Peer, e: &aesm::Error, st: &State) {
    let result = transport_label(e);
    st.metrics.count("invalid", result);
    if !st.rejected_log.allow() {
        return;
    }
    tracing::info!(
        peer_pid = peer.pid, peer_uid = peer.uid, peer_gid = peer.gid, request = "invalid",
        result, error = %e, duration_ms = peer.start.elapsed().as_secs_f64() * 1e3,
        "aesm request rejected; closing"
    );
}

/// Counts and logs an answered request. The latency histogram takes successful quotes from
/// `since` (the request complete) to the response written: a client slow to send or to read
/// does not move it.
fn finish(
    peer: &Peer,
    kind: RequestKind,
    code: AesmError,
    result: &'static str,
    since: Instant,
    st: &State,
) {
    st.metrics.count(kind.label(), result);
    if kind == RequestKind::GetQuoteEx && code == AesmError::Success && result == code.label() {
        st.metrics
            .quote_latency
            .observe(since.elapsed().as_secs_f64());
    }
    tracing::info!(
        peer_pid = peer.pid,
        peer_uid = peer.uid,
        peer_gid = peer.gid,
        request = kind.label(),
        result,
        aesm_code = code.code(),
        duration_ms = peer.start.elapsed().as_secs_f64() * 1e3,
        "aesm request"
    );
}

/// Takes `len` peeked request bytes off the socket, after the response has been sent. Taking
/// them earlier would wake the client (which waits in `recv` for the response) for nothing:
/// freeing the client's sent data signals "writable" on the client's socket, and a task
/// blocked in `recv` on a Unix socket is woken by that too. Taking them at all keeps `close`
/// from reporting ECONNRESET to the client.
fn take_request(stream: &UnixStream, len: usize) {
    if len == 0 {
        return;
    }
    let mut buf = [0u8; aesm::frame::REQUEST_FIRST_READ];
    let want = len.min(buf.len());
    let buf = buf.get_mut(..want).unwrap_or_default();
    if let Err(e) = rustix::net::recv(stream, buf, RecvFlags::DONTWAIT) {
        tracing::debug!(error = %e, "taking a served request off the socket");
    }
}

/// How many bytes the request frame whose start is `buf` needs: the prefix until it is in,
/// then the prefix and the payload it announces (bounded).
fn frame_want(buf: &[u8]) -> Result<usize, aesm::Error> {
    match buf.first_chunk::<PREFIX_LEN>() {
        None => Ok(PREFIX_LEN),
        Some(prefix) => aesm::frame::check_len(*prefix, MAX_REQUEST_LEN)
            .map(|len| PREFIX_LEN.saturating_add(len)),
    }
}

/// What a worker found on a new connection.
enum Arrival {
    /// A whole request of `frame_len` bytes (prefix included) is queued and was peeked into
    /// the buffer (the usual case).
    Peeked { frame_len: usize },
    /// A whole request was taken off the socket (it arrived in pieces within the grace).
    Taken(Vec<u8>),
    /// A length prefix above the bound.
    TooLarge(aesm::Error),
    /// Not all there within the grace (or the client closed): for the waiter, with what
    /// was taken off the socket so far.
    Incomplete(Vec<u8>),
}

/// The usual case, cheaply: the whole request arrives in one piece right after `connect`,
/// and one peek sees it. Otherwise (nothing yet, or a client that writes the length prefix
/// and the payload separately, as Intel's libsgx_quote_ex does) it waits at most `grace` in
/// all: a poll for the first bytes, then [`take_within`] for the rest.
fn arrival(
    stream: &UnixStream,
    grace: Duration,
    before_wait: &dyn Fn(),
    buf: &mut [u8],
) -> Arrival {
    let until = Instant::now() + grace;
    let peek = |buf: &mut [u8]| {
        rustix::net::recv(stream, buf, RecvFlags::PEEK | RecvFlags::DONTWAIT).map(|(n, _)| n)
    };
    let mut waited = false;
    let n = match peek(buf) {
        Ok(n) => n,
        Err(rustix::io::Errno::AGAIN) => {
            before_wait();
            waited = true;
            let Ok(timeout) = rustix::time::Timespec::try_from(grace) else {
                return Arrival::Incomplete(Vec::new());
            };
            let mut fds = [PollFd::new(stream, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(1..) => match peek(buf) {
                    Ok(n) => n,
                    Err(_) => return Arrival::Incomplete(Vec::new()),
                },
                _ => return Arrival::Incomplete(Vec::new()),
            }
        }
        Err(_) => return Arrival::Incomplete(Vec::new()),
    };
    let queued = buf.get(..n).unwrap_or_default();
    if let Some((prefix, rest)) = queued.split_first_chunk::<PREFIX_LEN>() {
        match aesm::frame::check_len(*prefix, MAX_REQUEST_LEN) {
            Ok(len) if rest.len() >= len => {
                return Arrival::Peeked {
                    frame_len: PREFIX_LEN.saturating_add(len),
                };
            }
            Ok(_) => {}
            Err(e) => return Arrival::TooLarge(e),
        }
    }
    if n == 0 {
        // The client closed without a request: the waiter reports it.
        return Arrival::Incomplete(Vec::new());
    }
    // In pieces: take what is there and wait for the rest (the client is still writing, so
    // taking its data wakes nobody).
    if !waited {
        before_wait();
    }
    take_within(stream, until)
}

/// Reads one frame off `stream` until `until`, waiting in `poll` (precise, where a socket
/// read timeout is rounded up to timer ticks) and reading without blocking.
fn take_within(stream: &UnixStream, until: Instant) -> Arrival {
    let mut got: Vec<u8> = Vec::new();
    loop {
        let want = match frame_want(&got) {
            Ok(want) => want,
            Err(e) => return Arrival::TooLarge(e),
        };
        if got.len() >= want {
            return Arrival::Taken(got);
        }
        let have = got.len();
        got.resize(want, 0);
        let into = got.get_mut(have..).unwrap_or_default();
        match rustix::net::recv(stream, into, RecvFlags::DONTWAIT) {
            Ok((n, _)) if n > 0 => {
                got.truncate(have.saturating_add(n));
                continue;
            }
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => got.truncate(have),
            _ => {
                // End of file or an error: the waiter takes it from here (and reports it).
                got.truncate(have);
                return Arrival::Incomplete(got);
            }
        }
        let left = until.saturating_duration_since(Instant::now());
        let Ok(timeout) = rustix::time::Timespec::try_from(left) else {
            return Arrival::Incomplete(got);
        };
        let mut fds = [PollFd::new(stream, PollFlags::IN)];
        if left.is_zero() || !matches!(rustix::event::poll(&mut fds, Some(&timeout)), Ok(1..)) {
            return Arrival::Incomplete(got);
        }
    }
}

fn transport_label(e: &aesm::Error) -> &'static str {
    match e {
        aesm::Error::FrameTooLarge { .. } => "frame_too_large",
        aesm::Error::Truncated { .. } | aesm::Error::TruncatedPrefix { .. } => "truncated",
        aesm::Error::Decode(_) => "malformed",
        aesm::Error::UnknownRequest => "unknown_request",
        _ => "io_error",
    }
}

/// Serves one accepted connection: answers it if the request is there (or arrives within
/// [`REQUEST_GRACE`]), otherwise hands it to the waiter. `before_wait` runs before anything
/// that may wait: the grace for the request, or a backend that
/// [may block](QuoteBackend::may_block).
fn connection(stream: UnixStream, st: &State, before_wait: &dyn Fn(), pool: &Pool) {
    let peer = Peer::of(&stream, &st.metrics);
    let mut buf = [0u8; aesm::frame::REQUEST_FIRST_READ];
    let grace = REQUEST_GRACE.min(st.io_timeout);
    match arrival(&stream, grace, before_wait, &mut buf) {
        Arrival::Peeked { frame_len } => {
            let payload = buf.get(PREFIX_LEN..frame_len).unwrap_or_default();
            match Request::decode(payload) {
                Ok(req) => respond(stream, req, peer, frame_len, st, before_wait, pool),
                Err(e) => log_rejected(&peer, &e, st),
            }
        }
        Arrival::Taken(frame) => {
            match Request::decode(frame.get(PREFIX_LEN..).unwrap_or_default()) {
                Ok(req) => respond(stream, req, peer, 0, st, before_wait, pool),
                Err(e) => log_rejected(&peer, &e, st),
            }
        }
        Arrival::TooLarge(e) => log_rejected(&peer, &e, st),
        Arrival::Incomplete(buf) => pool.park(Parked {
            stream,
            deadline: peer.start + st.io_timeout,
            peer,
            wait: Wait::Request { buf },
        }),
    }
}

/// Answers `req`: the response goes out in one non-blocking send if it fits the socket
/// buffer (any quote does), otherwise the waiter writes the rest. `drain` request bytes are
/// still queued (peeked) and are taken off after the response.
fn respond(
    stream: UnixStream,
    req: Request,
    peer: Peer,
    drain: usize,
    st: &State,
    before_wait: &dyn Fn(),
    pool: &Pool,
) {
    let since = Instant::now();
    let kind = req.kind();
    if st.backend.may_block() {
        before_wait();
    }
    let permit = st.permits.try_take().unwrap_or_else(|| {
        before_wait();
        st.permits.take()
    });
    // A panicking backend costs this request an error answer, not a worker.
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handle(st.backend.as_ref(), req)
    }))
    .unwrap_or_else(|_| {
        tracing::error!(
            request = kind.label(),
            "the quote backend panicked; answering an error"
        );
        aesm::Response::Error {
            kind,
            code: AesmError::Unexpected,
        }
    });
    drop(permit);
    let code = res.code();
    let Ok(frame) = res.into_frame() else {
        finish(&peer, kind, code, "write_failed", since, st);
        return;
    };
    let sent = match rustix::net::send(&stream, &frame, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
        Ok(n) => n,
        Err(rustix::io::Errno::AGAIN) => 0,
        Err(_) => {
            finish(&peer, kind, code, "write_failed", since, st);
            return;
        }
    };
    if sent >= frame.len() {
        take_request(&stream, drain);
        finish(&peer, kind, code, code.label(), since, st);
        return;
    }
    pool.park(Parked {
        stream,
        deadline: Instant::now() + st.io_timeout,
        peer,
        wait: Wait::Response {
            frame,
            sent,
            drain,
            kind,
            code,
            since,
        },
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pending_is_fitted_under_the_raised_open_file_limit() {
        let fitted = fit_to_fd_limit(usize::MAX, 10);
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        // Raised to the hard limit (as far as this process may).
        assert_eq!(limit.current, limit.maximum);
        match limit.current {
            Some(soft) => assert_eq!(
                u64::try_from(fitted).unwrap(),
                soft.saturating_sub(FD_RESERVE + 10).max(1)
            ),
            None => assert_eq!(fitted, usize::MAX),
        }
        // A bound that fits is kept.
        if fitted >= 16 {
            assert_eq!(fit_to_fd_limit(16, 10), 16);
        }
    }

    #[test]
    fn rejected_connections_are_logged_within_a_budget_per_second() {
        let limit = LogLimit::new();
        let allowed = (0..100).filter(|_| limit.allow()).count();
        // Unless the second turned over during the loop (then up to twice the budget).
        assert!(
            allowed == usize::try_from(REJECTED_LOG_LINES_PER_SEC).unwrap()
                || limit.since.elapsed() >= Duration::from_secs(1),
            "{allowed}"
        );
        assert!(allowed <= 2 * usize::try_from(REJECTED_LOG_LINES_PER_SEC).unwrap());
        // The next second has a new budget, and the count of lines left out is reported.
        limit.second.store(u64::MAX, Ordering::Relaxed);
        assert!(limit.suppressed.load(Ordering::Relaxed) > 0);
        assert!(limit.allow());
        assert_eq!(limit.suppressed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn peer_credentials_name_the_caller() {
        let (a, _b) = UnixStream::pair().unwrap();
        let (pid, uid, gid) = peer_credentials(&a);
        assert_eq!(pid, Some(i32::try_from(std::process::id()).unwrap()));
        assert_eq!(uid, Some(rustix::process::getuid().as_raw()));
        assert_eq!(gid, Some(rustix::process::getgid().as_raw()));
    }
}
