//! The resources this plugin serves and what Allocate hands out for them (pure).

use std::collections::BTreeSet;
use std::path::PathBuf;

use kubelet_api::v1beta1::{ContainerAllocateResponse, DeviceSpec};
use sgx_k8s::names;
use sgx_platform::{DeviceNodeKind, DeviceNodes};

use crate::Error;
use crate::ids;

/// cgroup permissions of every SGX device node handed to a container.
pub const DEVICE_PERMISSIONS: &str = "rw";

/// Which resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// `sgx.intel.com/enclave`: shared slots that hand out the enclave device node.
    Enclave,
    /// `sgx.intel.com/provision`: shared slots that hand out the provisioning node.
    Provision,
    /// `kubernetes.azure.com/sgx_epc_mem_in_MiB`: one device per MiB of EPC (Azure gen-1).
    EpcMib,
}

impl ResourceKind {
    /// The extended resource name.
    #[must_use]
    pub const fn resource_name(self) -> &'static str {
        match self {
            Self::Enclave => names::ENCLAVE,
            Self::Provision => names::PROVISION,
            Self::EpcMib => names::AZURE_EPC_MIB,
        }
    }

    /// Socket file name in the kubelet's directory (`sgx.intel.com-enclave.sock`).
    #[must_use]
    pub fn socket_name(self) -> String {
        format!("{}.sock", self.resource_name().replace('/', "-"))
    }

    /// The device node family this resource depends on.
    #[must_use]
    pub const fn node(self) -> NodeRole {
        match self {
            Self::Enclave | Self::EpcMib => NodeRole::Enclave,
            Self::Provision => NodeRole::Provision,
        }
    }

    /// Short label value for metrics.
    #[must_use]
    pub const fn metric_label(self) -> &'static str {
        match self {
            Self::Enclave => "enclave",
            Self::Provision => "provision",
            Self::EpcMib => "epc_mib",
        }
    }
}

/// The two device node functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// Enclave creation: `/dev/sgx_enclave` (or `/dev/sgx/enclave`, `/dev/isgx`).
    Enclave,
    /// Provisioning key access: `/dev/sgx_provision` (or `/dev/sgx/provision`).
    Provision,
}

/// Where a node role lives on this host, fixed when the plugin starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNode {
    /// Which node kind was found (or assumed).
    pub kind: DeviceNodeKind,
    /// Path as the host sees it (goes into `DeviceSpec.host_path`).
    pub host_path: PathBuf,
    /// Path this process checks for health.
    pub probe_path: PathBuf,
}

impl HostNode {
    /// Picks the node for `role` from what exists now; when none exists, the flat upstream
    /// name is assumed (it is what current drivers create) and reported unhealthy until it
    /// appears.
    #[must_use]
    pub fn pick(role: NodeRole, nodes: &DeviceNodes) -> Self {
        let (found, default) = match role {
            NodeRole::Enclave => (nodes.enclave(), DeviceNodeKind::Enclave),
            NodeRole::Provision => (nodes.provision(), DeviceNodeKind::Provision),
        };
        let node = found.or_else(|| nodes.get(default));
        match node {
            Some(n) => Self {
                kind: n.kind,
                host_path: n.host_path.clone(),
                probe_path: n.probe_path.clone(),
            },
            None => Self {
                kind: default,
                host_path: PathBuf::from("/dev").join(default.rel_path()),
                probe_path: PathBuf::from("/dev").join(default.rel_path()),
            },
        }
    }

    /// Whether the node exists in `nodes` (by probe path).
    #[must_use]
    pub fn present_in(&self, nodes: &DeviceNodes) -> bool {
        nodes
            .nodes
            .iter()
            .any(|n| n.probe_path == self.probe_path && n.present)
    }

    /// Device specs for a container: the node at its upstream container path plus the legacy
    /// path older SDKs open, both pointing at the same host node.
    #[must_use]
    pub fn device_specs(&self) -> Vec<DeviceSpec> {
        let container_paths: &[&str] = match self.kind {
            DeviceNodeKind::Enclave | DeviceNodeKind::LegacyEnclave => {
                &[names::DEV_SGX_ENCLAVE, names::DEV_SGX_ENCLAVE_LEGACY]
            }
            DeviceNodeKind::Provision | DeviceNodeKind::LegacyProvision => {
                &[names::DEV_SGX_PROVISION, names::DEV_SGX_PROVISION_LEGACY]
            }
            DeviceNodeKind::Isgx => &["/dev/isgx"],
        };
        container_paths
            .iter()
            .map(|c| DeviceSpec {
                container_path: (*c).to_owned(),
                host_path: self.host_path.to_string_lossy().into_owned(),
                permissions: DEVICE_PERMISSIONS.to_owned(),
            })
            .collect()
    }
}

/// One served resource: its kind, how many devices and the host node behind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    /// Which resource.
    pub kind: ResourceKind,
    /// Number of devices (slots, or MiB).
    pub count: u64,
    /// The host node Allocate hands out.
    pub node: HostNode,
}

