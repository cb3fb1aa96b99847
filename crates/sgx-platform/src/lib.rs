//! SGX platform facts for one node: pure CPUID decoding of the SGX leaves (7 and 0x12), the
//! EPC size, the SGX device nodes and the driver that provides them.
//!
//! The decoding in [`cpuid`] is pure: it reads register values through the [`CpuidSource`]
//! trait and does no IO, so it is tested on register dumps of real CPUs. The [`Platform`]
//! trait is the IO boundary, with two implementations:
//!
//! - [`HostPlatform`]: the real CPU (`cpuid` instruction), `/sys` and `/dev`, with both roots
//!   configurable so tests point them at a temp dir;
//! - [`SimPlatform`]: a configured EPC size and device nodes that are plain files in a
//!   directory, for machines without SGX (CI, kind clusters).
//!
//! This crate does not talk to Kubernetes or the kubelet and does not open the device nodes.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::as_conversions,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod cpuid;
pub mod devices;
mod error;
pub mod host;
pub mod report;
pub mod sim;
pub mod size;

pub use cpuid::{CpuidRegs, CpuidSource, CpuidTable, EpcProtection, EpcSection, SgxCpuInfo};
pub use devices::{DeviceNode, DeviceNodeKind, DeviceNodes, DriverKind};
pub use error::{Error, Result};
pub use host::HostPlatform;
pub use report::{EpcSource, PlatformKind, PlatformReport};
pub use sim::SimPlatform;
pub use size::parse_size;

use std::path::PathBuf;

/// The IO boundary for SGX facts of the node this process runs on.
pub trait Platform: Send + Sync + std::fmt::Debug {
    /// Everything known about the node: CPUID decoding, sysfs EPC totals, device nodes and
    /// the driver kind.
    fn probe(&self) -> Result<PlatformReport>;

    /// The SGX device nodes as they are now (cheap: one `stat` per node); used for health.
    fn device_nodes(&self) -> DeviceNodes;

    /// Directories whose entries decide [`Platform::device_nodes`]; watched for changes.
    fn watch_dirs(&self) -> Vec<PathBuf>;
}
