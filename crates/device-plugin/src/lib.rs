//! Kubelet device plugin for Intel SGX, plus the node registrar.
//!
//! What it does, in one process (`confcom device-plugin`):
//! - serves the kubelet device plugin API v1beta1 ([`kubelet_api`]) over unix sockets for
//!   `sgx.intel.com/enclave` and `sgx.intel.com/provision` (shared slots) and, in the Azure
//!   profile, `kubernetes.azure.com/sgx_epc_mem_in_MiB` (one device per MiB, compact IDs,
//!   see [`ids`]); Allocate hands out the SGX device nodes ([`resource`]);
//! - watches the device nodes and reports health ([`watch`]);
//! - registers each resource with the kubelet, either the classic way on `kubelet.sock`
//!   following the kubelet through restarts ([`lifecycle`], an explicit state machine), or
//!   through the kubelet's plugin watcher ([`plugin_watcher`]);
//! - optionally publishes `sgx.intel.com/epc` and SGX labels on its Node ([`registrar`]).
//!
//! What it is not: it does not decode CPUID itself ([`sgx_platform`] does) and holds no
//! Kubernetes naming rules ([`sgx_k8s`] does).

pub mod cli;
pub mod config;
mod error;
pub mod ids;
pub mod lifecycle;
pub mod metrics;
pub mod plugin_watcher;
pub mod registrar;
pub mod resource;
pub mod service;
#[doc(hidden)]
pub mod testing;
pub mod uds;
pub mod watch;

use std::sync::Arc;

pub use config::{Config, PlatformConfig, Profile, Registration};
pub use error::{Error, Result};

use resource::{HostNode, ResourceKind, ResourceSpec};
use sgx_platform::{Platform, PlatformReport};
use tokio::sync::watch as wch;

/// `a: b: c` for an error and its sources.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Builds the platform a configuration names (creating simulated device nodes).
///
/// # Errors
/// [`Error::Platform`] when the simulated device directory cannot be created.
pub fn platform(config: &PlatformConfig) -> Result<Arc<dyn Platform>> {
    Ok(match config {
        PlatformConfig::Host { dev_root, sys_root } => {
            Arc::new(sgx_platform::HostPlatform::new(dev_root, sys_root))
        }
        PlatformConfig::Sim {
            epc_bytes, dev_dir, ..
        } => {
            let sim = sgx_platform::SimPlatform::new(*epc_bytes, dev_dir);
            sim.create_device_nodes().map_err(Error::Platform)?;
            Arc::new(sim)
        }
    })
}

/// `/readyz`: ready once every served resource is registered with the kubelet (at once on a
/// node without SGX, where nothing is served).
#[derive(Clone, Default)]
pub struct Readiness {
    probes: Option<confcom_runtime::Probes>,
    registered: Arc<std::sync::Mutex<std::collections::BTreeMap<ResourceKind, bool>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

impl Readiness {
    /// Readiness over `probes` for the given resources (none registered yet).
    #[must_use]
    pub fn new(probes: Option<confcom_runtime::Probes>, resources: &[ResourceKind]) -> Self {
        let r = Self {
            probes,
            registered: Arc::new(std::sync::Mutex::new(
                resources.iter().map(|k| (*k, false)).collect(),
            )),
        };
        r.publish();
        r
    }

    /// Records whether `kind` is registered.
    pub fn set(&self, kind: ResourceKind, registered: bool) {
        if let Ok(mut m) = self.registered.lock() {
            m.insert(kind, registered);
        }
        self.publish();
    }

    /// Whether every resource is registered.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.registered
            .lock()
            .map(|m| m.values().all(|r| *r))
            .unwrap_or(false)
    }

    fn publish(&self) {
        if let Some(p) = &self.probes {
            p.set_ready(self.is_ready());
        }
    }
}

/// What the plugin decided to serve for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Device plugin resources.
    pub resources: Vec<ResourceSpec>,
    /// Whether the Azure MiB resource goes to Node status instead (too many devices).
    pub publish_mib_via_registrar: bool,
}

