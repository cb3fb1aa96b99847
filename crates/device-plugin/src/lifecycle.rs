//! Serving and registering one resource with the kubelet, as a state machine.
//!
//! ```text
//!            Bound                 RegisterOk
//!   Bind ─────────▶ Registering ──────────────▶ Registered ──┐ snapshot: own socket gone
//!    ▲  BindFailed      │ RegisterFailed            │        │ (kubelet restarted and
//!    │                  ▼                           │        │  wiped the directory)
//!    └──────────── Backoff ◀────────────────────────┘        │
//!        socket gone   │ timer / new kubelet.sock ─▶ Register │
//!    ◀─────────────────┴──────────────────────────────────────┘
//! ```
//!
//! [`Machine::step`] is pure (it takes the current time); [`run`] performs the actions through
//! the [`KubeletIo`] trait.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kubelet_api::v1beta1::RegisterRequest;
use kubelet_api::v1beta1::device_plugin_server::DevicePluginServer;
use kubelet_api::v1beta1::registration_client::RegistrationClient;
use sgx_platform::DeviceNodes;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::resource::ResourceSpec;
use crate::service::{PluginService, plugin_options};
use crate::watch::{DirSnapshot, KubeletId};
use crate::{Error, Result};

/// Backoff between failed registrations (or binds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Backoff {
    /// Delay before attempt `attempt` (1-based): `initial * 2^(attempt-1)`, capped.
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Where the machine is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The socket must be (re)created and served.
    Bind,
    /// Serving; registration in flight.
    Registering,
    /// Registered with the kubelet identified by `kubelet`.
    Registered {
        /// `kubelet.sock` at registration time.
        kubelet: Option<KubeletId>,
    },
    /// Waiting after `attempt` consecutive failures.
    Backoff {
        /// Consecutive failures.
        attempt: u32,
        /// When to retry.
        until: Instant,
        /// Whether the retry must rebind (the bind failed) or only register.
        rebind: bool,
        /// `kubelet.sock` when the wait started; a new one ends the wait early.
        kubelet: Option<KubeletId>,
    },
}

/// What happened since the last step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The socket is bound and served.
    Bound,
    /// Binding failed.
    BindFailed,
    /// The kubelet accepted the registration; its `kubelet.sock` identity read right after.
    RegisterOk(Option<KubeletId>),
    /// The registration failed.
    RegisterFailed,
    /// The kubelet directory changed.
    Snapshot(DirSnapshot),
    /// The backoff timer fired.
    Timer,
    /// Our socket file is missing right before registering (the kubelet would fail to dial
    /// back): serve again first.
    SocketGone,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop any running server, remove a stale socket, bind and serve.
    Bind,
    /// Call `Registration.Register` on `kubelet.sock`.
    Register,
    /// Wait for a directory change or the timer at the given instant.
    Wait(Option<Instant>),
}

/// The registration state machine of one resource.
#[derive(Debug, Clone)]
pub struct Machine {
    socket: String,
    backoff: Backoff,
    state: State,
    last: DirSnapshot,
    attempt: u32,
    restarts: u64,
}

impl Machine {
    /// A machine for the plugin socket named `socket` (file name in the kubelet directory).
    #[must_use]
    pub fn new(socket: String, backoff: Backoff) -> Self {
        Self {
            socket,
            backoff,
            state: State::Bind,
            last: DirSnapshot::default(),
            attempt: 0,
            restarts: 0,
        }
    }

