//! A simulated SGX node: configured EPC, device nodes as plain files in a directory.

use std::path::PathBuf;

use crate::cpuid::{self, encode_section};
use crate::{
    CpuidRegs, CpuidTable, DeviceNodeKind, DeviceNodes, DriverKind, EpcProtection, EpcSection,
    Error, Platform, PlatformKind, PlatformReport, Result,
};

/// Physical base of the first simulated EPC section (where Ice Lake-SP puts socket 0's).
const SIM_EPC_BASE: u64 = 0x80_00c0_0000;

/// A simulated node. Its CPUID values go through the same decoder as real ones.
#[derive(Debug, Clone)]
pub struct SimPlatform {
    epc_bytes: u64,
    dev_dir: PathBuf,
}

impl SimPlatform {
    /// A node with `epc_bytes` of EPC (rounded down to 4 KiB pages) whose device nodes live
    /// in `dev_dir` (as `sgx_enclave`, `sgx_provision`).
    #[must_use]
    pub fn new(epc_bytes: u64, dev_dir: impl Into<PathBuf>) -> Self {
        Self {
            epc_bytes: epc_bytes & !0xfff,
            dev_dir: dev_dir.into(),
        }
    }

    /// The directory of the simulated device nodes.
    #[must_use]
    pub fn dev_dir(&self) -> &std::path::Path {
        &self.dev_dir
    }

    /// Creates the flat device node files (`sgx_enclave`, `sgx_provision`) if missing.
    ///
    /// # Errors
    /// [`Error::SimDevice`] when the directory or a file cannot be created.
    pub fn create_device_nodes(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dev_dir).map_err(|source| Error::SimDevice {
            path: self.dev_dir.clone(),
            source,
        })?;
        for kind in [DeviceNodeKind::Enclave, DeviceNodeKind::Provision] {
            let path = self.dev_dir.join(kind.rel_path());
            if !path.exists() {
                std::fs::write(&path, b"").map_err(|source| Error::SimDevice { path, source })?;
            }
        }
        Ok(())
    }

    /// The CPUID values this node answers with: an SGX2 + FLC part with one EPC section.
    #[must_use]
    pub fn cpuid_table(&self) -> CpuidTable {
        let mut entries = vec![
            (
                0x0,
                0,
                CpuidRegs::new(0x1b, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
            ),
            (0x7, 0, CpuidRegs::new(0, 1 << 2, 1 << 30, 0)),
            (0x12, 0, CpuidRegs::new(0x3, 0, 0, 0x381f)),
        ];
        if self.epc_bytes > 0 {
            entries.push((
                0x12,
                2,
                encode_section(&EpcSection {
                    base: SIM_EPC_BASE,
                    size: self.epc_bytes,
                    protection: EpcProtection::ConfidentialityOnly,
                }),
            ));
        }
        CpuidTable::new(entries)
    }
}

impl Platform for SimPlatform {
    fn probe(&self) -> Result<PlatformReport> {
        let cpu = cpuid::decode(&self.cpuid_table())?;
        let devices = self.device_nodes();
        let driver = DriverKind::classify(&devices, false);
        Ok(PlatformReport {
            platform: PlatformKind::Sim,
            cpu,
            sysfs_epc: Vec::new(),
            devices,
            driver,
        })
    }

    fn device_nodes(&self) -> DeviceNodes {
        DeviceNodes::probe(&self.dev_dir, &self.dev_dir)
    }

    fn watch_dirs(&self) -> Vec<PathBuf> {
        vec![self.dev_dir.clone(), self.dev_dir.join("sgx")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_node_reports_configured_epc_and_file_device_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimPlatform::new(256 << 30, dir.path().join("dev"));
        let before = sim.probe().unwrap();
        assert!(before.sgx_capable() && !before.sgx_usable());
        sim.create_device_nodes().unwrap();
        let r = sim.probe().unwrap();
        assert_eq!(r.platform, PlatformKind::Sim);
        assert_eq!(r.epc_bytes(), 256 << 30);
        assert!(r.cpu.sgx2 && r.cpu.sgx_lc);
        assert_eq!(r.driver, DriverKind::InKernel);
        let e = r.devices.enclave().unwrap();
        assert_eq!(e.host_path, dir.path().join("dev/sgx_enclave"));
        assert!(r.summary().contains("(simulated)"));
        std::fs::remove_file(dir.path().join("dev/sgx_enclave")).unwrap();
        assert!(sim.device_nodes().enclave().is_none());
    }

    #[test]
    fn zero_epc_sim_is_disabled_sgx() {
        let dir = tempfile::tempdir().unwrap();
        let r = SimPlatform::new(0, dir.path()).probe().unwrap();
        assert!(!r.sgx_capable());
        assert!(
            r.summary()
                .starts_with("no SGX: the CPU supports SGX but it is disabled")
        );
    }
}
