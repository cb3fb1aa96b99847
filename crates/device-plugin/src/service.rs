//! The tonic `DevicePlugin` service of one resource: a thin adapter over [`ResourceSpec`] and
//! the [`ListAndWatch`] state machine.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use kubelet_api::v1beta1::device_plugin_server::DevicePlugin;
use kubelet_api::v1beta1::{
    AllocateRequest, AllocateResponse, Device, DevicePluginOptions, Empty, ListAndWatchResponse,
    PreStartContainerRequest, PreStartContainerResponse, PreferredAllocationRequest,
    PreferredAllocationResponse,
};
use kubelet_api::{HEALTHY, UNHEALTHY};
use sgx_platform::DeviceNodes;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::ids;
use crate::metrics::Metrics;
use crate::resource::{ResourceKind, ResourceSpec};

/// The options this plugin registers with: neither `PreStartContainer` nor
/// `GetPreferredAllocation` is needed for shared or fungible devices.
#[must_use]
pub fn plugin_options() -> DevicePluginOptions {
    DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: false,
    }
}

/// `ListAndWatch` as a state machine: it remembers what the kubelet last saw and emits a new
/// list only when the health of the devices changes.
#[derive(Debug)]
pub struct ListAndWatch {
    spec: Arc<ResourceSpec>,
    limit: u64,
    sent: Option<bool>,
}

impl ListAndWatch {
    /// A stream state for `spec` whose messages must stay within `limit` bytes.
    #[must_use]
    pub fn new(spec: Arc<ResourceSpec>, limit: u64) -> Self {
        Self {
            spec,
            limit,
            sent: None,
        }
    }

    /// Feeds the current health; returns the list to send, if it changed.
    pub fn step(&mut self, healthy: bool) -> Option<ListAndWatchResponse> {
        if self.sent == Some(healthy) {
            return None;
        }
        self.sent = Some(healthy);
        Some(self.list(healthy))
    }

    /// The full device list in the given health state.
    #[must_use]
    pub fn list(&self, healthy: bool) -> ListAndWatchResponse {
        match self.spec.kind {
            ResourceKind::EpcMib => {
                let health = ids::health_encoding(self.spec.count, healthy, self.limit)
                    .unwrap_or(if healthy { HEALTHY } else { UNHEALTHY });
                ids::compact_list(self.spec.count, health)
            }
            ResourceKind::Enclave | ResourceKind::Provision => ListAndWatchResponse {
                devices: (0..self.spec.count)
                    .map(|i| Device {
                        id: self.spec.device_id(i),
                        health: if healthy { HEALTHY } else { UNHEALTHY }.to_owned(),
                        topology: None,
                    })
                    .collect(),
            },
        }
    }
}

/// The `DevicePlugin` service of one resource.
#[derive(Debug, Clone)]
pub struct PluginService {
    spec: Arc<ResourceSpec>,
    nodes: watch::Receiver<DeviceNodes>,
    stop: watch::Receiver<bool>,
    metrics: Metrics,
    limit: u64,
}

impl PluginService {
    /// A service for `spec`; health follows `nodes`; streams end when `stop` flips.
    #[must_use]
    pub fn new(
        spec: Arc<ResourceSpec>,
        nodes: watch::Receiver<DeviceNodes>,
        stop: watch::Receiver<bool>,
        metrics: Metrics,
        limit: u64,
    ) -> Self {
        Self {
            spec,
            nodes,
            stop,
            metrics,
            limit,
        }
    }

    fn healthy(&self, nodes: &DeviceNodes) -> bool {
        self.spec.node.present_in(nodes)
    }
}

type LwStream = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for PluginService {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(plugin_options()))
    }

    type ListAndWatchStream = LwStream;

    async fn list_and_watch(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let resource = self.spec.kind.resource_name();
        tracing::info!(resource, "kubelet opened ListAndWatch");
        let machine = ListAndWatch::new(self.spec.clone(), self.limit);
        let this = self.clone();
        let mut nodes = self.nodes.clone();
        nodes.mark_changed();
        let state = (machine, nodes, self.stop.clone(), this);
        let stream =
            futures::stream::unfold(state, |(mut m, mut nodes, mut stop, this)| async move {
                loop {
                    if *stop.borrow() {
                        return None;
                    }
                    tokio::select! {
                        r = nodes.changed() => if r.is_err() { return None },
                        _ = stop.changed() => return None,
                    }
                    let healthy = this.healthy(&nodes.borrow_and_update());
                    if let Some(list) = m.step(healthy) {
                        let resource = this.spec.kind;
                        this.metrics.set_devices(resource, healthy, this.spec.count);
                        tracing::info!(
                            resource = resource.resource_name(),
                            devices = list.devices.len(),
                            healthy,
                            "sending device list"
                        );
                        return Some((Ok(list), (m, nodes, stop, this)));
                    }
                }
            });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_preferred_allocation(
        &self,
        _: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        Err(Status::unimplemented(
            "GetPreferredAllocation is not offered (get_preferred_allocation_available = false)",
        ))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let req = request.into_inner();
        let resource = self.spec.kind;
        let _span = tracing::info_span!("allocate", resource = resource.resource_name()).entered();
        let healthy = self.healthy(&self.nodes.borrow());
        let mut container_responses = Vec::with_capacity(req.container_requests.len());
        for c in &req.container_requests {
            match self.spec.allocate(&c.devices_ids, healthy) {
                Ok(r) => container_responses.push(r),
                Err(e) => {
                    tracing::info!(error = %e, "allocation refused");
                    self.metrics.allocation(resource, false);
                    return Err(e.into());
                }
            }
        }
        self.metrics.allocation(resource, true);
        tracing::debug!(containers = container_responses.len(), "allocated");
        Ok(Response::new(AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}
