//! `confcom device-plugin`: flags, validation into a [`Config`], and the process shell.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, PlatformConfig, Profile, RegisterNode, Registration};
use crate::registrar::RegistrarTiming;

/// Exit code for invalid configuration (BSD `EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;

/// Platform implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlatformArg {
    /// The real CPU, `/dev` and `/sys`.
    Host,
    /// A simulated SGX node (no hardware; never trusted).
    Sim,
}

/// Arguments of `confcom device-plugin`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The kubelet's device plugin directory (holds `kubelet.sock`).
    #[arg(
        long,
        env = "CONFCOM_KUBELET_DIR",
        default_value = "/var/lib/kubelet/device-plugins"
    )]
    pub kubelet_dir: PathBuf,
    /// How to register with the kubelet: `kubelet` calls Register on `kubelet.sock` in
    /// `--kubelet-dir`; `plugin-watcher` serves a socket in `--plugins-registry` that the
    /// kubelet's plugin watcher finds (and re-registers after kubelet restarts) by itself.
    #[arg(
        long,
        env = "CONFCOM_REGISTRATION",
        value_enum,
        default_value = "kubelet"
    )]
    pub registration: Registration,
    /// The kubelet's plugin-watcher directory (`--registration plugin-watcher`), mounted at
    /// the host's path: the kubelet dials the socket path the plugin reports.
    #[arg(
        long,
        env = "CONFCOM_PLUGINS_REGISTRY",
        default_value = "/var/lib/kubelet/plugins_registry"
    )]
    pub plugins_registry: PathBuf,
    /// Where SGX facts come from.
    #[arg(long, env = "CONFCOM_PLATFORM", value_enum, default_value = "host")]
    pub platform: PlatformArg,
    /// Resources to serve: `intel` (enclave, provision) or `azure` (also the gen-1 EPC MiB
    /// resource).
    #[arg(long, env = "CONFCOM_PROFILE", value_enum, default_value = "intel")]
    pub profile: Profile,
    /// The host's `/dev` as seen by this process (host platform), or the directory of the
    /// simulated device nodes (sim platform; default `$TMPDIR/confcom-sim/dev`).
    #[arg(long, env = "CONFCOM_DEV_ROOT")]
    pub dev_root: Option<PathBuf>,
    /// The host's `/sys` as seen by this process.
    #[arg(long, env = "CONFCOM_SYS_ROOT", default_value = "/sys")]
    pub sys_root: PathBuf,
    /// EPC size of the simulated node (`64Mi`, `8Gi`, bytes).
    #[arg(long, env = "CONFCOM_SIM_EPC", default_value = "64Mi")]
    pub sim_epc: String,
    /// Sim platform: the host device Allocate hands to containers at the SGX device paths
    /// (the simulated nodes are files inside this process only); `off` hands out those files.
    #[arg(long, env = "CONFCOM_SIM_HOST_DEVICE", default_value = "/dev/null")]
    pub sim_host_device: String,
    /// Shared slots of `sgx.intel.com/enclave` (containers per node).
    #[arg(long, env = "CONFCOM_ENCLAVE_LIMIT", default_value_t = 110)]
    pub enclave_limit: u64,
    /// Shared slots of `sgx.intel.com/provision`.
    #[arg(long, env = "CONFCOM_PROVISION_LIMIT", default_value_t = 110)]
    pub provision_limit: u64,
    /// Publish `sgx.intel.com/epc` and SGX labels on this Node (in-cluster config).
    #[arg(long, env = "CONFCOM_REGISTER_NODE")]
    pub register_node: bool,
    /// Name of this Node (Downward API `spec.nodeName`); required with `--register-node`.
    #[arg(long, env = "CONFCOM_NODE_NAME")]
    pub node_name: Option<String>,
    /// Write the SGX labels as an NFD feature file into this directory instead of labelling
    /// the Node (e.g. `/etc/kubernetes/node-feature-discovery/features.d`).
    #[arg(long, env = "CONFCOM_NFD_FEATURES_DIR")]
    pub nfd_features_dir: Option<PathBuf>,
    /// Address of `/healthz`, `/readyz` and `/metrics`; `off` disables it.
    #[arg(long, env = "CONFCOM_PROBE_ADDR", default_value = "0.0.0.0:8080")]
    pub probe_addr: String,
}

