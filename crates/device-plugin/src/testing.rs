//! An in-process kubelet for tests and benchmarks, in its two registration modes:
//! - [`FakeKubelet`] serves the `Registration` service on `<dir>/kubelet.sock` and, like the
//!   kubelet's device manager, dials every registered plugin back on `<dir>/<endpoint>`, calls
//!   `GetDevicePluginOptions`, then follows `ListAndWatch` (with the same 4 MiB receive limit,
//!   tonic's default). A restart wipes the directory the way the kubelet does.
//! - [`FakePluginWatcher`] plays the kubelet's plugin watcher: it finds plugin sockets in a
//!   plugins-registry directory, calls `GetInfo`, validates and registers the plugin with the
//!   same device-manager connection, then calls `NotifyRegistrationStatus`.
//!
//! Not for production use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubelet_api::pluginregistration::registration_client::RegistrationClient as WatcherClient;
use kubelet_api::pluginregistration::{InfoRequest, PluginInfo, RegistrationStatus};
use kubelet_api::v1beta1::device_plugin_client::DevicePluginClient;
use kubelet_api::v1beta1::registration_server::{Registration, RegistrationServer};
use kubelet_api::v1beta1::{
    AllocateRequest, AllocateResponse, ContainerAllocateRequest, Device, DevicePluginOptions,
    Empty, RegisterRequest,
};
use prost::Message;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// One `ListAndWatch` message as received.
#[derive(Debug, Clone, Default)]
pub struct DeviceList {
    /// The devices.
    pub devices: Vec<Device>,
    /// Encoded size of the message in bytes.
    pub encoded_len: usize,
    /// How many messages the stream delivered so far.
    pub seq: u64,
}

impl DeviceList {
    /// Number of devices whose health is `Healthy` (the kubelet's rule).
    #[must_use]
    pub fn healthy(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| d.health == kubelet_api::HEALTHY)
            .count()
    }
}

#[derive(Clone)]
struct Conn {
    client: DevicePluginClient<Channel>,
    options: DevicePluginOptions,
    devices: watch::Receiver<Option<DeviceList>>,
}

#[derive(Default)]
struct Inner {
    registrations: Mutex<Vec<RegisterRequest>>,
    /// Plugin-watcher mode: every `GetInfo` answer, in order.
    infos: Mutex<Vec<PluginInfo>>,
    /// Plugin-watcher mode: every `NotifyRegistrationStatus` sent, with the plugin name.
    notified: Mutex<Vec<(String, RegistrationStatus)>>,
    /// Plugin-watcher mode: fail validation of every plugin with this error.
    reject: Mutex<Option<String>>,
    conns: Mutex<HashMap<String, Conn>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    changed: Option<watch::Sender<u64>>,
}

#[derive(Clone)]
struct RegistrationSvc {
    dir: PathBuf,
    inner: Arc<Inner>,
}

#[tonic::async_trait]
impl Registration for RegistrationSvc {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let req = request.into_inner();
        // The kubelet's checks (devicemanager `server.Register`/`validateRegistration`).
        if req.version != kubelet_api::VERSION {
            return Err(Status::invalid_argument(format!(
                "unsupported device plugin api version {:?}",
                req.version
            )));
        }
        if let Some(e) = invalid_resource_name(&req.resource_name) {
            return Err(Status::invalid_argument(e));
        }
        self.inner
            .registrations
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .push(req.clone());
        let path = self.dir.join(&req.endpoint);
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = dial_back(path, req.resource_name.clone(), &inner, None).await {
                tracing::warn!(resource = req.resource_name, error = %e, "fake kubelet: dial back failed");
            }
        });
        if let Ok(mut t) = self.inner.tasks.lock() {
            t.push(task);
        }
        bump(&self.inner);
        Ok(Response::new(Empty {}))
    }
}

/// The kubelet's extended-resource-name check (`v1helper.IsExtendedResourceName`, reduced to
/// what matters here): a domain-prefixed name outside `kubernetes.io/`.
fn invalid_resource_name(name: &str) -> Option<String> {
    (!name.contains('/') || name.starts_with("kubernetes.io/"))
        .then(|| format!("invalid extended resource name {name:?}"))
}

impl Inner {
    fn devices(&self, resource: &str) -> Option<DeviceList> {
        let conns = self.conns.lock().ok()?;
        conns.get(resource)?.devices.borrow().clone()
    }

