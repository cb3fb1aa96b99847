//! The real node: the `cpuid` instruction, `/sys` and `/dev` (roots configurable).

use std::path::{Path, PathBuf};

use crate::report::SysfsNodeEpc;
use crate::{
    CpuidRegs, CpuidSource, DeviceNodes, DriverKind, Error, Platform, PlatformKind, PlatformReport,
    Result, cpuid,
};

/// Where the host's `/dev` is as the kubelet and container runtime see it.
pub const HOST_DEV: &str = "/dev";

/// The `cpuid` instruction of the CPU this process runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeCpuid;

impl CpuidSource for NativeCpuid {
    #[cfg(target_arch = "x86_64")]
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        CpuidRegs::new(r.eax, r.ebx, r.ecx, r.edx)
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn cpuid(&self, _leaf: u32, _subleaf: u32) -> CpuidRegs {
        CpuidRegs::default()
    }
}

/// The host platform.
pub struct HostPlatform {
    dev_root: PathBuf,
    sys_root: PathBuf,
    cpuid: Box<dyn CpuidSource + Send + Sync>,
}

impl std::fmt::Debug for HostPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPlatform")
            .field("dev_root", &self.dev_root)
            .field("sys_root", &self.sys_root)
            .finish_non_exhaustive()
    }
}

impl HostPlatform {
    /// The real CPU, with `/dev` at `dev_root` and `/sys` at `sys_root` (`/dev`, `/sys` on a
    /// node; e.g. `/host/dev` when the host's directories are mounted elsewhere).
    #[must_use]
    pub fn new(dev_root: impl Into<PathBuf>, sys_root: impl Into<PathBuf>) -> Self {
        Self::with_cpuid(dev_root, sys_root, NativeCpuid)
    }

    /// Like [`HostPlatform::new`] with recorded CPUID values (tests).
    #[must_use]
    pub fn with_cpuid(
        dev_root: impl Into<PathBuf>,
        sys_root: impl Into<PathBuf>,
        cpuid: impl CpuidSource + Send + Sync + 'static,
    ) -> Self {
        Self {
            dev_root: dev_root.into(),
            sys_root: sys_root.into(),
            cpuid: Box::new(cpuid),
        }
    }
}

/// Reads `node*/x86/sgx_total_bytes` below `<sys_root>/devices/system/node`.
///
/// # Errors
/// [`Error::Sysfs`] / [`Error::SysfsContent`] for a file that exists but cannot be read or
/// parsed; a missing directory or file is not an error (older kernels, non-SGX nodes).
pub fn read_sysfs_epc(sys_root: &Path) -> Result<Vec<SysfsNodeEpc>> {
    let dir = sys_root.join("devices/system/node");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(node) = name
            .to_str()
            .and_then(|n| n.strip_prefix("node"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path().join("x86/sgx_total_bytes");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::Sysfs { path, source }),
        };
        let bytes = text
            .trim()
            .parse::<u64>()
            .map_err(|_| Error::SysfsContent {
                path: path.clone(),
                content: text.trim().chars().take(64).collect(),
            })?;
        out.push(SysfsNodeEpc { node, bytes });
    }
    out.sort_by_key(|n| n.node);
    Ok(out)
}

impl Platform for HostPlatform {
    fn probe(&self) -> Result<PlatformReport> {
        let cpu = cpuid::decode(&*self.cpuid)?;
        let sysfs_epc = read_sysfs_epc(&self.sys_root)?;
        let devices = self.device_nodes();
        let dcap = self.sys_root.join("module/intel_sgx").exists();
        let driver = DriverKind::classify(&devices, dcap);
        Ok(PlatformReport {
            platform: PlatformKind::Host,
            cpu,
            sysfs_epc,
            devices,
            driver,
        })
    }

    fn device_nodes(&self) -> DeviceNodes {
        DeviceNodes::probe(&self.dev_root, Path::new(HOST_DEV))
    }

    fn watch_dirs(&self) -> Vec<PathBuf> {
        vec![self.dev_root.clone(), self.dev_root.join("sgx")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuidTable, DeviceNodeKind, EpcSource};

    fn sgx_cpu(epc: u32) -> CpuidTable {
        CpuidTable::new(vec![
            (0x0, 0, CpuidRegs::new(0x1b, 0, 0, 0)),
            (0x7, 0, CpuidRegs::new(0, 0x4, 0x4000_0000, 0)),
            (0x12, 0, CpuidRegs::new(0x3, 0, 0, 0x381f)),
            (0x12, 2, CpuidRegs::new(0x0020_0001, 0x80, epc | 1, 0)),
        ])
    }

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }

    #[test]
    fn in_kernel_node_with_sysfs_cross_check() {
        let dev = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        touch(&dev.path().join("sgx_enclave"));
        touch(&dev.path().join("sgx_provision"));
        for (n, b) in [(0, "33554432\n"), (1, "33554432\n")] {
            let p = sys
                .path()
                .join(format!("devices/system/node/node{n}/x86/sgx_total_bytes"));
            touch(&p);
            std::fs::write(&p, b).unwrap();
        }
        std::fs::create_dir_all(sys.path().join("devices/system/node/possible")).unwrap();
        let p = HostPlatform::with_cpuid(dev.path(), sys.path(), sgx_cpu(0x0400_0000));
        let r = p.probe().unwrap();
        assert_eq!(r.driver, DriverKind::InKernel);
        assert_eq!(r.epc_bytes(), 64 << 20);
        assert_eq!(r.epc_source(), EpcSource::Cpuid);
        assert_eq!(r.sysfs_total_bytes(), Some(64 << 20));
        assert!(!r.epc_mismatch());
        assert!(r.sgx_usable());
        let enclave = r.devices.enclave().unwrap();
        assert_eq!(enclave.host_path, Path::new("/dev/sgx_enclave"));
        assert_eq!(enclave.probe_path, dev.path().join("sgx_enclave"));
        assert!(
            r.summary()
                .starts_with("SGX available: SGX2, FLC, EPC 64 MiB, driver in-kernel"),
            "{}",
            r.summary()
        );
    }

    #[test]
    fn dcap_driver_legacy_names_and_mismatch() {
        let dev = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        touch(&dev.path().join("sgx/enclave"));
        touch(&dev.path().join("sgx/provision"));
        std::fs::create_dir_all(sys.path().join("module/intel_sgx")).unwrap();
        let p0 = sys
            .path()
            .join("devices/system/node/node0/x86/sgx_total_bytes");
        touch(&p0);
        std::fs::write(&p0, "1000\n").unwrap();
        let p = HostPlatform::with_cpuid(dev.path(), sys.path(), sgx_cpu(0x0400_0000));
        let r = p.probe().unwrap();
        assert_eq!(r.driver, DriverKind::OutOfTreeDcap);
        assert_eq!(
            r.devices.enclave().unwrap().kind,
            DeviceNodeKind::LegacyEnclave
        );
        assert_eq!(
            r.devices.provision().unwrap().host_path,
            Path::new("/dev/sgx/provision")
        );
        assert!(r.epc_mismatch());
    }

    #[test]
    fn isgx_is_legacy_and_sysfs_garbage_is_an_error() {
        let dev = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        touch(&dev.path().join("isgx"));
        let p = HostPlatform::with_cpuid(dev.path(), sys.path(), sgx_cpu(0x0400_0000));
        let r = p.probe().unwrap();
        assert_eq!(r.driver, DriverKind::LegacyIsgx);
        assert!(r.devices.provision().is_none());
        let p0 = sys
            .path()
            .join("devices/system/node/node0/x86/sgx_total_bytes");
        touch(&p0);
        std::fs::write(&p0, "lots").unwrap();
        assert!(matches!(p.probe(), Err(Error::SysfsContent { .. })));
    }

    #[test]
    fn no_sgx_on_empty_roots() {
        let dev = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        let p = HostPlatform::with_cpuid(dev.path(), sys.path(), CpuidTable::default());
        let r = p.probe().unwrap();
        assert_eq!(r.driver, DriverKind::None);
        assert!(!r.sgx_capable());
        assert_eq!(r.summary(), "no SGX: this CPU does not support Intel SGX");
    }

    #[test]
    fn sysfs_only_epc_is_used_when_cpuid_has_none() {
        let dev = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        let p0 = sys
            .path()
            .join("devices/system/node/node0/x86/sgx_total_bytes");
        touch(&p0);
        std::fs::write(&p0, "8388608").unwrap();
        let p = HostPlatform::with_cpuid(dev.path(), sys.path(), CpuidTable::default());
        let r = p.probe().unwrap();
        assert_eq!(r.epc_source(), EpcSource::Sysfs);
        assert_eq!(r.epc_bytes(), 8 << 20);
        assert!(!r.sgx_usable());
    }

    #[test]
    fn the_real_cpu_decodes() {
        // Whatever this machine is, decoding its CPUID must not fail.
        let dev = tempfile::tempdir().unwrap();
        let r = HostPlatform::new(dev.path(), dev.path()).probe().unwrap();
        assert_eq!(r.platform, PlatformKind::Host);
    }
}
