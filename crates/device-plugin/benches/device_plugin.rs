//! Device plugin benchmark. Prints one line:
//!
//! `device-plugin-bench: epc_gib=256 lw_bytes=… lw_encode_ms=… allocate_p99_us=… rss_idle_mib=…`
//!
//! - `lw_bytes`, `lw_encode_ms`: the Azure-profile `ListAndWatch` message for 256 GiB of EPC
//!   (262,144 MiB devices), built and protobuf-encoded (median of 5);
//! - `allocate_p99_us`: p99 latency of `Allocate` (one container, one enclave device) called
//!   by the in-process kubelet over the unix socket, 2,000 calls after 200 warm-up calls;
//! - `rss_idle_mib`: `VmRSS` of a running `confcom-device-plugin --platform sim` process (the
//!   binary the DaemonSet runs; 256 GiB simulated EPC, default profile) registered with the
//!   in-process kubelet, after 1 s idle. The binary is `$CONFCOM_BIN` (a path ending in
//!   `confcom` runs `confcom device-plugin`), else `target/dist-small/confcom-device-plugin`, built
//!   first with `cargo build --profile dist-small -p device-plugin --bin confcom-device-plugin`.
//!
//! Targets (issue 5): `rss_idle_mib <= 8`, `allocate_p99_us <= 500`. Nothing is asserted.

// A benchmark binary: a failed step should abort it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use device_plugin::metrics::Metrics;
use device_plugin::resource::{HostNode, NodeRole, ResourceKind, ResourceSpec};
use device_plugin::service::ListAndWatch;
use device_plugin::testing::FakeKubelet;
use device_plugin::{Config, PlatformConfig};
use prost::Message;
use sgx_platform::Platform;

const EPC_GIB: u64 = 256;

fn lw_encode() -> (usize, f64) {
    let dir = std::env::temp_dir();
    let sim = sgx_platform::SimPlatform::new(EPC_GIB << 30, &dir);
    let nodes = sim.device_nodes();
    let spec = Arc::new(ResourceSpec {
        kind: ResourceKind::EpcMib,
        count: (EPC_GIB << 30) >> 20,
        node: HostNode::pick(NodeRole::Enclave, &nodes),
    });
    let limit = kubelet_api::KUBELET_MAX_RECV_MESSAGE_BYTES as u64;
    let mut times = Vec::new();
    let mut len = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let msg = ListAndWatch::new(spec.clone(), limit).list(true);
        let bytes = msg.encode_to_vec();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        len = bytes.len();
    }
    times.sort_by(f64::total_cmp);
    (len, times[2])
}

async fn allocate_p99(tmp: &std::path::Path) -> f64 {
    let dir = tmp.join("inproc");
    std::fs::create_dir_all(&dir).unwrap();
    let kubelet = FakeKubelet::start(&dir).await.unwrap();
    let config = Config::new(
        dir.clone(),
        PlatformConfig::Sim {
            epc_bytes: 64 << 20,
            dev_dir: tmp.join("inproc-dev"),
            host_device: None,
        },
    );
    let platform = device_plugin::platform(&config.platform).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(&mut registry);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(device_plugin::run(
        config, platform, None, metrics, None, rx,
    ));
    let r = sgx_k8s::names::ENCLAVE;
    kubelet
        .wait_devices(r, Duration::from_secs(10), |l| !l.devices.is_empty())
        .await
        .unwrap();
    let ids = vec![vec!["enclave-1".to_owned()]];
    for _ in 0..200 {
        kubelet.allocate(r, ids.clone()).await.unwrap();
    }
    let mut lat = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = Instant::now();
        kubelet.allocate(r, ids.clone()).await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    tx.send(true).unwrap();
    let _ = task.await;
    lat[lat.len() * 99 / 100]
}

/// The binary the DaemonSet runs: `$CONFCOM_BIN`, else `target/dist-small/confcom-device-plugin`, (re)built
/// here with `cargo build --profile dist-small` (a no-op when it is up to date).
fn plugin_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONFCOM_BIN") {
        return Some(PathBuf::from(p));
    }
    // target/release/deps/device_plugin-… → target/dist-small/confcom-device-plugin
    let exe = std::env::current_exe().ok()?;
    let target_dir = exe.parent()?.parent()?.parent()?.to_owned();
    let bin = target_dir.join("dist-small").join("confcom-device-plugin");
    eprintln!(
        "device-plugin-bench: cargo build --profile dist-small -p device-plugin --bin confcom-device-plugin"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let ok = Command::new(cargo)
        .args([
            "build",
            "--profile",
            "dist-small",
            "-p",
            "device-plugin",
            "--bin",
            "confcom-device-plugin",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    (ok && bin.exists()).then_some(bin)
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `RssAnon`, `RssFile`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn rss_idle(tmp: &std::path::Path) -> Option<f64> {
    let bin = plugin_bin()?;
    // `confcom device-plugin …` (the all-in-one binary, via CONFCOM_BIN) takes the subcommand word.
    let sub: &[&str] = if bin.file_name().is_some_and(|n| n == "confcom") {
        &["device-plugin"]
    } else {
        &[]
    };
    let dir = tmp.join("proc");
    std::fs::create_dir_all(&dir).unwrap();
    let kubelet = FakeKubelet::start(&dir).await.unwrap();
    let mut child = Command::new(&bin)
        .args(sub)
        .args([
            "--platform",
            "sim",
            "--sim-epc",
            "256Gi",
            "--probe-addr",
            "off",
        ])
        .arg("--kubelet-dir")
        .arg(&dir)
        .arg("--dev-root")
        .arg(tmp.join("proc-dev"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let ok = kubelet
        .wait_until(Duration::from_secs(20), |k| {
            [sgx_k8s::names::ENCLAVE, sgx_k8s::names::PROVISION]
                .iter()
                .all(|r| k.devices(r).is_some_and(|l| l.healthy() == 110))
        })
        .await
        .is_ok();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = status_kib(child.id(), "VmRSS");
    let anon = status_kib(child.id(), "RssAnon");
    let file = status_kib(child.id(), "RssFile");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    if !ok {
        eprintln!(
            "device-plugin-bench: {} did not register with the in-process kubelet",
            bin.display()
        );
        return None;
    }
    eprintln!(
        "device-plugin-bench: rss measured on {}: anon {anon:?} KiB, file-backed {file:?} KiB",
        bin.display()
    );
    rss.map(|k| k as f64 / 1024.0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (lw_bytes, lw_ms) = lw_encode();
    let p99 = rt.block_on(allocate_p99(tmp.path()));
    let rss = rt.block_on(rss_idle(tmp.path()));
    let rss = rss.map_or_else(|| "unavailable".to_owned(), |r| format!("{r:.1}"));
    println!(
        "device-plugin-bench: epc_gib={EPC_GIB} lw_bytes={lw_bytes} lw_encode_ms={lw_ms:.1} allocate_p99_us={p99:.0} rss_idle_mib={rss}"
    );
}