/// Validates `args` into a [`Config`].
///
/// # Errors
/// A message for the operator when a flag is invalid.
pub fn config(args: &Args) -> Result<Config, String> {
    let platform = match args.platform {
        PlatformArg::Host => PlatformConfig::Host {
            dev_root: args
                .dev_root
                .clone()
                .unwrap_or_else(|| PathBuf::from("/dev")),
            sys_root: args.sys_root.clone(),
        },
        PlatformArg::Sim => PlatformConfig::Sim {
            epc_bytes: sgx_platform::parse_size(&args.sim_epc)
                .map_err(|e| format!("--sim-epc: {e}"))?,
            dev_dir: args
                .dev_root
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("confcom-sim/dev")),
            host_device: match args.sim_host_device.as_str() {
                "off" => None,
                p if p.starts_with('/') => Some(PathBuf::from(p)),
                p => return Err(format!("--sim-host-device {p}: an absolute path or `off`")),
            },
        },
    };
    if args.enclave_limit == 0 || args.provision_limit == 0 {
        return Err("--enclave-limit and --provision-limit must be at least 1".into());
    }
    match args.registration {
        Registration::Kubelet => {
            if !args.kubelet_dir.is_dir() {
                return Err(format!(
                    "--kubelet-dir {}: not a directory",
                    args.kubelet_dir.display()
                ));
            }
        }
        Registration::PluginWatcher => {
            // The path goes to the kubelet as the plugin's endpoint: it must be absolute.
            if !args.plugins_registry.is_absolute() || !args.plugins_registry.is_dir() {
                return Err(format!(
                    "--plugins-registry {}: not an absolute path of a directory",
                    args.plugins_registry.display()
                ));
            }
        }
    }
    let register_node = if args.register_node {
        let node_name = args
            .node_name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or("--register-node needs --node-name (CONFCOM_NODE_NAME)")?;
        Some(RegisterNode {
            node_name,
            timing: RegistrarTiming::default(),
        })
    } else {
        None
    };
    if let Some(dir) = args.nfd_features_dir.as_ref().filter(|d| !d.is_dir()) {
        return Err(format!(
            "--nfd-features-dir {}: not a directory",
            dir.display()
        ));
    }
    let probe_addr = match args.probe_addr.as_str() {
        "off" | "" => None,
        a => Some(
            a.parse::<SocketAddr>()
                .map_err(|e| format!("--probe-addr {a:?}: {e}"))?,
        ),
    };
    let mut c = Config::new(args.kubelet_dir.clone(), platform);
    c.profile = args.profile;
    c.registration = args.registration;
    c.plugins_registry.clone_from(&args.plugins_registry);
    c.enclave_limit = args.enclave_limit;
    c.provision_limit = args.provision_limit;
    c.register_node = register_node;
    c.nfd_features_dir = args.nfd_features_dir.clone();
    c.probe_addr = probe_addr;
    Ok(c)
}

/// Runs the device plugin until SIGTERM/SIGINT. Exits 64 on invalid configuration and 0
/// otherwise: runtime failures (kubelet away, API errors) are retried, never fatal.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match config(&args) {
        Ok(c) => c,
        Err(msg) => {
            tracing::error!("invalid configuration: {msg}");
            eprintln!("confcom device-plugin: invalid configuration: {msg}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let kube = if config.register_node.is_some() {
        match kube::Client::try_default().await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "--register-node needs a Kubernetes client configuration");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        }
    } else {
        None
    };
    let platform = match crate::platform(&config.platform) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %crate::error_chain(&e), "cannot set up the platform");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = crate::metrics::Metrics::new(&mut registry);
    let probes = confcom_runtime::Probes::new(registry);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = config.probe_addr {
        let p = probes.clone();
        let mut rx = shutdown_rx.clone();
        tokio::spawn(async move {
            if let Err(e) = p
                .serve(addr, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
            {
                tracing::warn!(error = %e, "probe endpoint unavailable");
            }
        });
    }
    tokio::spawn(async move {
        confcom_runtime::shutdown_signal().await;
        let _ = shutdown_tx.send(true);
    });
    if let Err(e) = crate::run(config, platform, kube, metrics, Some(probes), shutdown_rx).await {
        // Only platform detection can fail here (e.g. an unreadable `--sys-root`).
        tracing::error!(error = %crate::error_chain(&e), "cannot detect the sgx platform; check --dev-root/--sys-root");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    // Let the probe server drain.
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(extra: &[&str]) -> Result<Config, String> {
        let dir = std::env::temp_dir();
        let mut argv = vec!["x", "--kubelet-dir", dir.to_str().unwrap()];
        argv.extend_from_slice(extra);
        config(&Cli::try_parse_from(argv).map_err(|e| e.to_string())?.args)
    }

    #[test]
    fn defaults_and_sim_parse() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.profile, Profile::Intel);
        assert_eq!(c.registration, Registration::Kubelet);
        assert_eq!(
            c.plugins_registry,
            std::path::Path::new("/var/lib/kubelet/plugins_registry")
        );
        assert_eq!(c.enclave_limit, 110);
        assert!(matches!(c.platform, PlatformConfig::Host { .. }));
        let c = parse(&[
            "--platform",
            "sim",
            "--sim-epc",
            "8Gi",
            "--profile",
            "azure",
            "--probe-addr",
            "off",
        ])
        .unwrap();
        assert!(
            matches!(c.platform, PlatformConfig::Sim { epc_bytes, .. } if epc_bytes == 8 << 30)
        );
        assert_eq!(c.probe_addr, None);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        assert!(parse(&["--platform", "sim", "--sim-epc", "lots"]).is_err());
        assert!(parse(&["--enclave-limit", "0"]).is_err());
        assert!(
            parse(&["--register-node"])
                .unwrap_err()
                .contains("--node-name")
        );
        assert!(parse(&["--probe-addr", "nope"]).is_err());
        assert!(parse(&["--nfd-features-dir", "/nonexistent/x"]).is_err());
        assert!(parse(&["--profile", "amd"]).is_err());
        assert!(parse(&["--registration", "csi"]).is_err());
        let missing = parse(&[
            "--registration",
            "plugin-watcher",
            "--plugins-registry",
            "/nonexistent/plugins_registry",
        ]);
        assert!(missing.unwrap_err().contains("--plugins-registry"));
        assert!(
            parse(&[
                "--registration",
                "plugin-watcher",
                "--plugins-registry",
                "relative/dir"
            ])
            .is_err()
        );
    }

    #[test]
    fn plugin_watcher_mode_needs_only_the_registry_dir() {
        let registry = tempfile::tempdir().unwrap();
        let argv = [
            "x",
            "--kubelet-dir",
            "/nonexistent/device-plugins",
            "--registration",
            "plugin-watcher",
            "--plugins-registry",
            registry.path().to_str().unwrap(),
        ];
        let c = config(&Cli::try_parse_from(argv).unwrap().args).unwrap();
        assert_eq!(c.registration, Registration::PluginWatcher);
        assert_eq!(c.plugins_registry, registry.path());
    }
}