/// Decides the resources for `report` (pure).
#[must_use]
pub fn plan(config: &Config, report: &PlatformReport) -> Plan {
    let mut resources = Vec::new();
    let mut publish_mib_via_registrar = false;
    if !report.sgx_capable() {
        return Plan {
            resources,
            publish_mib_via_registrar,
        };
    }
    let mut enclave = HostNode::pick(resource::NodeRole::Enclave, &report.devices);
    let mut provision = HostNode::pick(resource::NodeRole::Provision, &report.devices);
    if let PlatformConfig::Sim {
        host_device: Some(dev),
        ..
    } = &config.platform
    {
        // The simulated nodes are plain files in this process's file system; containers get
        // a real host character device at the SGX paths instead.
        enclave.host_path.clone_from(dev);
        provision.host_path.clone_from(dev);
    }
    resources.push(ResourceSpec {
        kind: ResourceKind::Enclave,
        count: config.enclave_limit,
        node: enclave.clone(),
    });
    resources.push(ResourceSpec {
        kind: ResourceKind::Provision,
        count: config.provision_limit,
        node: provision,
    });
    if config.profile == Profile::Azure {
        let mib = report.epc_bytes() / sgx_k8s::names::MIB;
        let max = ids::max_compact_devices(config.max_message_bytes);
        if mib <= max {
            resources.push(ResourceSpec {
                kind: ResourceKind::EpcMib,
                count: mib,
                node: enclave,
            });
        } else {
            publish_mib_via_registrar = true;
        }
    }
    Plan {
        resources,
        publish_mib_via_registrar,
    }
}

