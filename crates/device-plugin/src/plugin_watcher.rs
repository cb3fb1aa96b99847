//! Registration through the kubelet's plugin watcher (`--registration plugin-watcher`).
//!
//! Instead of calling `Registration.Register` on `kubelet.sock`, the plugin serves, for each
//! resource, one socket in the plugin-watcher directory (`/var/lib/kubelet/plugins_registry`,
//! file name `sgx.intel.com-enclave.sock` etc.) with two gRPC services:
//! - `pluginregistration.Registration` ([`WatcherRegistration`]): `GetInfo` answers
//!   [`plugin_info`]; `NotifyRegistrationStatus` is logged and drives `/readyz`;
//! - `v1beta1.DevicePlugin` ([`PluginService`], the same service as the classic path).
//!
//! What the kubelet does with it (upstream paths in kubernetes/kubernetes):
//! - `pkg/kubelet/pluginmanager/pluginwatcher/plugin_watcher.go`: inotify on the directory
//!   plus a walk at kubelet start; every unix socket whose name does not start with `.` is put
//!   in the desired state (a socket created again gets a new timestamp, hence a new
//!   registration); a deleted socket is deregistered.
//! - `pkg/kubelet/pluginmanager/operationexecutor/operation_generator.go`
//!   (`GenerateRegisterPluginFunc`): dials the socket (10 s), calls `GetInfo` (1 s), picks the
//!   handler by `PluginInfo.type` (`DevicePlugin`), replaces an empty `endpoint` by the
//!   socket path, calls the handler's `ValidatePlugin` and `RegisterPlugin`, then
//!   `NotifyRegistrationStatus` (`plugin_registered` true, or false with the error).
//! - `pkg/kubelet/cm/devicemanager/plugin/v1beta1/handler.go`: `ValidatePlugin` requires
//!   `v1beta1` among `supported_versions` and an extended resource `name`; `RegisterPlugin`
//!   dials `endpoint` as a socket path and, like the classic path, calls
//!   `GetDevicePluginOptions` and follows `ListAndWatch`.
//! - `pkg/kubelet/pluginmanager/pluginwatcher/monitor.go` (recent kubelets): `GetInfo` every
//!   10 s on registered sockets; a success may register the plugin again, so notifications
//!   repeat and only changes are logged at info level.
//!
//! So `PluginInfo.endpoint` is left empty: the kubelet then uses the path at which it found
//! this same socket (a host path), which works whatever path the directory is mounted at in
//! the pod. The kubelet re-registers by itself after
//! it restarts (it walks the directory), so the only thing to follow here is our own socket:
//! when it is deleted or replaced, [`Machine`] serves it again, which the watcher sees as a
//! new plugin.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kubelet_api::pluginregistration::registration_server::{Registration, RegistrationServer};
use kubelet_api::pluginregistration::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use kubelet_api::v1beta1::device_plugin_server::DevicePluginServer;
use sgx_platform::DeviceNodes;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::lifecycle::Backoff;
use crate::metrics::Metrics;
use crate::resource::{ResourceKind, ResourceSpec};
use crate::service::PluginService;
use crate::watch::DirSnapshot;
use crate::{Error, Result};

/// The `PluginInfo` a resource's socket answers `GetInfo` with: type `DevicePlugin`, the
/// resource name, an empty endpoint (the kubelet then dials the socket it found, at its host
/// path, which serves the `DevicePlugin` service too) and `v1beta1` as the only version.
#[must_use]
pub fn plugin_info(kind: ResourceKind) -> PluginInfo {
    PluginInfo {
        r#type: kubelet_api::DEVICE_PLUGIN_TYPE.to_owned(),
        name: kind.resource_name().to_owned(),
        endpoint: String::new(),
        supported_versions: vec![kubelet_api::VERSION.to_owned()],
    }
}

/// The plugin registration service of one resource.
#[derive(Debug, Clone)]
pub struct WatcherRegistration {
    info: PluginInfo,
    kind: ResourceKind,
    metrics: Metrics,
    readiness: crate::Readiness,
    /// The last status received for this socket (for logging changes only).
    last: Arc<std::sync::Mutex<Option<RegistrationStatus>>>,
}

