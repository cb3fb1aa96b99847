//! The plugin against the in-test kubelet (`device_plugin::testing::FakeKubelet`), which
//! registers, dials back and follows `ListAndWatch` exactly like the kubelet's device manager.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use device_plugin::config::Timings;
use device_plugin::lifecycle::{Backoff, Timing};
use device_plugin::metrics::Metrics;
use device_plugin::testing::FakeKubelet;
use device_plugin::{Config, PlatformConfig, Profile};
use kubelet_api::KUBELET_MAX_RECV_MESSAGE_BYTES;
use sgx_k8s::names;
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(5);

struct Harness {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    dev: PathBuf,
    kubelet: FakeKubelet,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    registry: Arc<std::sync::Mutex<prometheus_client::registry::Registry>>,
    probes: confcom_runtime::Probes,
}

pub(crate) fn fast() -> Timings {
    Timings {
        health_poll: Duration::from_millis(500),
        dir_poll: Duration::from_millis(500),
        lifecycle: Timing {
            backoff: Backoff {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(400),
            },
            register_timeout: Duration::from_secs(2),
        },
    }
}

async fn start(epc: u64, profile: Profile, kubelet_first: bool) -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("device-plugins");
    let dev = tmp.path().join("dev");
    std::fs::create_dir_all(&dir).unwrap();
    let kubelet = if kubelet_first {
        Some(FakeKubelet::start(&dir).await.unwrap())
    } else {
        None
    };
    let mut config = Config::new(
        dir.clone(),
        PlatformConfig::Sim {
            epc_bytes: epc,
            dev_dir: dev.clone(),
            host_device: None,
        },
    );
    config.profile = profile;
    config.timings = fast();
    let platform = device_plugin::platform(&config.platform).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(&mut registry);
    let probes = confcom_runtime::Probes::new(prometheus_client::registry::Registry::default());
    let ready = Some(probes.clone());
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        device_plugin::run(config, platform, None, metrics, ready, rx)
            .await
            .unwrap();
    });
    let kubelet = match kubelet {
        Some(k) => k,
        None => {
            // Let the plugin fail to register a few times first.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!probes.is_ready(), "not ready while unregistered");
            FakeKubelet::start(&dir).await.unwrap()
        }
    };
    Harness {
        _tmp: tmp,
        dir,
        dev,
        kubelet,
        shutdown: tx,
        task,
        registry: Arc::new(std::sync::Mutex::new(registry)),
        probes,
    }
}

impl Harness {
    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().unwrap())
            .unwrap();
        out
    }

    async fn registered(&self, resource: &str, times: usize) {
        self.kubelet
            .wait_until(WAIT, |k| k.registration_count(resource) >= times)
            .await
            .unwrap_or_else(|()| {
                panic!(
                    "{resource} not registered {times} times: {:?}",
                    self.kubelet.registrations()
                )
            });
    }
}

#[tokio::test]
async fn registration_fields_and_shared_device_lists() {
    let h = start(64 << 20, Profile::Intel, true).await;
    h.registered(names::ENCLAVE, 1).await;
    h.registered(names::PROVISION, 1).await;
    let regs = h.kubelet.registrations();
    assert_eq!(
        regs.len(),
        2,
        "intel profile serves two resources: {regs:?}"
    );
    let enclave = regs
        .iter()
        .find(|r| r.resource_name == names::ENCLAVE)
        .unwrap();
    assert_eq!(enclave.version, "v1beta1");
    assert_eq!(
        enclave.endpoint, "sgx.intel.com-enclave.sock",
        "endpoint is a file name in the kubelet dir"
    );
    let opts = enclave.options.unwrap();
    assert!(!opts.pre_start_required && !opts.get_preferred_allocation_available);
    let provision = regs
        .iter()
        .find(|r| r.resource_name == names::PROVISION)
        .unwrap();
    assert_eq!(provision.endpoint, "sgx.intel.com-provision.sock");
    assert!(h.dir.join("sgx.intel.com-enclave.sock").exists());

    for r in [names::ENCLAVE, names::PROVISION] {
        let list = h
            .kubelet
            .wait_devices(r, WAIT, |l| l.devices.len() == 110)
            .await
            .unwrap();
        assert_eq!(list.healthy(), 110, "{r}");
        assert_eq!(h.kubelet.options(r).unwrap(), opts);
    }
    let ids: Vec<_> = h
        .kubelet
        .devices(names::ENCLAVE)
        .unwrap()
        .devices
        .iter()
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(ids.first().unwrap(), "enclave-0");
    assert_eq!(ids.last().unwrap(), "enclave-109");
    let m = h.metrics();
    assert!(
        m.contains(r#"confcom_device_plugin_registered{resource="enclave"} 1"#),
        "{m}"
    );
    h.stop().await;
}

async fn mib_devices(epc: u64) -> usize {
    let h = start(epc, Profile::Azure, true).await;
    h.registered(names::AZURE_EPC_MIB, 1).await;
    let want = usize::try_from(epc >> 20).unwrap();
    let list = h
        .kubelet
        .wait_devices(names::AZURE_EPC_MIB, WAIT * 2, |l| l.devices.len() == want)
        .await
        .unwrap();
    assert_eq!(list.healthy(), want);
    assert!(
        list.encoded_len <= KUBELET_MAX_RECV_MESSAGE_BYTES,
        "{}",
        list.encoded_len
    );
    let ids: std::collections::HashSet<_> = list.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), want, "IDs are unique");
    assert!(list.devices.iter().all(|d| d.id.len() <= 3));
    h.stop().await;
    list.encoded_len
}

