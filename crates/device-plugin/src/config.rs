//! Validated configuration of the device plugin (built from the CLI before any socket is
//! bound).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::lifecycle::{Backoff, Timing};
use crate::registrar::RegistrarTiming;

/// Which resources to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// `sgx.intel.com/enclave` and `sgx.intel.com/provision` (EPC via the node registrar).
    Intel,
    /// Intel's plus Azure gen-1 `kubernetes.azure.com/sgx_epc_mem_in_MiB` as one device per MiB.
    Azure,
}

/// How the plugin makes itself known to the kubelet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Registration {
    /// Call `Registration.Register` on `kubelet.sock` in the device plugin directory, and
    /// again after every kubelet restart (which wipes that directory).
    #[default]
    Kubelet,
    /// Serve the plugin registration service on a socket in the plugin-watcher directory;
    /// the kubelet finds the socket, registers the plugin itself and does so again after its
    /// own restarts (see the `plugin_watcher` module).
    PluginWatcher,
}

/// Where SGX facts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformConfig {
    /// The real node.
    Host {
        /// The host's `/dev` as this process sees it.
        dev_root: PathBuf,
        /// The host's `/sys` as this process sees it.
        sys_root: PathBuf,
    },
    /// A simulated node.
    Sim {
        /// EPC size in bytes.
        epc_bytes: u64,
        /// Directory of the simulated device nodes (created at start).
        dev_dir: PathBuf,
        /// Host device handed to containers instead of the simulated files, which exist
        /// only inside this process's file system (`/dev/null` by default on the command
        /// line: a real character device the container runtime can map on any node).
        host_device: Option<PathBuf>,
    },
}

/// Node registrar settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterNode {
    /// Name of this process's Node.
    pub node_name: String,
    /// Timings.
    pub timing: RegistrarTiming,
}

/// Timings of the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Re-check interval of the device nodes (inotify reacts sooner).
    pub health_poll: Duration,
    /// Re-check interval of the kubelet directory (inotify reacts sooner).
    pub dir_poll: Duration,
    /// Registration timing.
    pub lifecycle: Timing,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            health_poll: Duration::from_secs(1),
            dir_poll: Duration::from_secs(1),
            lifecycle: Timing {
                backoff: Backoff {
                    initial: Duration::from_millis(250),
                    max: Duration::from_secs(30),
                },
                register_timeout: Duration::from_secs(5),
            },
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The kubelet's device plugin directory (classic registration).
    pub kubelet_dir: PathBuf,
    /// How to register with the kubelet.
    pub registration: Registration,
    /// The kubelet's plugin-watcher directory (plugin-watcher registration), as mounted at
    /// the same path as on the host: the kubelet dials the socket path this process reports.
    pub plugins_registry: PathBuf,
    /// Platform.
    pub platform: PlatformConfig,
    /// Profile.
    pub profile: Profile,
    /// Shared slots of `sgx.intel.com/enclave`.
    pub enclave_limit: u64,
    /// Shared slots of `sgx.intel.com/provision`.
    pub provision_limit: u64,
    /// Node registrar, when enabled.
    pub register_node: Option<RegisterNode>,
    /// Write labels to an NFD feature file in this directory instead of the Node.
    pub nfd_features_dir: Option<PathBuf>,
    /// Probe and metrics endpoint.
    pub probe_addr: Option<SocketAddr>,
    /// Largest `ListAndWatch` message (the kubelet's receive limit).
    pub max_message_bytes: u64,
    /// Timings.
    pub timings: Timings,
}

impl Config {
    /// A configuration with defaults for everything but the platform and directory (tests).
    #[must_use]
    pub fn new(kubelet_dir: PathBuf, platform: PlatformConfig) -> Self {
        Self {
            kubelet_dir,
            registration: Registration::Kubelet,
            plugins_registry: PathBuf::from(kubelet_api::PLUGINS_REGISTRY_PATH),
            platform,
            profile: Profile::Intel,
            enclave_limit: 110,
            provision_limit: 110,
            register_node: None,
            nfd_features_dir: None,
            probe_addr: None,
            max_message_bytes: kubelet_api::KUBELET_MAX_RECV_MESSAGE_BYTES as u64,
            timings: Timings::default(),
        }
    }
}
