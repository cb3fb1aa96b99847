//! What a [`crate::Platform`] found on the node.

use crate::size::format_size;
use crate::{DeviceNodes, DriverKind, SgxCpuInfo};

/// Which implementation produced a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlatformKind {
    /// The real CPU and device nodes.
    Host,
    /// Simulation: nothing here is backed by hardware.
    Sim,
}

/// Where the EPC size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EpcSource {
    /// CPUID leaf 0x12 EPC sections.
    Cpuid,
    /// `/sys/devices/system/node/node*/x86/sgx_total_bytes` (CPUID enumerated none).
    Sysfs,
    /// No EPC anywhere.
    None,
}

impl std::fmt::Display for EpcSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpuid => "cpuid",
            Self::Sysfs => "sysfs",
            Self::None => "none",
        })
    }
}

/// EPC bytes the kernel reports for one NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SysfsNodeEpc {
    /// The NUMA node number (from `nodeN`).
    pub node: u32,
    /// `x86/sgx_total_bytes`.
    pub bytes: u64,
}

/// Everything known about SGX on one node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlatformReport {
    /// Host or simulation.
    pub platform: PlatformKind,
    /// The CPUID decoding.
    pub cpu: SgxCpuInfo,
    /// Per-NUMA-node EPC from sysfs (empty when the kernel exposes none).
    pub sysfs_epc: Vec<SysfsNodeEpc>,
    /// Device nodes.
    pub devices: DeviceNodes,
    /// The driver kind.
    pub driver: DriverKind,
}

impl PlatformReport {
    /// Sum of the sysfs per-node totals, if the kernel exposes any.
    #[must_use]
    pub fn sysfs_total_bytes(&self) -> Option<u64> {
        if self.sysfs_epc.is_empty() {
            return None;
        }
        Some(
            self.sysfs_epc
                .iter()
                .fold(0u64, |a, n| a.saturating_add(n.bytes)),
        )
    }

    /// The EPC size: the CPUID sum, or the sysfs sum when CPUID enumerates no section.
    #[must_use]
    pub fn epc_bytes(&self) -> u64 {
        match self.epc_source() {
            EpcSource::Cpuid => self.cpu.epc_total_bytes(),
            EpcSource::Sysfs => self.sysfs_total_bytes().unwrap_or(0),
            EpcSource::None => 0,
        }
    }

    /// Where [`PlatformReport::epc_bytes`] comes from.
    #[must_use]
    pub fn epc_source(&self) -> EpcSource {
        if self.cpu.epc_total_bytes() > 0 {
            EpcSource::Cpuid
        } else if self.sysfs_total_bytes().is_some_and(|b| b > 0) {
            EpcSource::Sysfs
        } else {
            EpcSource::None
        }
    }

    /// Whether CPUID and sysfs disagree on the EPC size (both present and different).
    #[must_use]
    pub fn epc_mismatch(&self) -> bool {
        let cpuid = self.cpu.epc_total_bytes();
        self.sysfs_total_bytes()
            .is_some_and(|s| cpuid > 0 && s != cpuid)
    }

    /// Whether the node can run enclaves: EPC exists and an enclave device node is present.
    #[must_use]
    pub fn sgx_usable(&self) -> bool {
        self.epc_bytes() > 0 && self.devices.enclave().is_some()
    }

    /// Whether the node has SGX at all (EPC enumerated), device nodes or not.
    #[must_use]
    pub fn sgx_capable(&self) -> bool {
        self.epc_bytes() > 0
    }

    /// One plain sentence for people and logs.
    #[must_use]
    pub fn summary(&self) -> String {
        let sim = if self.platform == PlatformKind::Sim {
            " (simulated)"
        } else {
            ""
        };
        if !self.cpu.sgx && self.epc_bytes() == 0 {
            return format!("no SGX: this CPU does not support Intel SGX{sim}");
        }
        if self.epc_bytes() == 0 {
            return format!(
                "no SGX: the CPU supports SGX but it is disabled (no EPC enumerated; check the BIOS){sim}"
            );
        }
        let flc = if self.cpu.sgx_lc { ", FLC" } else { "" };
        let gen2 = if self.cpu.sgx2 { "SGX2" } else { "SGX1" };
        match self.devices.enclave() {
            Some(n) => format!(
                "SGX available{sim}: {gen2}{flc}, EPC {}, driver {}, enclave device {}",
                format_size(self.epc_bytes()),
                self.driver,
                n.host_path.display()
            ),
            None => format!(
                "SGX enabled but unusable{sim}: {gen2}{flc}, EPC {}, but no SGX device node (is the driver loaded?)",
                format_size(self.epc_bytes())
            ),
        }
    }
}
