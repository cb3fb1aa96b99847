//! The plugin in `--registration plugin-watcher` mode against the in-test plugin watcher
//! (`device_plugin::testing::FakePluginWatcher`), which finds the plugin's sockets, calls
//! `GetInfo`, connects the device manager to `endpoint` and notifies the result as the
//! kubelet does.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use device_plugin::metrics::Metrics;
use device_plugin::testing::FakePluginWatcher;
use device_plugin::{Config, PlatformConfig, Profile, Registration};
use sgx_k8s::names;
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(5);
const RESOURCES: [&str; 2] = [names::ENCLAVE, names::PROVISION];

struct Harness {
    _tmp: tempfile::TempDir,
    registry: PathBuf,
    kubelet_dir: PathBuf,
    dev: PathBuf,
    watcher: FakePluginWatcher,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    registry_metrics: Arc<std::sync::Mutex<prometheus_client::registry::Registry>>,
    probes: confcom_runtime::Probes,
}

/// Starts the plugin (Intel profile, 64 MiB) with a watcher that first rejects with `reject`.
async fn start(reject: Option<&str>) -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("plugins_registry");
    // Never created: plugin-watcher mode must not need the device plugin directory.
    let kubelet_dir = tmp.path().join("device-plugins");
    let dev = tmp.path().join("dev");
    std::fs::create_dir_all(&registry).unwrap();
    let watcher = FakePluginWatcher::start(&registry);
    watcher.reject(reject);
    let mut config = Config::new(
        kubelet_dir.clone(),
        PlatformConfig::Sim {
            epc_bytes: 64 << 20,
            dev_dir: dev.clone(),
            host_device: None,
        },
    );
    config.profile = Profile::Intel;
    config.registration = Registration::PluginWatcher;
    config.plugins_registry.clone_from(&registry);
    config.timings = super::kubelet::fast();
    let platform = device_plugin::platform(&config.platform).unwrap();
    let mut registry_metrics = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(&mut registry_metrics);
    let probes = confcom_runtime::Probes::new(prometheus_client::registry::Registry::default());
    let ready = Some(probes.clone());
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        device_plugin::run(config, platform, None, metrics, ready, rx)
            .await
            .unwrap();
    });
    Harness {
        _tmp: tmp,
        registry,
        kubelet_dir,
        dev,
        watcher,
        shutdown: tx,
        task,
        registry_metrics: Arc::new(std::sync::Mutex::new(registry_metrics)),
        probes,
    }
}