impl WatcherRegistration {
    /// The service for `kind`.
    #[must_use]
    pub fn new(kind: ResourceKind, metrics: Metrics, readiness: crate::Readiness) -> Self {
        Self {
            info: plugin_info(kind),
            kind,
            metrics,
            readiness,
            last: Arc::default(),
        }
    }
}

#[tonic::async_trait]
impl Registration for WatcherRegistration {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        tracing::debug!(
            resource = self.info.name,
            "plugin watcher asked for plugin info"
        );
        Ok(Response::new(self.info.clone()))
    }

    async fn notify_registration_status(
        &self,
        request: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        let resource = self.info.name.as_str();
        let changed = self
            .last
            .lock()
            .map(|mut last| last.replace(status.clone()).as_ref() != Some(&status))
            .unwrap_or(true);
        match (status.plugin_registered, changed) {
            (true, true) => {
                tracing::info!(resource, "registered with the kubelet (plugin watcher)")
            }
            (true, false) => tracing::debug!(resource, "registered with the kubelet again"),
            (false, _) => tracing::warn!(
                resource,
                error = status.error,
                "the kubelet's plugin watcher refused the registration"
            ),
        }
        self.metrics
            .registration(self.kind, status.plugin_registered);
        self.metrics
            .set_registered(self.kind, status.plugin_registered);
        self.readiness.set(self.kind, status.plugin_registered);
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

/// Identity of a socket file: a socket deleted and created again (by us or anyone) is a
/// different file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketId {
    /// Device of the file system.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl SocketId {
    /// The file at `path` now, if any.
    #[must_use]
    pub fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path).ok().map(|m| Self {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// Where the machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The socket must be (re)created and served.
    Bind,
    /// Serving on the socket with this identity.
    Serving(SocketId),
    /// Waiting after `attempt` consecutive bind failures.
    Backoff {
        /// Consecutive failures.
        attempt: u32,
        /// When to retry.
        until: Instant,
    },
}

/// What happened since the last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The socket is bound and served; its identity.
    Bound(SocketId),
    /// Binding failed.
    BindFailed,
    /// The directory changed; what is at our socket path now.
    Socket(Option<SocketId>),
    /// The backoff timer fired.
    Timer,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop any running server, remove a stale socket, bind and serve.
    Bind,
    /// Wait for a directory change or the timer at the given instant.
    Wait(Option<Instant>),
}

/// The serving state machine of one resource's plugin-watcher socket.
#[derive(Debug, Clone)]
pub struct Machine {
    backoff: Backoff,
    state: State,
    rebinds: u64,
}

impl Machine {
    /// A machine retrying failed binds with `backoff`.
    #[must_use]
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            state: State::Bind,
            rebinds: 0,
        }
    }

    /// The first action.
    #[must_use]
    pub fn start(&self) -> Action {
        Action::Bind
    }

    /// Current state.
    #[must_use]
    pub fn state(&self) -> &State {
        &self.state
    }

    /// How often the socket vanished or was replaced while served.
    #[must_use]
    pub fn rebinds(&self) -> u64 {
        self.rebinds
    }

    /// Advances on `input` at `now`.
    pub fn step(&mut self, input: Input, now: Instant) -> Action {
        match (self.state, input) {
            (_, Input::Bound(id)) => {
                self.state = State::Serving(id);
                Action::Wait(None)
            }
            (state, Input::BindFailed) => {
                let attempt = match state {
                    State::Backoff { attempt, .. } => attempt.saturating_add(1),
                    State::Bind | State::Serving(_) => 1,
                };
                let until = now + self.backoff.delay(attempt);
                self.state = State::Backoff { attempt, until };
                Action::Wait(Some(until))
            }
            (State::Serving(id), Input::Socket(now_at_path)) if now_at_path != Some(id) => {
                self.rebinds = self.rebinds.saturating_add(1);
                self.state = State::Bind;
                Action::Bind
            }
            (State::Serving(_), Input::Socket(_) | Input::Timer) => Action::Wait(None),
            (State::Backoff { until, .. }, Input::Timer) if now >= until => Action::Bind,
            (State::Backoff { until, .. }, Input::Socket(_) | Input::Timer) => {
                Action::Wait(Some(until))
            }
            (State::Bind, Input::Socket(_) | Input::Timer) => Action::Bind,
        }
    }
}

