//! Prometheus metrics of the device plugin and the node registrar.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::resource::ResourceKind;

type Labels = Vec<(&'static str, &'static str)>;

/// Handles to every metric; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    epc_bytes: Gauge<u64, AtomicU64>,
    devices: Family<Labels, Gauge>,
    registered: Family<Labels, Gauge>,
    allocations: Family<Labels, Counter>,
    registrations: Family<Labels, Counter>,
    kubelet_restarts: Counter,
    node_patches: Family<Labels, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` (prefix `confcom_device_plugin`).
    #[must_use]
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("confcom_device_plugin");
        r.register(
            "epc_bytes",
            "EPC of this node in bytes",
            m.epc_bytes.clone(),
        );
        r.register(
            "devices",
            "Devices advertised to the kubelet, by resource and health",
            m.devices.clone(),
        );
        r.register(
            "registered",
            "1 while the resource is registered with the kubelet",
            m.registered.clone(),
        );
        r.register(
            "allocations",
            "Allocate calls, by resource and result",
            m.allocations.clone(),
        );
        r.register(
            "registrations",
            "Registration attempts, by resource and result",
            m.registrations.clone(),
        );
        r.register(
            "kubelet_restarts",
            "Kubelet restarts noticed (per resource)",
            m.kubelet_restarts.clone(),
        );
        r.register(
            "node_patches",
            "Node status/label patches by the registrar, by result",
            m.node_patches.clone(),
        );
        m
    }

    /// Records the node's EPC size.
    pub fn set_epc_bytes(&self, bytes: u64) {
        self.epc_bytes.set(bytes);
    }

    /// Records the device count of `resource` in the given health.
    pub fn set_devices(&self, resource: ResourceKind, healthy: bool, count: u64) {
        let n = i64::try_from(count).unwrap_or(i64::MAX);
        let (on, off) = if healthy {
            ("healthy", "unhealthy")
        } else {
            ("unhealthy", "healthy")
        };
        self.devices
            .get_or_create(&vec![("resource", resource.metric_label()), ("health", on)])
            .set(n);
        self.devices
            .get_or_create(&vec![
                ("resource", resource.metric_label()),
                ("health", off),
            ])
            .set(0);
    }

    /// Records whether `resource` is registered.
    pub fn set_registered(&self, resource: ResourceKind, registered: bool) {
        self.registered
            .get_or_create(&vec![("resource", resource.metric_label())])
            .set(i64::from(registered));
    }

    /// Counts one Allocate call.
    pub fn allocation(&self, resource: ResourceKind, ok: bool) {
        self.allocations
            .get_or_create(&vec![
                ("resource", resource.metric_label()),
                ("result", result(ok)),
            ])
            .inc();
    }

    /// Counts one registration attempt.
    pub fn registration(&self, resource: ResourceKind, ok: bool) {
        self.registrations
            .get_or_create(&vec![
                ("resource", resource.metric_label()),
                ("result", result(ok)),
            ])
            .inc();
    }

    /// Counts one noticed kubelet restart.
    pub fn kubelet_restart(&self) {
        self.kubelet_restarts.inc();
    }

    /// Counts one node patch.
    pub fn node_patch(&self, ok: bool) {
        self.node_patches
            .get_or_create(&vec![("result", result(ok))])
            .inc();
    }
}

fn result(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode() {
        let mut reg = Registry::default();
        let m = Metrics::new(&mut reg);
        m.set_epc_bytes(64 << 20);
        m.set_devices(ResourceKind::Enclave, true, 110);
        m.allocation(ResourceKind::Enclave, true);
        m.registration(ResourceKind::Provision, false);
        m.kubelet_restart();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(
            out.contains("confcom_device_plugin_epc_bytes 67108864"),
            "{out}"
        );
        assert!(
            out.contains(
                r#"confcom_device_plugin_devices{resource="enclave",health="healthy"} 110"#
            ),
            "{out}"
        );
        assert!(
            out.contains(
                r#"confcom_device_plugin_allocations_total{resource="enclave",result="ok"} 1"#
            ),
            "{out}"
        );
        assert!(
            out.contains("confcom_device_plugin_kubelet_restarts_total 1"),
            "{out}"
        );
    }
}