    fn options(&self, resource: &str) -> Option<DevicePluginOptions> {
        Some(self.conns.lock().ok()?.get(resource)?.options)
    }

    async fn allocate(
        &self,
        resource: &str,
        containers: Vec<Vec<String>>,
    ) -> Result<AllocateResponse, Status> {
        let mut client = self
            .conns
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .get(resource)
            .map(|c| c.client.clone())
            .ok_or_else(|| Status::unavailable("plugin not connected"))?;
        let req = AllocateRequest {
            container_requests: containers
                .into_iter()
                .map(|devices_ids| ContainerAllocateRequest { devices_ids })
                .collect(),
        };
        Ok(client.allocate(req).await?.into_inner())
    }
}

/// Waits until `f` holds, re-checked whenever `changed` ticks, up to `timeout`.
async fn wait_on(
    changed: &watch::Receiver<u64>,
    timeout: Duration,
    mut f: impl FnMut() -> bool,
) -> Result<(), ()> {
    let mut changed = changed.clone();
    tokio::time::timeout(timeout, async {
        loop {
            if f() {
                return;
            }
            if changed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    })
    .await
    .map_err(|_| ())
}

fn bump(inner: &Inner) {
    if let Some(tx) = &inner.changed {
        tx.send_modify(|n| *n += 1);
    }
}

/// The device manager's side of a registration (devicemanager `plugin/v1beta1/client.go`):
/// dial `path`, `GetDevicePluginOptions`, then follow `ListAndWatch`. `connected` (if given)
/// hears whether the connection and the first two calls succeeded.
async fn dial_back(
    path: PathBuf,
    resource: String,
    inner: &Arc<Inner>,
    connected: Option<tokio::sync::oneshot::Sender<Result<(), Status>>>,
) -> Result<(), Status> {
    let (conn, stream) = match connect_plugin(&path).await {
        Ok(c) => {
            if let Some(tx) = connected {
                let _ = tx.send(Ok(()));
            }
            c
        }
        Err(e) => {
            if let Some(tx) = connected {
                let _ = tx.send(Err(e.clone()));
            }
            return Err(e);
        }
    };
    follow(resource, conn, stream, inner).await
}

type LwStreaming = tonic::Streaming<kubelet_api::v1beta1::ListAndWatchResponse>;

async fn connect_plugin(
    path: &Path,
) -> Result<
    (
        (DevicePluginClient<Channel>, DevicePluginOptions),
        LwStreaming,
    ),
    Status,
> {
    let channel = tokio::time::timeout(Duration::from_secs(10), crate::uds::connect(path))
        .await
        .map_err(|_| Status::deadline_exceeded("dial timed out"))?
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut client = DevicePluginClient::new(channel);
    let options = client
        .get_device_plugin_options(Empty {})
        .await?
        .into_inner();
    let stream = client.list_and_watch(Empty {}).await?.into_inner();
    Ok(((client, options), stream))
}

async fn follow(
    resource: String,
    (client, options): (DevicePluginClient<Channel>, DevicePluginOptions),
    mut stream: LwStreaming,
    inner: &Arc<Inner>,
) -> Result<(), Status> {
    let (tx, rx) = watch::channel(None);
    inner
        .conns
        .lock()
        .map_err(|_| Status::internal("poisoned"))?
        .insert(
            resource,
            Conn {
                client,
                options,
                devices: rx,
            },
        );
    bump(inner);
    let mut seq = 0;
    loop {
        match stream.message().await {
            Ok(Some(msg)) => {
                seq += 1;
                let encoded_len = msg.encoded_len();
                let _ = tx.send(Some(DeviceList {
                    devices: msg.devices,
                    encoded_len,
                    seq,
                }));
                bump(inner);
            }
            Ok(None) => return Ok(()),
            Err(s) => return Err(s),
        }
    }
}

/// The fake kubelet.
pub struct FakeKubelet {
    dir: PathBuf,
    inner: Arc<Inner>,
    changed: watch::Receiver<u64>,
    stop: Option<watch::Sender<bool>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for FakeKubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKubelet")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl FakeKubelet {
    /// Starts serving `<dir>/kubelet.sock`.
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub async fn start(dir: &Path) -> crate::Result<Self> {
        let (tx, changed) = watch::channel(0);
        let inner = Arc::new(Inner {
            changed: Some(tx),
            ..Inner::default()
        });
        let mut k = Self {
            dir: dir.to_owned(),
            inner,
            changed,
            stop: None,
            server: None,
        };
        k.serve()?;
        Ok(k)
    }

    fn serve(&mut self) -> crate::Result<()> {
        // Like the kubelet (v1.20 on): a marker that some plugins wrongly take as "do not
        // register"; this plugin registers regardless.
        let _ = std::fs::write(
            self.dir.join("DEPRECATION"),
            b"Dir deprecation notice (written by the in-test kubelet)\n",
        );
        let listener = crate::uds::bind(&self.dir.join(kubelet_api::KUBELET_SOCKET))?;
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let svc = RegistrationSvc {
            dir: self.dir.clone(),
            inner: self.inner.clone(),
        };
        let server = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(RegistrationServer::new(svc))
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await;
        });
        self.stop = Some(stop_tx);
        self.server = Some(server);
        Ok(())
    }

    /// Stops serving and drops every plugin connection (a kubelet that died).
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(h) = self.server.take()
            && tokio::time::timeout(Duration::from_secs(2), h)
                .await
                .is_err()
        {
            tracing::warn!("fake kubelet: server did not stop in time");
        }
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
        if let Ok(mut c) = self.inner.conns.lock() {
            c.clear();
        }
    }

    /// Restarts like a real kubelet: stop, delete every file in the directory except the
    /// checkpoint, serve a new `kubelet.sock`.
    ///
    /// # Errors
    /// When the directory cannot be cleaned or the socket bound.
    pub async fn restart(&mut self) -> crate::Result<()> {
        self.stop().await;
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if e.file_name() != kubelet_api::KUBELET_CHECKPOINT {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        self.serve()
    }

    /// Every registration received, in order.
    #[must_use]
    pub fn registrations(&self) -> Vec<RegisterRequest> {
        self.inner
            .registrations
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Waits until `f` holds (re-checked on every registration or message), up to `timeout`.
    ///
    /// # Errors
    /// `Err(())` on timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&Self) -> bool,
    ) -> Result<(), ()> {
        wait_on(&self.changed, timeout, || f(self)).await
    }

    /// Number of registrations of `resource`.
    #[must_use]
    pub fn registration_count(&self, resource: &str) -> usize {
        self.registrations()
            .iter()
            .filter(|r| r.resource_name == resource)
            .count()
    }

    /// The latest device list of `resource`.
    #[must_use]
    pub fn devices(&self, resource: &str) -> Option<DeviceList> {
        self.inner.devices(resource)
    }

    /// The options `resource` answered with.
    #[must_use]
    pub fn options(&self, resource: &str) -> Option<DevicePluginOptions> {
        self.inner.options(resource)
    }

    /// Waits for a device list of `resource` that satisfies `f`.
    ///
    /// # Errors
    /// `Err(())` on timeout.
    pub async fn wait_devices(
        &self,
        resource: &str,
        timeout: Duration,
        f: impl Fn(&DeviceList) -> bool,
    ) -> Result<DeviceList, ()> {
        self.wait_until(timeout, |k| k.devices(resource).is_some_and(|d| f(&d)))
            .await?;
        self.devices(resource).ok_or(())
    }

    /// Calls `Allocate` on the plugin of `resource`, one container per entry of `containers`.
    ///
    /// # Errors
    /// The plugin's status, or `unavailable` when the plugin is not connected.
    pub async fn allocate(
        &self,
        resource: &str,
        containers: Vec<Vec<String>>,
    ) -> Result<AllocateResponse, Status> {
        self.inner.allocate(resource, containers).await
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

/// The kubelet's plugin watcher and plugin manager, reduced to the device-plugin path
/// (upstream `pkg/kubelet/pluginmanager/pluginwatcher/plugin_watcher.go`,
/// `operationexecutor/operation_generator.go` `GenerateRegisterPluginFunc` and
/// `pkg/kubelet/cm/devicemanager/plugin/v1beta1/handler.go`):
/// - it re-reads the directory every 20 ms (the kubelet uses inotify plus a walk at start);
///   every unix socket whose name does not start with `.` and that is new (or a new file
///   under a known name) gets registered; a vanished socket gets deregistered (its
///   device-manager connection dropped);
/// - registering: dial the socket, `GetInfo` (1 s), require type `DevicePlugin`, default an
///   empty `endpoint` to the socket path, validate (`v1beta1` among the versions, an extended
///   resource name), connect the device manager to `endpoint` (`GetDevicePluginOptions`,
///   `ListAndWatch`), then `NotifyRegistrationStatus` (true, or false with the error).
pub struct FakePluginWatcher {
    dir: PathBuf,
    inner: Arc<Inner>,
    changed: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakePluginWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakePluginWatcher")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A socket the fake watcher registered: its inode, plugin name and device-manager task.
struct Watched {
    ino: u64,
    name: Option<String>,
    task: Option<tokio::task::AbortHandle>,
}

impl FakePluginWatcher {
    /// Starts watching `dir` (a plugins-registry directory).
    #[must_use]
    pub fn start(dir: &Path) -> Self {
        let (tx, changed) = watch::channel(0);
        let inner = Arc::new(Inner {
            changed: Some(tx),
            ..Inner::default()
        });
        let task = tokio::spawn(watch_loop(dir.to_owned(), inner.clone()));
        Self {
            dir: dir.to_owned(),
            inner,
            changed,
            task,
        }
    }

    /// From now on, fail validation of every plugin with `error` (`None`: accept again).
    pub fn reject(&self, error: Option<&str>) {
        if let Ok(mut r) = self.inner.reject.lock() {
            *r = error.map(str::to_owned);
        }
    }

    /// Every `GetInfo` answer, in order.
    #[must_use]
    pub fn infos(&self) -> Vec<PluginInfo> {
        self.inner
            .infos
            .lock()
            .map(|i| i.clone())
            .unwrap_or_default()
    }

    /// Every status sent with `NotifyRegistrationStatus` to plugin `name`, in order.
    #[must_use]
    pub fn notified(&self, name: &str) -> Vec<RegistrationStatus> {
        self.inner
            .notified
            .lock()
            .map(|n| {
                n.iter()
                    .filter(|(p, _)| p == name)
                    .map(|(_, s)| s.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of successful registrations of `resource`.
    #[must_use]
    pub fn registration_count(&self, resource: &str) -> usize {
        self.notified(resource)
            .iter()
            .filter(|s| s.plugin_registered)
            .count()
    }

    /// Waits until `f` holds (re-checked on every registration step or message), up to
    /// `timeout`.
    ///
    /// # Errors
    /// `Err(())` on timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&Self) -> bool,
    ) -> Result<(), ()> {
        wait_on(&self.changed, timeout, || f(self)).await
    }

    /// The latest device list of `resource` (`None` while not connected).
    #[must_use]
    pub fn devices(&self, resource: &str) -> Option<DeviceList> {
        self.inner.devices(resource)
    }

    /// The options `resource` answered with.
    #[must_use]
    pub fn options(&self, resource: &str) -> Option<DevicePluginOptions> {
        self.inner.options(resource)
    }

    /// Waits for a device list of `resource` that satisfies `f`.
    ///
    /// # Errors
    /// `Err(())` on timeout.
    pub async fn wait_devices(
        &self,
        resource: &str,
        timeout: Duration,
        f: impl Fn(&DeviceList) -> bool,
    ) -> Result<DeviceList, ()> {
        self.wait_until(timeout, |k| k.devices(resource).is_some_and(|d| f(&d)))
            .await?;
        self.devices(resource).ok_or(())
    }

    /// Calls `Allocate` on the plugin of `resource`, one container per entry of `containers`.
    ///
    /// # Errors
    /// The plugin's status, or `unavailable` when the plugin is not connected.
    pub async fn allocate(
        &self,
        resource: &str,
        containers: Vec<Vec<String>>,
    ) -> Result<AllocateResponse, Status> {
        self.inner.allocate(resource, containers).await
    }
}

impl Drop for FakePluginWatcher {
    /// A kubelet that died: the watcher and every device-manager connection go away.
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

/// The unix sockets in `dir` the watcher considers, with their inodes.
fn list_sockets(dir: &Path) -> HashMap<PathBuf, u64> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| {
                    let m = std::fs::symlink_metadata(e.path()).ok()?;
                    m.file_type().is_socket().then(|| (e.path(), m.ino()))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn watch_loop(dir: PathBuf, inner: Arc<Inner>) {
    let mut seen: HashMap<PathBuf, Watched> = HashMap::new();
    loop {
        let now = list_sockets(&dir);
        // Deregister vanished or replaced sockets (`handleDeleteEvent` → `DeRegisterPlugin`).
        let gone: Vec<PathBuf> = seen
            .iter()
            .filter(|(p, w)| now.get(*p) != Some(&w.ino))
            .map(|(p, _)| p.clone())
            .collect();
        for path in gone {
            if let Some(w) = seen.remove(&path) {
                if let Some(t) = w.task {
                    t.abort();
                }
                if let (Some(name), Ok(mut conns)) = (w.name, inner.conns.lock()) {
                    conns.remove(&name);
                }
                bump(&inner);
            }
        }
        for (path, ino) in now {
            if seen.contains_key(&path) {
                continue;
            }
            let (name, task) = register_socket(&path, &inner).await;
            seen.insert(path, Watched { ino, name, task });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One `GenerateRegisterPluginFunc` run: the plugin's name (once `GetInfo` answered) and the
/// device-manager task following it (once registered).
async fn register_socket(
    socket: &Path,
    inner: &Arc<Inner>,
) -> (Option<String>, Option<tokio::task::AbortHandle>) {
    let channel =
        match tokio::time::timeout(Duration::from_secs(10), crate::uds::connect(socket)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(socket = %socket.display(), error = %e, "fake watcher: dial failed");
                return (None, None);
            }
            Err(_) => return (None, None),
        };
    let mut client = WatcherClient::new(channel);
    let info =
        match tokio::time::timeout(Duration::from_secs(1), client.get_info(InfoRequest {})).await {
            Ok(Ok(r)) => r.into_inner(),
            _ => return (None, None),
        };
    if let Ok(mut i) = inner.infos.lock() {
        i.push(info.clone());
    }
    bump(inner);
    let name = info.name.clone();
    let notify = |registered: bool, error: String| {
        let status = RegistrationStatus {
            plugin_registered: registered,
            error,
        };
        let mut client = client.clone();
        let inner = inner.clone();
        let name = name.clone();
        async move {
            let sent = tokio::time::timeout(
                Duration::from_secs(5),
                client.notify_registration_status(status.clone()),
            )
            .await;
            if matches!(sent, Ok(Ok(_))) {
                if let Ok(mut n) = inner.notified.lock() {
                    n.push((name, status));
                }
                bump(&inner);
            }
        }
    };
    if info.r#type != kubelet_api::DEVICE_PLUGIN_TYPE {
        notify(
            false,
            format!(
                "RegisterPlugin error -- no handler registered for plugin type: {} at socket {}",
                info.r#type,
                socket.display()
            ),
        )
        .await;
        return (Some(name), None);
    }
    let endpoint = if info.endpoint.is_empty() {
        socket.to_owned()
    } else {
        PathBuf::from(&info.endpoint)
    };
    let rejected = inner.reject.lock().ok().and_then(|r| r.clone());
    let invalid = if info
        .supported_versions
        .iter()
        .all(|v| v != kubelet_api::VERSION)
    {
        Some(format!(
            "manager version, {}, is not among plugin supported versions {:?}",
            kubelet_api::VERSION,
            info.supported_versions
        ))
    } else {
        invalid_resource_name(&name).or(rejected)
    };
    if let Some(e) = invalid {
        notify(
            false,
            format!("RegisterPlugin error -- plugin validation failed with err: {e}"),
        )
        .await;
        return (Some(name), None);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = {
        let inner = inner.clone();
        let name = name.clone();
        tokio::spawn(async move {
            if let Err(e) = dial_back(endpoint, name.clone(), &inner, Some(tx)).await {
                tracing::warn!(resource = name, error = %e, "fake watcher: device plugin connection ended");
            }
        })
    };
    let abort = task.abort_handle();
    if let Ok(mut t) = inner.tasks.lock() {
        t.push(task);
    }
    match rx.await {
        Ok(Ok(())) => notify(true, String::new()).await,
        Ok(Err(e)) => {
            notify(
                false,
                format!("RegisterPlugin error -- plugin registration failed with err: {e}"),
            )
            .await;
        }
        Err(_) => {}
    }
    (Some(name), Some(abort))
}