    /// The first action.
    #[must_use]
    pub fn start(&self) -> Action {
        Action::Bind
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Kubelet restarts noticed while registered.
    #[must_use]
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    fn fail(&mut self, now: Instant, rebind: bool) -> Action {
        self.attempt = self.attempt.saturating_add(1);
        let until = now + self.backoff.delay(self.attempt);
        self.state = State::Backoff {
            attempt: self.attempt,
            until,
            rebind,
            kubelet: self.last.kubelet,
        };
        Action::Wait(Some(until))
    }

    /// Advances the machine.
    pub fn step(&mut self, input: Input, now: Instant) -> Action {
        if let Input::Snapshot(s) = &input {
            self.last = s.clone();
        }
        match (&self.state, input) {
            (_, Input::Bound) => {
                self.state = State::Registering;
                Action::Register
            }
            (_, Input::BindFailed) => self.fail(now, true),
            (_, Input::SocketGone) => {
                self.state = State::Bind;
                Action::Bind
            }
            (_, Input::RegisterOk(kubelet)) => {
                self.attempt = 0;
                self.last.kubelet = kubelet;
                self.state = State::Registered { kubelet };
                Action::Wait(None)
            }
            (_, Input::RegisterFailed) => self.fail(now, false),
            (State::Registered { kubelet }, Input::Snapshot(s)) => {
                if !s.has(&self.socket) {
                    // The kubelet deletes every socket in its directory when it starts.
                    self.restarts = self.restarts.saturating_add(1);
                    self.state = State::Bind;
                    Action::Bind
                } else if s.kubelet.is_some() && s.kubelet != *kubelet {
                    // A new kubelet.sock while our socket survived: register with it.
                    self.restarts = self.restarts.saturating_add(1);
                    self.state = State::Registering;
                    Action::Register
                } else {
                    Action::Wait(None)
                }
            }
            (
                State::Backoff {
                    until,
                    rebind,
                    kubelet,
                    ..
                },
                input,
            ) => {
                let (until, rebind, kubelet) = (*until, *rebind, *kubelet);
                let socket_gone = !self.last.has(&self.socket);
                let new_kubelet = self.last.kubelet.is_some() && self.last.kubelet != kubelet;
                let timer = input == Input::Timer || now >= until;
                if rebind || socket_gone {
                    if timer || new_kubelet {
                        self.state = State::Bind;
                        return Action::Bind;
                    }
                } else if timer || new_kubelet {
                    self.state = State::Registering;
                    return Action::Register;
                }
                Action::Wait(Some(until))
            }
            (State::Bind, _) => Action::Bind,
            (State::Registering, _) => Action::Register,
            (State::Registered { .. }, Input::Timer) => Action::Wait(None),
        }
    }
}

/// The IO the runner performs: serve a socket, register with the kubelet.
pub trait KubeletIo: Send + Sync {
    /// Binds `socket` (removing a stale file) and serves `service` until `stop` flips.
    fn serve(
        &self,
        socket: &Path,
        service: PluginService,
        stop: watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = Result<()>> + Send;

    /// Calls `Registration.Register` on `kubelet_sock`.
    fn register(
        &self,
        kubelet_sock: &Path,
        request: RegisterRequest,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<()>> + Send;
}

/// The real IO: tonic over unix sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct UdsIo;

impl KubeletIo for UdsIo {
    async fn serve(
        &self,
        socket: &Path,
        service: PluginService,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()> {
        let listener = crate::uds::bind(socket)?;
        tokio::spawn(serve_listener(listener, service, async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
        Ok(())
    }

    async fn register(
        &self,
        kubelet_sock: &Path,
        request: RegisterRequest,
        timeout: Duration,
    ) -> Result<()> {
        let resource = request.resource_name.clone();
        let request_resource = resource.clone();
        let fut = async {
            let channel = crate::uds::connect(kubelet_sock).await?;
            RegistrationClient::new(channel)
                .register(request)
                .await
                .map_err(|s| Error::Register {
                    resource: resource.clone(),
                    source: Box::new(s),
                })?;
            Ok(())
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Register {
                    resource: request_resource,
                    source: "timed out".into(),
                })
            })
    }
}

async fn serve_listener(
    listener: UnixListener,
    service: PluginService,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    if let Err(e) = tonic::transport::Server::builder()
        .add_service(DevicePluginServer::new(service))
        .serve_with_incoming_shutdown(incoming, stop)
        .await
    {
        tracing::warn!(error = %crate::error_chain(&e), "plugin server ended");
    }
}

/// Timings of the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Registration backoff.
    pub backoff: Backoff,
    /// Timeout of one registration call.
    pub register_timeout: Duration,
}

/// Everything one resource's runner needs.
#[derive(Debug, Clone)]
pub struct Runner {
    /// The kubelet's device plugin directory.
    pub kubelet_dir: PathBuf,
    /// The resource.
    pub spec: Arc<ResourceSpec>,
    /// Device nodes, for health.
    pub nodes: watch::Receiver<DeviceNodes>,
    /// Wake-ups on kubelet directory changes.
    pub dir: watch::Receiver<DirSnapshot>,
    /// Metrics.
    pub metrics: Metrics,
    /// Timings.
    pub timing: Timing,
    /// Largest `ListAndWatch` message.
    pub limit: u64,
    /// `/readyz` state.
    pub readiness: crate::Readiness,
}

/// Serves and registers the runner's resource until `shutdown` flips, following the kubelet
/// through restarts.
pub async fn run(io: impl KubeletIo, runner: Runner, mut shutdown: watch::Receiver<bool>) {
    let Runner {
        kubelet_dir,
        spec,
        nodes,
        mut dir,
        metrics,
        timing,
        limit,
        readiness,
    } = runner;
    let resource = spec.kind.resource_name();
    let socket_name = spec.kind.socket_name();
    let socket = kubelet_dir.join(&socket_name);
    let kubelet_sock = kubelet_dir.join(kubelet_api::KUBELET_SOCKET);
    let mut machine = Machine::new(socket_name.clone(), timing.backoff);
    let mut stop_tx: Option<watch::Sender<bool>> = None;
    let mut action = machine.start();
    let mut restarts_seen = 0;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let input = match action {
            Action::Bind => {
                if let Some(tx) = stop_tx.take() {
                    let _ = tx.send(true);
                }
                let (tx, rx) = watch::channel(false);
                let svc = PluginService::new(
                    spec.clone(),
                    nodes.clone(),
                    rx.clone(),
                    metrics.clone(),
                    limit,
                );
                match io.serve(&socket, svc, rx).await {
                    Ok(()) => {
                        stop_tx = Some(tx);
                        tracing::info!(resource, socket = %socket.display(), "serving");
                        // Our own socket now exists: let the machine see it.
                        dir.mark_changed();
                        Input::Bound
                    }
                    Err(e) => {
                        tracing::warn!(resource, error = %crate::error_chain(&e), "cannot serve");
                        Input::BindFailed
                    }
                }
            }
            Action::Register => {
                let request = RegisterRequest {
                    version: kubelet_api::VERSION.to_owned(),
                    endpoint: socket_name.clone(),
                    resource_name: resource.to_owned(),
                    options: Some(plugin_options()),
                };
                // The kubelet identity at this moment is the one we register with.
                let snap = DirSnapshot::read(&kubelet_dir);
                machine.step(Input::Snapshot(snap), Instant::now());
                match io
                    .register(&kubelet_sock, request, timing.register_timeout)
                    .await
                {
                    Ok(()) => {
                        metrics.registration(spec.kind, true);
                        tracing::info!(resource, "registered with the kubelet");
                        Input::RegisterOk(DirSnapshot::read(&kubelet_dir).kubelet)
                    }
                    Err(e) => {
                        metrics.registration(spec.kind, false);
                        tracing::warn!(resource, error = %crate::error_chain(&e), "registration failed; retrying");
                        Input::RegisterFailed
                    }
                }
            }
            Action::Wait(until) => {
                tokio::select! {
                    () = crate::watch::sleep_until(until) => Input::Timer,
                    r = dir.changed() => {
                        if r.is_err() { break; }
                        dir.borrow_and_update();
                        // The channel is only a wake-up: its value may predate our own
                        // rebinding, so look at the directory as it is now.
                        Input::Snapshot(DirSnapshot::read(&kubelet_dir))
                    }
                    _ = shutdown.changed() => break,
                }
            }
        };
        action = machine.step(input, Instant::now());
        if machine.restarts() > restarts_seen {
            restarts_seen = machine.restarts();
            metrics.kubelet_restart();
            tracing::info!(
                resource,
                "kubelet restart noticed; serving and registering again"
            );
        }
        let registered = matches!(machine.state(), State::Registered { .. });
        metrics.set_registered(spec.kind, registered);
        readiness.set(spec.kind, registered);
    }
    if let Some(tx) = stop_tx.take() {
        let _ = tx.send(true);
    }
    let _ = std::fs::remove_file(&socket);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn snap(kubelet: Option<u64>, files: &[&str]) -> DirSnapshot {
        DirSnapshot {
            kubelet: kubelet.map(|ino| KubeletId {
                ino,
                ctime: 0,
                ctime_nsec: 0,
            }),
            files: files
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<BTreeSet<_>>(),
        }
    }

    fn kid(ino: u64) -> Option<KubeletId> {
        snap(Some(ino), &[]).kubelet
    }

    #[test]
    fn registration_adopts_the_kubelet_seen_after_success() {
        // kubelet.sock appeared between the pre-registration snapshot and the call: no second
        // registration when the snapshot with it arrives.
        let now = Instant::now();
        let mut m = Machine::new("p.sock".into(), B);
        m.step(Input::Snapshot(snap(None, &["p.sock"])), now);
        m.step(Input::Bound, now);
        m.step(Input::RegisterOk(kid(3)), now);
        assert_eq!(
            m.step(
                Input::Snapshot(snap(Some(3), &["kubelet.sock", "p.sock"])),
                now
            ),
            Action::Wait(None)
        );
        assert_eq!(m.restarts(), 0);
    }

    const B: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(B.delay(1), Duration::from_millis(100));
        assert_eq!(B.delay(3), Duration::from_millis(400));
        assert_eq!(B.delay(10), Duration::from_secs(2));
        assert_eq!(B.delay(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn happy_path_then_kubelet_restart_rebinds_and_registers() {
        let now = Instant::now();
        let mut m = Machine::new("p.sock".into(), B);
        assert_eq!(m.start(), Action::Bind);
        m.step(
            Input::Snapshot(snap(Some(1), &["kubelet.sock", "p.sock"])),
            now,
        );
        assert_eq!(m.step(Input::Bound, now), Action::Register);
        assert_eq!(m.step(Input::RegisterOk(kid(1)), now), Action::Wait(None));
        // Unrelated change: nothing to do.
        assert_eq!(
            m.step(
                Input::Snapshot(snap(Some(1), &["kubelet.sock", "p.sock", "x"])),
                now
            ),
            Action::Wait(None)
        );
        // Kubelet restart: directory wiped.
        assert_eq!(m.step(Input::Snapshot(snap(None, &[])), now), Action::Bind);
        assert_eq!(m.restarts(), 1);
        assert_eq!(m.step(Input::Bound, now), Action::Register);
        // kubelet.sock not back yet: backoff.
        let a = m.step(Input::RegisterFailed, now);
        assert_eq!(a, Action::Wait(Some(now + Duration::from_millis(100))));
        // New kubelet.sock appears: register at once, without waiting for the timer.
        assert_eq!(
            m.step(
                Input::Snapshot(snap(Some(2), &["kubelet.sock", "p.sock"])),
                now
            ),
            Action::Register
        );
        assert_eq!(m.step(Input::RegisterOk(kid(2)), now), Action::Wait(None));
        assert_eq!(
            m.state(),
            &State::Registered {
                kubelet: snap(Some(2), &[]).kubelet
            }
        );
    }

    #[test]
    fn failures_back_off_and_timer_retries() {
        let now = Instant::now();
        let mut m = Machine::new("p.sock".into(), B);
        m.step(Input::Snapshot(snap(None, &["p.sock"])), now);
        m.step(Input::Bound, now);
        let mut last = now;
        for attempt in 1..=6 {
            let a = m.step(Input::RegisterFailed, last);
            let Action::Wait(Some(until)) = a else {
                panic!("{a:?}")
            };
            assert_eq!(until - last, B.delay(attempt));
            // An unrelated change does not cut the wait short.
            assert_eq!(
                m.step(Input::Snapshot(snap(None, &["p.sock", "other"])), last),
                Action::Wait(Some(until))
            );
            assert_eq!(m.step(Input::Timer, until), Action::Register);
            last = until;
        }
        // Success resets the attempt counter.
        m.step(Input::RegisterOk(kid(1)), last);
        let a = m.step(Input::RegisterFailed, last);
        assert_eq!(a, Action::Wait(Some(last + B.delay(1))));
    }

    #[test]
    fn socket_deleted_during_backoff_rebinds_and_bind_failure_retries_bind() {
        let now = Instant::now();
        let mut m = Machine::new("p.sock".into(), B);
        m.step(Input::Snapshot(snap(Some(1), &["p.sock"])), now);
        m.step(Input::Bound, now);
        m.step(Input::RegisterFailed, now);
        // Socket wiped while waiting: once the timer fires, bind again.
        assert!(matches!(
            m.step(Input::Snapshot(snap(None, &[])), now),
            Action::Wait(Some(_))
        ));
        assert_eq!(m.step(Input::Timer, now + B.max), Action::Bind);
        let a = m.step(Input::BindFailed, now);
        assert!(matches!(a, Action::Wait(Some(_))));
        assert_eq!(m.step(Input::Timer, now + B.max), Action::Bind);
    }

    #[test]
    fn socket_missing_before_registering_rebinds() {
        let now = Instant::now();
        let mut m = Machine::new("p.sock".into(), B);
        m.step(Input::Bound, now);
        assert_eq!(m.step(Input::SocketGone, now), Action::Bind);
        assert_eq!(m.state(), &State::Bind);
    }

    #[test]
    fn new_kubelet_sock_while_registered_re_registers() {
        let now = Instant::now();
        let mut m = Machine::new("p.sock".into(), B);
        m.step(
            Input::Snapshot(snap(Some(1), &["kubelet.sock", "p.sock"])),
            now,
        );
        m.step(Input::Bound, now);
        m.step(Input::RegisterOk(kid(1)), now);
        assert_eq!(
            m.step(
                Input::Snapshot(snap(Some(7), &["kubelet.sock", "p.sock"])),
                now
            ),
            Action::Register
        );
        assert_eq!(m.restarts(), 1);
    }
}