/// Runs the device plugin (and the registrar, when `kube` is given) until `shutdown` flips.
///
/// # Errors
/// [`Error::Platform`] when detection fails.
pub async fn run(
    config: Config,
    platform: Arc<dyn Platform>,
    kube: Option<kube::Client>,
    metrics: metrics::Metrics,
    ready: Option<confcom_runtime::Probes>,
    shutdown: wch::Receiver<bool>,
) -> Result<()> {
    let report = platform.probe().map_err(Error::Platform)?;
    metrics.set_epc_bytes(report.epc_bytes());
    if report.epc_mismatch() {
        tracing::warn!(
            cpuid = report.cpu.epc_total_bytes(),
            sysfs = report.sysfs_total_bytes(),
            "EPC size from CPUID and sysfs differ; using CPUID"
        );
    }
    let plan = plan(&config, &report);
    let kinds: Vec<_> = plan.resources.iter().map(|r| r.kind).collect();
    let readiness = Readiness::new(ready.clone(), &kinds);
    let mut tasks = tokio::task::JoinSet::new();

    if plan.resources.is_empty() {
        tracing::info!(summary = %report.summary(), "no SGX on this node: registering nothing with the kubelet, idling");
    } else {
        tracing::info!(summary = %report.summary(), resources = plan.resources.len(), "starting device plugin");
        if plan.publish_mib_via_registrar {
            let why = format!(
                "{} MiB of EPC would need a ListAndWatch message above the kubelet's {} byte limit",
                report.epc_bytes() / sgx_k8s::names::MIB,
                config.max_message_bytes
            );
            if kube.is_some() {
                tracing::warn!(
                    "{why}; publishing {} through the node registrar instead",
                    sgx_k8s::names::AZURE_EPC_MIB
                );
            } else {
                tracing::warn!(
                    "{why}; and --register-node is off, so {} is not published",
                    sgx_k8s::names::AZURE_EPC_MIB
                );
            }
        }
        let (nodes_tx, nodes_rx) = wch::channel(platform.device_nodes());
        tasks.spawn(watch::monitor_devices(
            platform.clone(),
            nodes_tx,
            config.timings.health_poll,
            shutdown.clone(),
        ));
        // The directory whose changes matter: the kubelet's (its restarts wipe our sockets and
        // recreate kubelet.sock) or the plugin-watcher directory (our socket deleted).
        let watched_dir = match config.registration {
            Registration::Kubelet => config.kubelet_dir.clone(),
            Registration::PluginWatcher => config.plugins_registry.clone(),
        };
        let (dir_tx, dir_rx) = wch::channel(watch::DirSnapshot::read(&watched_dir));
        tasks.spawn(watch::monitor_kubelet_dir(
            watched_dir,
            dir_tx,
            config.timings.dir_poll,
            shutdown.clone(),
        ));
        for spec in &plan.resources {
            let healthy = spec.node.present_in(&nodes_rx.borrow());
            metrics.set_devices(spec.kind, healthy, spec.count);
            if config.registration == Registration::PluginWatcher {
                let runner = plugin_watcher::Runner {
                    registry_dir: config.plugins_registry.clone(),
                    spec: Arc::new(spec.clone()),
                    nodes: nodes_rx.clone(),
                    dir: dir_rx.clone(),
                    metrics: metrics.clone(),
                    backoff: config.timings.lifecycle.backoff,
                    limit: config.max_message_bytes,
                    readiness: readiness.clone(),
                };
                tasks.spawn(plugin_watcher::run(runner, shutdown.clone()));
                continue;
            }
            let runner = lifecycle::Runner {
                kubelet_dir: config.kubelet_dir.clone(),
                spec: Arc::new(spec.clone()),
                nodes: nodes_rx.clone(),
                dir: dir_rx.clone(),
                metrics: metrics.clone(),
                timing: config.timings.lifecycle,
                limit: config.max_message_bytes,
                readiness: readiness.clone(),
            };
            tasks.spawn(lifecycle::run(lifecycle::UdsIo, runner, shutdown.clone()));
        }
    }

    let labels_to_nfd = config.nfd_features_dir.is_some();
    if let Some(dir) = &config.nfd_features_dir {
        match registrar::write_nfd_features(dir, &registrar::label_set(&report)) {
            Ok(()) => tracing::info!(dir = %dir.display(), "wrote NFD feature file"),
            Err(e) => tracing::warn!(error = %error_chain(&e), "cannot write NFD feature file"),
        }
    }
    if let (Some(client), Some(reg)) = (kube, &config.register_node) {
        let desired =
            registrar::Desired::for_report(&report, plan.publish_mib_via_registrar, !labels_to_nfd);
        let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
        tasks.spawn(registrar::run(
            api,
            reg.node_name.clone(),
            desired,
            metrics.clone(),
            reg.timing,
            shutdown.clone(),
        ));
    }
    let mut shutdown = shutdown;
    let _ = shutdown.wait_for(|s| *s).await;
    if let Some(p) = &ready {
        p.set_ready(false);
    }
    // Tasks see the same signal; give them a moment to remove their sockets.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sgx_platform::SimPlatform;

    fn report(epc: u64, dir: &std::path::Path) -> PlatformReport {
        let sim = SimPlatform::new(epc, dir);
        sim.create_device_nodes().unwrap();
        sim.probe().unwrap()
    }

    #[test]
    fn sim_hands_containers_the_configured_host_device() {
        let dir = tempfile::tempdir().unwrap();
        let sim = |host_device| {
            Config::new(
                dir.path().into(),
                PlatformConfig::Sim {
                    epc_bytes: 64 << 20,
                    dev_dir: dir.path().into(),
                    host_device,
                },
            )
        };
        let rep = report(64 << 20, dir.path());
        let hosts = |c: &Config| -> Vec<String> {
            plan(c, &rep)
                .resources
                .iter()
                .flat_map(|r| r.node.device_specs())
                .map(|d| d.host_path)
                .collect()
        };
        let null = hosts(&sim(Some("/dev/null".into())));
        assert!(!null.is_empty());
        assert!(null.iter().all(|h| h == "/dev/null"), "{null:?}");
        let files = hosts(&sim(None));
        assert!(
            files
                .iter()
                .all(|h| h.starts_with(dir.path().to_str().unwrap())),
            "{files:?}"
        );
    }

    #[test]
    fn azure_mib_resource_up_to_256_gib_then_through_the_registrar() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(
            dir.path().into(),
            PlatformConfig::Sim {
                epc_bytes: 0,
                dev_dir: dir.path().into(),
                host_device: None,
            },
        );
        config.profile = Profile::Azure;
        let p = plan(&config, &report(256 << 30, dir.path()));
        assert!(!p.publish_mib_via_registrar);
        let kinds: Vec<_> = p.resources.iter().map(|r| (r.kind, r.count)).collect();
        assert_eq!(
            kinds,
            [
                (ResourceKind::Enclave, 110),
                (ResourceKind::Provision, 110),
                (ResourceKind::EpcMib, 262_144)
            ]
        );
        let p = plan(&config, &report(512 << 30, dir.path()));
        assert!(p.publish_mib_via_registrar);
        assert_eq!(p.resources.len(), 2);
        // The Intel profile never serves the MiB resource.
        config.profile = Profile::Intel;
        let p = plan(&config, &report(64 << 20, dir.path()));
        assert_eq!(p.resources.len(), 2);
        assert!(!p.publish_mib_via_registrar);
        // No EPC: nothing at all.
        assert!(plan(&config, &report(0, dir.path())).resources.is_empty());
    }
}