impl Harness {
    /// Stops the plugin; the temp dir lives on in the returned value.
    async fn stop(self) -> tempfile::TempDir {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
        self._tmp
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry_metrics.lock().unwrap())
            .unwrap();
        out
    }

    fn socket(&self, resource: &str) -> PathBuf {
        self.registry
            .join(format!("{}.sock", resource.replace('/', "-")))
    }

    async fn registered(&self, resource: &str, times: usize) {
        self.watcher
            .wait_until(WAIT, |w| w.registration_count(resource) >= times)
            .await
            .unwrap_or_else(|()| {
                panic!(
                    "{resource} not registered {times} times: {:?} {:?}",
                    self.watcher.infos(),
                    self.watcher.notified(resource)
                )
            });
    }

    async fn ready(&self) {
        let t0 = std::time::Instant::now();
        while !self.probes.is_ready() {
            assert!(
                t0.elapsed() < WAIT,
                "/readyz follows the watcher's notification"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn healthy_lists(&self) {
        for r in RESOURCES {
            let list = self
                .watcher
                .wait_devices(r, WAIT, |l| l.devices.len() == 110)
                .await
                .unwrap();
            assert_eq!(list.healthy(), 110, "{r}");
        }
    }
}

#[tokio::test]
async fn plugin_watcher_gets_info_dials_the_endpoint_and_allocates() {
    let h = start(None).await;
    for r in RESOURCES {
        h.registered(r, 1).await;
    }
    let infos = h.watcher.infos();
    assert_eq!(infos.len(), 2, "one socket per resource: {infos:?}");
    for r in RESOURCES {
        let info = infos.iter().find(|i| i.name == r).unwrap();
        assert_eq!(info.r#type, "DevicePlugin");
        assert_eq!(
            info.endpoint, "",
            "the endpoint is left to the kubelet, which dials the socket it found"
        );
        assert!(h.socket(r).exists());
        assert_eq!(info.supported_versions, ["v1beta1"]);
        let notified = h.watcher.notified(r);
        assert_eq!(notified.len(), 1);
        assert!(notified[0].plugin_registered && notified[0].error.is_empty());
        let opts = h.watcher.options(r).unwrap();
        assert!(!opts.pre_start_required && !opts.get_preferred_allocation_available);
    }
    assert_eq!(
        h.socket(names::ENCLAVE).file_name().unwrap(),
        "sgx.intel.com-enclave.sock"
    );
    h.healthy_lists().await;
    h.ready().await;
    // Allocate through the endpoint the watcher dialled, as the kubelet does.
    let resp = h
        .watcher
        .allocate(names::ENCLAVE, vec![vec!["enclave-7".into()]])
        .await
        .unwrap();
    let enclave = h.dev.join("sgx_enclave").to_string_lossy().into_owned();
    let specs: Vec<_> = resp.container_responses[0]
        .devices
        .iter()
        .map(|d| (d.container_path.as_str(), d.host_path.as_str()))
        .collect();
    assert_eq!(
        specs,
        [
            ("/dev/sgx_enclave", enclave.as_str()),
            ("/dev/sgx/enclave", enclave.as_str())
        ]
    );
    let err = h
        .watcher
        .allocate(names::PROVISION, vec![vec!["enclave-0".into()]])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let m = h.metrics();
    assert!(
        m.contains(r#"confcom_device_plugin_registered{resource="enclave"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(
            r#"confcom_device_plugin_registrations_total{resource="enclave",result="ok"} 1"#
        ),
        "{m}"
    );
    // The classic directory was never needed (nor created).
    assert!(!h.kubelet_dir.exists());
    let registry = h.registry.clone();
    let _tmp = h.stop().await;
    let left: Vec<_> = std::fs::read_dir(&registry).unwrap().flatten().collect();
    assert!(left.is_empty(), "sockets removed on shutdown: {left:?}");
}

#[tokio::test]
async fn plugin_watcher_socket_deleted_is_recreated_and_registered_again() {
    let h = start(None).await;
    for r in RESOURCES {
        h.registered(r, 1).await;
    }
    h.healthy_lists().await;
    let socket = h.socket(names::ENCLAVE);
    for round in 2..=3 {
        let old_ino = std::fs::metadata(&socket).unwrap().ino();
        let t0 = std::time::Instant::now();
        std::fs::remove_file(&socket).unwrap();
        h.registered(names::ENCLAVE, round).await;
        assert!(t0.elapsed() < WAIT, "round {round}: {:?}", t0.elapsed());
        assert_ne!(
            std::fs::metadata(&socket).unwrap().ino(),
            old_ino,
            "a new socket"
        );
        // Served again: a fresh device list and allocation through the new connection.
        h.watcher
            .wait_devices(names::ENCLAVE, WAIT, |l| l.healthy() == 110)
            .await
            .unwrap();
        h.watcher
            .allocate(names::ENCLAVE, vec![vec!["enclave-0".into()]])
            .await
            .unwrap();
        h.ready().await;
    }
    // The other resource's socket was left alone.
    assert_eq!(h.watcher.registration_count(names::PROVISION), 1);
    let m = h.metrics();
    assert!(
        m.contains(
            r#"confcom_device_plugin_registrations_total{resource="enclave",result="ok"} 3"#
        ),
        "{m}"
    );
    h.stop().await;
}

#[tokio::test]
async fn plugin_watcher_restart_finds_the_sockets_again_without_the_plugin_acting() {
    let mut h = start(None).await;
    for r in RESOURCES {
        h.registered(r, 1).await;
    }
    let inodes: Vec<u64> = RESOURCES
        .iter()
        .map(|r| std::fs::metadata(h.socket(r)).unwrap().ino())
        .collect();
    // A kubelet restart: the old watcher and its connections go away, a new one walks the
    // directory (it does not wipe it).
    h.watcher = FakePluginWatcher::start(&h.registry);
    for r in RESOURCES {
        h.registered(r, 1).await;
    }
    h.healthy_lists().await;
    let after: Vec<u64> = RESOURCES
        .iter()
        .map(|r| std::fs::metadata(h.socket(r)).unwrap().ino())
        .collect();
    assert_eq!(inodes, after, "same sockets, served all along");
    h.ready().await;
    h.stop().await;
}

#[tokio::test]
async fn plugin_watcher_refusal_is_reported_and_keeps_the_plugin_unready() {
    let h = start(Some("resource name taken by another plugin")).await;
    h.watcher
        .wait_until(WAIT, |w| {
            RESOURCES
                .iter()
                .all(|r| w.notified(r).iter().any(|s| !s.plugin_registered))
        })
        .await
        .unwrap();
    let status = &h.watcher.notified(names::ENCLAVE)[0];
    assert_eq!(
        status.error,
        "RegisterPlugin error -- plugin validation failed with err: resource name taken by another plugin"
    );
    assert!(
        h.watcher.devices(names::ENCLAVE).is_none(),
        "never connected"
    );
    assert!(!h.probes.is_ready());
    let m = h.metrics();
    assert!(
        m.contains(
            r#"confcom_device_plugin_registrations_total{resource="enclave",result="error"} 1"#
        ),
        "{m}"
    );
    assert!(
        m.contains(r#"confcom_device_plugin_registered{resource="enclave"} 0"#),
        "{m}"
    );
    // Accepted after the socket is created again (what a plugin restart would do).
    h.watcher.reject(None);
    for r in RESOURCES {
        std::fs::remove_file(h.socket(r)).unwrap();
        h.registered(r, 1).await;
    }
    h.healthy_lists().await;
    h.ready().await;
    h.stop().await;
}
