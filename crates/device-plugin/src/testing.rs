//! An in-process kubelet for tests and benchmarks: it serves the `Registration` service on
//! `<dir>/kubelet.sock` and, like the kubelet's device manager, dials every registered plugin
//! back on `<dir>/<endpoint>`, calls `GetDevicePluginOptions`, then follows `ListAndWatch`
//! (with the same 4 MiB receive limit, tonic's default). A restart wipes the directory the way
//! the kubelet does. Not for production use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        if !req.resource_name.contains('/') || req.resource_name.starts_with("kubernetes.io/") {
            return Err(Status::invalid_argument(format!(
                "invalid extended resource name {:?}",
                req.resource_name
            )));
        }
        self.inner
            .registrations
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .push(req.clone());
        let dir = self.dir.clone();
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = dial_back(&dir, &req, &inner).await {
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

fn bump(inner: &Inner) {
    if let Some(tx) = &inner.changed {
        tx.send_modify(|n| *n += 1);
    }
}

async fn dial_back(dir: &Path, req: &RegisterRequest, inner: &Arc<Inner>) -> Result<(), Status> {
    let path = dir.join(&req.endpoint);
    let channel = tokio::time::timeout(Duration::from_secs(10), crate::uds::connect(&path))
        .await
        .map_err(|_| Status::deadline_exceeded("dial timed out"))?
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut client = DevicePluginClient::new(channel);
    let options = client
        .get_device_plugin_options(Empty {})
        .await?
        .into_inner();
    let mut stream = client.list_and_watch(Empty {}).await?.into_inner();
    let (tx, rx) = watch::channel(None);
    inner
        .conns
        .lock()
        .map_err(|_| Status::internal("poisoned"))?
        .insert(
            req.resource_name.clone(),
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
        let mut changed = self.changed.clone();
        tokio::time::timeout(timeout, async {
            loop {
                if f(self) {
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
        let conns = self.inner.conns.lock().ok()?;
        conns.get(resource)?.devices.borrow().clone()
    }

    /// The options `resource` answered with.
    #[must_use]
    pub fn options(&self, resource: &str) -> Option<DevicePluginOptions> {
        Some(self.inner.conns.lock().ok()?.get(resource)?.options)
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
        let mut client = self
            .inner
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