/// Everything one resource's plugin-watcher runner needs.
#[derive(Debug, Clone)]
pub struct Runner {
    /// The plugin-watcher directory.
    pub registry_dir: PathBuf,
    /// The resource.
    pub spec: Arc<ResourceSpec>,
    /// Device nodes, for health.
    pub nodes: watch::Receiver<DeviceNodes>,
    /// Wake-ups on changes of the plugin-watcher directory.
    pub dir: watch::Receiver<DirSnapshot>,
    /// Metrics.
    pub metrics: Metrics,
    /// Backoff between failed binds.
    pub backoff: Backoff,
    /// Largest `ListAndWatch` message.
    pub limit: u64,
    /// `/readyz` state.
    pub readiness: crate::Readiness,
}

/// Binds `socket` and serves both services on it until `stop` flips; the socket's identity.
fn serve(
    socket: &Path,
    registration: WatcherRegistration,
    plugin: PluginService,
    mut stop: watch::Receiver<bool>,
) -> Result<SocketId> {
    let listener = crate::uds::bind(socket)?;
    let id = SocketId::of(socket).ok_or_else(|| Error::Socket {
        path: socket.to_owned(),
        source: std::io::Error::other("socket vanished right after bind"),
    })?;
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(RegistrationServer::new(registration))
            .add_service(DevicePluginServer::new(plugin))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
        {
            tracing::warn!(error = %crate::error_chain(&e), "plugin-watcher server ended");
        }
    });
    Ok(id)
}

