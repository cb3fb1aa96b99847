//! SGX device nodes and the driver that provides them.

use std::path::{Path, PathBuf};

/// One kind of SGX device node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceNodeKind {
    /// `/dev/sgx_enclave`: in-kernel driver (Linux ≥ 5.11) and DCAP driver ≥ 1.41.
    Enclave,
    /// `/dev/sgx_provision`: access to the PROVISIONKEY attribute (quoting enclaves).
    Provision,
    /// `/dev/sgx/enclave`: out-of-tree DCAP driver before 1.41, or a udev compatibility link.
    LegacyEnclave,
    /// `/dev/sgx/provision`: legacy name of the provisioning node.
    LegacyProvision,
    /// `/dev/isgx`: the out-of-tree SGX1 driver (linux-sgx-driver, EPID era).
    Isgx,
}

impl DeviceNodeKind {
    /// Every kind, in probing order.
    pub const ALL: [Self; 5] = [
        Self::Enclave,
        Self::Provision,
        Self::LegacyEnclave,
        Self::LegacyProvision,
        Self::Isgx,
    ];

    /// Path below the device root (`/dev`).
    #[must_use]
    pub const fn rel_path(self) -> &'static str {
        match self {
            Self::Enclave => "sgx_enclave",
            Self::Provision => "sgx_provision",
            Self::LegacyEnclave => "sgx/enclave",
            Self::LegacyProvision => "sgx/provision",
            Self::Isgx => "isgx",
        }
    }

    /// Whether this is a legacy (pre-upstream) name.
    #[must_use]
    pub const fn is_legacy(self) -> bool {
        matches!(
            self,
            Self::LegacyEnclave | Self::LegacyProvision | Self::Isgx
        )
    }
}

/// One device node: where it is on the host and where this process looks for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceNode {
    /// Which node.
    pub kind: DeviceNodeKind,
    /// Path as the host (kubelet, container runtime) sees it, e.g. `/dev/sgx_enclave`.
    pub host_path: PathBuf,
    /// Path this process checks (below `--dev-root`; equal to `host_path` by default).
    pub probe_path: PathBuf,
    /// Whether it exists now.
    pub present: bool,
}

/// All SGX device nodes of a node.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(transparent)]
pub struct DeviceNodes {
    /// One entry per [`DeviceNodeKind`].
    pub nodes: Vec<DeviceNode>,
}

impl DeviceNodes {
    /// Checks every node below `probe_root`; `host_root` is the same directory as the host
    /// sees it (`/dev`).
    #[must_use]
    pub fn probe(probe_root: &Path, host_root: &Path) -> Self {
        let nodes = DeviceNodeKind::ALL
            .iter()
            .map(|&kind| {
                let probe_path = probe_root.join(kind.rel_path());
                DeviceNode {
                    kind,
                    host_path: host_root.join(kind.rel_path()),
                    present: probe_path.exists(),
                    probe_path,
                }
            })
            .collect();
        Self { nodes }
    }

    /// The entry for `kind`.
    #[must_use]
    pub fn get(&self, kind: DeviceNodeKind) -> Option<&DeviceNode> {
        self.nodes.iter().find(|n| n.kind == kind)
    }

    /// Whether `kind` exists.
    #[must_use]
    pub fn is_present(&self, kind: DeviceNodeKind) -> bool {
        self.get(kind).is_some_and(|n| n.present)
    }

    /// The node that creates enclaves: `/dev/sgx_enclave`, else `/dev/sgx/enclave`, else
    /// `/dev/isgx`, whichever exists first.
    #[must_use]
    pub fn enclave(&self) -> Option<&DeviceNode> {
        [
            DeviceNodeKind::Enclave,
            DeviceNodeKind::LegacyEnclave,
            DeviceNodeKind::Isgx,
        ]
        .iter()
        .filter_map(|&k| self.get(k))
        .find(|n| n.present)
    }

    /// The provisioning node: `/dev/sgx_provision`, else `/dev/sgx/provision`.
    #[must_use]
    pub fn provision(&self) -> Option<&DeviceNode> {
        [DeviceNodeKind::Provision, DeviceNodeKind::LegacyProvision]
            .iter()
            .filter_map(|&k| self.get(k))
            .find(|n| n.present)
    }
}

/// The driver that provides the device nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriverKind {
    /// The upstream Linux driver (5.11+): `/dev/sgx_enclave`, no `intel_sgx` module.
    InKernel,
    /// Intel's out-of-tree DCAP driver (module `intel_sgx`), `/dev/sgx/enclave` or, from 1.41,
    /// `/dev/sgx_enclave`.
    OutOfTreeDcap,
    /// The legacy out-of-tree SGX1 driver (`/dev/isgx`, module `isgx`).
    LegacyIsgx,
    /// No SGX device node exists.
    None,
}

impl DriverKind {
    /// Classifies the driver from the device nodes and whether the out-of-tree DCAP module
    /// (`/sys/module/intel_sgx`) is loaded.
    #[must_use]
    pub fn classify(nodes: &DeviceNodes, dcap_module_loaded: bool) -> Self {
        let flat = nodes.is_present(DeviceNodeKind::Enclave);
        let dir = nodes.is_present(DeviceNodeKind::LegacyEnclave);
        if (flat || dir) && dcap_module_loaded {
            Self::OutOfTreeDcap
        } else if flat {
            Self::InKernel
        } else if dir {
            Self::OutOfTreeDcap
        } else if nodes.is_present(DeviceNodeKind::Isgx) {
            Self::LegacyIsgx
        } else {
            Self::None
        }
    }
}

impl std::fmt::Display for DriverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::InKernel => "in-kernel",
            Self::OutOfTreeDcap => "out-of-tree DCAP",
            Self::LegacyIsgx => "legacy isgx",
            Self::None => "none",
        })
    }
}