impl ResourceSpec {
    /// Device ID of device `index`.
    #[must_use]
    pub fn device_id(&self, index: u64) -> String {
        match self.kind {
            ResourceKind::Enclave => format!("enclave-{index}"),
            ResourceKind::Provision => format!("provision-{index}"),
            ResourceKind::EpcMib => ids::compact_id(index),
        }
    }

    /// Whether `id` names one of this resource's devices.
    #[must_use]
    pub fn is_known_id(&self, id: &str) -> bool {
        let slot = |prefix: &str| {
            id.strip_prefix(prefix)
                .filter(|n| !n.starts_with('0') || *n == "0")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n < self.count)
        };
        match self.kind {
            ResourceKind::Enclave => slot("enclave-"),
            ResourceKind::Provision => slot("provision-"),
            ResourceKind::EpcMib => ids::parse_compact_id(id, self.count).is_some(),
        }
    }

    /// The Allocate answer for one container asking for `ids`.
    ///
    /// # Errors
    /// [`Error::UnknownDevice`] for an ID this resource never advertised (the first one),
    /// [`Error::Unhealthy`] when the host node is missing right now.
    pub fn allocate(
        &self,
        ids: &[String],
        healthy: bool,
    ) -> Result<ContainerAllocateResponse, Error> {
        if let Some(bad) = ids.iter().find(|id| !self.is_known_id(id)) {
            return Err(Error::UnknownDevice {
                resource: self.kind.resource_name(),
                id: bad.chars().take(kubelet_api::MAX_DEVICE_ID_LEN).collect(),
            });
        }
        if !healthy {
            return Err(Error::Unhealthy {
                resource: self.kind.resource_name(),
                path: self.node.host_path.clone(),
            });
        }
        let mut seen = BTreeSet::new();
        let devices = self
            .node
            .device_specs()
            .into_iter()
            .filter(|d| seen.insert(d.container_path.clone()))
            .collect();
        Ok(ContainerAllocateResponse {
            devices,
            ..ContainerAllocateResponse::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: ResourceKind, count: u64) -> ResourceSpec {
        let node = HostNode {
            kind: if kind == ResourceKind::Provision {
                DeviceNodeKind::Provision
            } else {
                DeviceNodeKind::Enclave
            },
            host_path: PathBuf::from(if kind == ResourceKind::Provision {
                "/dev/sgx_provision"
            } else {
                "/dev/sgx_enclave"
            }),
            probe_path: PathBuf::from("/x"),
        };
        ResourceSpec { kind, count, node }
    }

    #[test]
    fn socket_names_follow_the_resource() {
        assert_eq!(
            ResourceKind::Enclave.socket_name(),
            "sgx.intel.com-enclave.sock"
        );
        assert_eq!(
            ResourceKind::EpcMib.socket_name(),
            "kubernetes.azure.com-sgx_epc_mem_in_MiB.sock"
        );
    }

    #[test]
    fn enclave_allocation_has_upstream_and_legacy_paths() {
        let s = spec(ResourceKind::Enclave, 110);
        let r = s
            .allocate(&["enclave-0".into(), "enclave-109".into()], true)
            .unwrap();
        let got: Vec<_> = r
            .devices
            .iter()
            .map(|d| {
                (
                    d.container_path.as_str(),
                    d.host_path.as_str(),
                    d.permissions.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("/dev/sgx_enclave", "/dev/sgx_enclave", "rw"),
                ("/dev/sgx/enclave", "/dev/sgx_enclave", "rw")
            ]
        );
        assert!(r.envs.is_empty() && r.mounts.is_empty());
    }

    #[test]
    fn unknown_and_out_of_range_ids_are_rejected() {
        let s = spec(ResourceKind::Provision, 2);
        for bad in ["provision-2", "provision-01", "enclave-0", "", "provision-"] {
            let e = s.allocate(&[bad.into()], true).unwrap_err();
            assert!(matches!(e, Error::UnknownDevice { .. }), "{bad}: {e}");
        }
        let e = s.allocate(&["provision-1".into()], false).unwrap_err();
        assert!(matches!(e, Error::Unhealthy { .. }));
    }

    #[test]
    fn mib_devices_use_compact_ids() {
        let s = spec(ResourceKind::EpcMib, 64);
        assert_eq!(s.device_id(63), "_");
        assert!(s.is_known_id("_"));
        assert!(!s.is_known_id("00"));
        let r = s
            .allocate(&["0".into(), "1".into(), "a".into()], true)
            .unwrap();
        assert_eq!(r.devices.len(), 2);
    }

    #[test]
    fn dcap_driver_node_is_mapped_to_both_container_paths() {
        let n = HostNode {
            kind: DeviceNodeKind::LegacyEnclave,
            host_path: PathBuf::from("/dev/sgx/enclave"),
            probe_path: PathBuf::from("/dev/sgx/enclave"),
        };
        let specs = n.device_specs();
        assert_eq!(specs[0].container_path, "/dev/sgx_enclave");
        assert!(specs.iter().all(|d| d.host_path == "/dev/sgx/enclave"));
    }
}