/// Serves the runner's resource for the kubelet's plugin watcher until `shutdown` flips,
/// serving the socket again whenever it is deleted or replaced.
pub async fn run(runner: Runner, mut shutdown: watch::Receiver<bool>) {
    let Runner {
        registry_dir,
        spec,
        nodes,
        mut dir,
        metrics,
        backoff,
        limit,
        readiness,
    } = runner;
    let kind = spec.kind;
    let resource = kind.resource_name();
    let socket = registry_dir.join(kind.socket_name());
    let mut machine = Machine::new(backoff);
    let mut stop_tx: Option<watch::Sender<bool>> = None;
    let mut action = machine.start();
    let mut rebinds_seen = 0;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let input = match action {
            Action::Bind => {
                if let Some(tx) = stop_tx.take() {
                    let _ = tx.send(true);
                }
                // Not registered until the watcher says so for this socket.
                metrics.set_registered(kind, false);
                readiness.set(kind, false);
                let (tx, rx) = watch::channel(false);
                let plugin = PluginService::new(
                    spec.clone(),
                    nodes.clone(),
                    rx.clone(),
                    metrics.clone(),
                    limit,
                );
                let registration =
                    WatcherRegistration::new(kind, metrics.clone(), readiness.clone());
                match serve(&socket, registration, plugin, rx) {
                    Ok(id) => {
                        stop_tx = Some(tx);
                        tracing::info!(resource, socket = %socket.display(), "serving for the kubelet's plugin watcher");
                        Input::Bound(id)
                    }
                    Err(e) => {
                        metrics.registration(kind, false);
                        tracing::warn!(resource, error = %crate::error_chain(&e), "cannot serve; retrying");
                        Input::BindFailed
                    }
                }
            }
            Action::Wait(until) => {
                tokio::select! {
                    () = crate::watch::sleep_until(until) => Input::Timer,
                    r = dir.changed() => {
                        if r.is_err() { break; }
                        dir.borrow_and_update();
                        Input::Socket(SocketId::of(&socket))
                    }
                    _ = shutdown.changed() => break,
                }
            }
        };
        action = machine.step(input, Instant::now());
        if machine.rebinds() > rebinds_seen {
            rebinds_seen = machine.rebinds();
            tracing::info!(
                resource,
                socket = %socket.display(),
                "plugin-watcher socket deleted or replaced; serving it again"
            );
        }
    }
    if let Some(tx) = stop_tx.take() {
        let _ = tx.send(true);
    }
    // Remove the socket only if it is still ours (never another process's).
    if let State::Serving(id) = machine.state()
        && SocketId::of(&socket) == Some(*id)
    {
        let _ = std::fs::remove_file(&socket);
    }
    metrics.set_registered(kind, false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const B: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };

    fn id(ino: u64) -> SocketId {
        SocketId { dev: 1, ino }
    }

    #[test]
    fn plugin_info_names_the_resource_and_leaves_the_endpoint_to_the_kubelet() {
        let info = plugin_info(ResourceKind::Enclave);
        assert_eq!(info.r#type, "DevicePlugin");
        assert_eq!(info.name, "sgx.intel.com/enclave");
        assert_eq!(info.endpoint, "");
        assert_eq!(info.supported_versions, ["v1beta1"]);
    }

    #[tokio::test]
    async fn notifications_drive_readiness_and_metrics() {
        let readiness = crate::Readiness::new(None, &[ResourceKind::Enclave]);
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::new(&mut registry);
        let svc = WatcherRegistration::new(ResourceKind::Enclave, metrics, readiness.clone());
        let info = svc
            .get_info(Request::new(InfoRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info, plugin_info(ResourceKind::Enclave));
        let notify = |plugin_registered: bool, error: &str| {
            svc.notify_registration_status(Request::new(RegistrationStatus {
                plugin_registered,
                error: error.to_owned(),
            }))
        };
        assert!(!readiness.is_ready());
        // Recent kubelets register a healthy plugin again now and then.
        notify(true, "").await.unwrap();
        notify(true, "").await.unwrap();
        assert!(readiness.is_ready());
        notify(false, "RegisterPlugin error -- plugin registration failed")
            .await
            .unwrap();
        assert!(!readiness.is_ready());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        for line in [
            r#"confcom_device_plugin_registrations_total{resource="enclave",result="ok"} 2"#,
            r#"confcom_device_plugin_registrations_total{resource="enclave",result="error"} 1"#,
            r#"confcom_device_plugin_registered{resource="enclave"} 0"#,
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
    }

    #[test]
    fn serving_socket_deleted_or_replaced_is_served_again() {
        let now = Instant::now();
        let mut m = Machine::new(B);
        assert_eq!(m.start(), Action::Bind);
        assert_eq!(m.step(Input::Bound(id(1)), now), Action::Wait(None));
        // Other files come and go: nothing to do.
        assert_eq!(m.step(Input::Socket(Some(id(1))), now), Action::Wait(None));
        // Deleted.
        assert_eq!(m.step(Input::Socket(None), now), Action::Bind);
        assert_eq!(m.rebinds(), 1);
        assert_eq!(m.step(Input::Bound(id(2)), now), Action::Wait(None));
        // Replaced by another file of the same name.
        assert_eq!(m.step(Input::Socket(Some(id(9))), now), Action::Bind);
        assert_eq!(m.rebinds(), 2);
        m.step(Input::Bound(id(3)), now);
        assert_eq!(m.state(), &State::Serving(id(3)));
    }

    #[test]
    fn bind_failures_back_off_until_the_timer() {
        let now = Instant::now();
        let mut m = Machine::new(B);
        let until = now + B.delay(1);
        assert_eq!(m.step(Input::BindFailed, now), Action::Wait(Some(until)));
        // Directory changes do not cut the wait short.
        assert_eq!(m.step(Input::Socket(None), now), Action::Wait(Some(until)));
        assert_eq!(m.step(Input::Timer, now), Action::Wait(Some(until)));
        assert_eq!(m.step(Input::Timer, until), Action::Bind);
        let until2 = until + B.delay(2);
        assert_eq!(m.step(Input::BindFailed, until), Action::Wait(Some(until2)));
        assert_eq!(m.step(Input::Timer, until2), Action::Bind);
        // Success resets the attempts.
        m.step(Input::Bound(id(1)), until2);
        m.step(Input::Socket(None), until2);
        assert_eq!(
            m.step(Input::BindFailed, until2),
            Action::Wait(Some(until2 + B.delay(1)))
        );
        assert_eq!(m.rebinds(), 1);
    }
}