#[tokio::test]
async fn azure_mib_devices_64_mib() {
    assert_eq!(mib_devices(64 << 20).await, 64 * 14);
}

#[tokio::test]
async fn azure_mib_devices_8_gib() {
    mib_devices(8 << 30).await;
}

#[tokio::test]
async fn azure_mib_devices_256_gib_fit_the_kubelet_limit_in_both_health_states() {
    let epc = 256u64 << 30;
    let h = start(epc, Profile::Azure, true).await;
    h.registered(names::AZURE_EPC_MIB, 1).await;
    let list = h
        .kubelet
        .wait_devices(names::AZURE_EPC_MIB, WAIT * 3, |l| {
            l.devices.len() == 262_144
        })
        .await
        .unwrap();
    // Measured on the message the in-test kubelet received (it has the kubelet's 4 MiB limit).
    assert_eq!(list.encoded_len, 4_190_080);
    assert!(list.encoded_len <= 4_194_304);
    assert_eq!(list.healthy(), 262_144);
    // Device node gone: the unhealthy list must still get through.
    std::fs::remove_file(h.dev.join("sgx_enclave")).unwrap();
    let list = h
        .kubelet
        .wait_devices(names::AZURE_EPC_MIB, WAIT * 3, |l| {
            l.devices.len() == 262_144 && l.healthy() == 0
        })
        .await
        .unwrap();
    assert!(list.encoded_len <= 4_194_304, "{}", list.encoded_len);
    h.stop().await;
}

#[tokio::test]
async fn allocate_returns_device_nodes_and_rejects_unknown_ids() {
    let h = start(64 << 20, Profile::Azure, true).await;
    for r in [names::ENCLAVE, names::PROVISION, names::AZURE_EPC_MIB] {
        h.registered(r, 1).await;
        h.kubelet
            .wait_devices(r, WAIT, |l| !l.devices.is_empty())
            .await
            .unwrap();
    }
    let dev = |p: &str| h.dev.join(p).to_string_lossy().into_owned();
    let resp = h
        .kubelet
        .allocate(
            names::ENCLAVE,
            vec![vec!["enclave-3".into()], vec!["enclave-4".into()]],
        )
        .await
        .unwrap();
    assert_eq!(resp.container_responses.len(), 2);
    for c in &resp.container_responses {
        let specs: Vec<_> = c
            .devices
            .iter()
            .map(|d| {
                (
                    d.container_path.as_str(),
                    d.host_path.clone(),
                    d.permissions.as_str(),
                )
            })
            .collect();
        assert_eq!(
            specs,
            [
                ("/dev/sgx_enclave", dev("sgx_enclave"), "rw"),
                ("/dev/sgx/enclave", dev("sgx_enclave"), "rw")
            ]
        );
    }
    let resp = h
        .kubelet
        .allocate(names::PROVISION, vec![vec!["provision-0".into()]])
        .await
        .unwrap();
    let paths: Vec<_> = resp.container_responses[0]
        .devices
        .iter()
        .map(|d| d.container_path.as_str())
        .collect();
    assert_eq!(paths, ["/dev/sgx_provision", "/dev/sgx/provision"]);
    // MiB devices inject the enclave node (no webhook needed).
    let ids: Vec<String> = (0..10).map(device_plugin::ids::compact_id).collect();
    let resp = h
        .kubelet
        .allocate(names::AZURE_EPC_MIB, vec![ids])
        .await
        .unwrap();
    assert_eq!(
        resp.container_responses[0].devices[0].host_path,
        dev("sgx_enclave")
    );
    assert_eq!(resp.container_responses[0].devices.len(), 2);

    let err = h
        .kubelet
        .allocate(
            names::ENCLAVE,
            vec![vec!["enclave-1".into(), "gpu-7".into()]],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        err.message(),
        r#"unknown device id "gpu-7" for resource sgx.intel.com/enclave"#
    );
    let err = h
        .kubelet
        .allocate(names::AZURE_EPC_MIB, vec![vec!["zz".into()]])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "64 MiB has no device \"zz\""
    );
    let m = h.metrics();
    assert!(
        m.contains(r#"confcom_device_plugin_allocations_total{resource="enclave",result="ok"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(
            r#"confcom_device_plugin_allocations_total{resource="enclave",result="error"} 1"#
        ),
        "{m}"
    );
    h.stop().await;
}

#[tokio::test]
async fn kubelet_restarts_wipe_the_directory_and_the_plugin_re_registers_each_time() {
    let mut h = start(64 << 20, Profile::Intel, true).await;
    h.registered(names::ENCLAVE, 1).await;
    h.registered(names::PROVISION, 1).await;
    for round in 2..=4 {
        let t0 = std::time::Instant::now();
        h.kubelet.restart().await.unwrap();
        // Registered again and dialled back: the new kubelet receives the device lists.
        for r in [names::ENCLAVE, names::PROVISION] {
            h.registered(r, round).await;
            let list = h
                .kubelet
                .wait_devices(r, WAIT, |l| l.devices.len() == 110)
                .await
                .unwrap();
            assert_eq!(list.healthy(), 110);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "round {round}: {:?}",
            t0.elapsed()
        );
        assert!(h.dir.join("sgx.intel.com-enclave.sock").exists());
        // The new kubelet can allocate through the new connection.
        h.kubelet
            .allocate(names::ENCLAVE, vec![vec!["enclave-0".into()]])
            .await
            .unwrap();
    }
    // Exactly one registration per resource per kubelet start.
    assert_eq!(h.kubelet.registration_count(names::ENCLAVE), 4);
    assert_eq!(h.kubelet.registration_count(names::PROVISION), 4);
    let m = h.metrics();
    assert!(
        m.contains("confcom_device_plugin_kubelet_restarts_total 6"),
        "{m}"
    );
    h.stop().await;
}

#[tokio::test]
async fn registration_is_retried_until_the_kubelet_appears() {
    let h = start(64 << 20, Profile::Intel, false).await;
    h.registered(names::ENCLAVE, 1).await;
    h.registered(names::PROVISION, 1).await;
    let t0 = std::time::Instant::now();
    while !h.probes.is_ready() {
        assert!(t0.elapsed() < WAIT, "/readyz follows registration");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = h.metrics();
    assert!(
        m.contains(
            r#"confcom_device_plugin_registrations_total{resource="enclave",result="error"}"#
        ),
        "{m}"
    );
    h.stop().await;
}

#[tokio::test]
async fn removed_device_node_turns_devices_unhealthy_and_back() {
    let h = start(64 << 20, Profile::Intel, true).await;
    h.registered(names::ENCLAVE, 1).await;
    h.kubelet
        .wait_devices(names::ENCLAVE, WAIT, |l| l.healthy() == 110)
        .await
        .unwrap();
    h.kubelet
        .wait_devices(names::PROVISION, WAIT, |l| l.healthy() == 110)
        .await
        .unwrap();
    let node = h.dev.join("sgx_enclave");
    std::fs::remove_file(&node).unwrap();
    let t0 = std::time::Instant::now();
    let list = h
        .kubelet
        .wait_devices(names::ENCLAVE, Duration::from_secs(2), |l| l.healthy() == 0)
        .await
        .expect("unhealthy within 2 s");
    assert!(
        list.devices
            .iter()
            .all(|d| d.health == kubelet_api::UNHEALTHY)
    );
    assert_eq!(list.devices.len(), 110, "unhealthy devices stay listed");
    assert!(t0.elapsed() < Duration::from_secs(2));
    // Allocation of unhealthy devices is refused.
    let err = h
        .kubelet
        .allocate(names::ENCLAVE, vec![vec!["enclave-0".into()]])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    // The provisioning node is untouched.
    assert_eq!(h.kubelet.devices(names::PROVISION).unwrap().healthy(), 110);
    std::fs::write(&node, b"").unwrap();
    h.kubelet
        .wait_devices(names::ENCLAVE, Duration::from_secs(2), |l| {
            l.healthy() == 110
        })
        .await
        .expect("healthy again within 2 s");
    h.stop().await;
}

#[tokio::test]
async fn non_sgx_node_registers_nothing_and_idles() {
    let h = start(0, Profile::Azure, true).await;
    // Long enough for several registration attempts had there been any.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(h.kubelet.registrations().is_empty());
    let mut files: Vec<_> = std::fs::read_dir(&h.dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    files.sort();
    assert_eq!(files, ["DEPRECATION", "kubelet.sock"], "no plugin socket");
    assert!(!h.task.is_finished(), "it idles rather than exiting");
    assert!(h.probes.is_ready(), "an idle non-SGX node is ready");
    h.stop().await;
}
