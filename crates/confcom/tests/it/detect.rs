//! Tests of the `confcom` subcommand implemented in `src/cmd/detect.rs`.

use super::confcom;

fn cpu_has_sgx() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.split_whitespace().any(|w| w == "sgx"))
        .unwrap_or(false)
}

#[test]
fn detect_on_this_machine_says_plainly_and_exits_0() {
    let dev = tempfile::tempdir().unwrap();
    let out = confcom(&[
        "detect",
        "--dev-root",
        dev.path().to_str().unwrap(),
        "--sys-root",
        dev.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let first = stdout.lines().next().unwrap();
    if cpu_has_sgx() {
        assert!(first.starts_with("SGX "), "{first}");
    } else {
        // The CI machine of this project (AMD EPYC) has no SGX.
        assert_eq!(first, "no SGX: this CPU does not support Intel SGX");
        assert!(stdout.contains("driver:   none"), "{stdout}");
    }
}

#[test]
fn detect_json_on_a_simulated_node_with_device_nodes() {
    let dev = tempfile::tempdir().unwrap();
    std::fs::write(dev.path().join("sgx_enclave"), b"").unwrap();
    std::fs::write(dev.path().join("sgx_provision"), b"").unwrap();
    let out = confcom(&[
        "detect",
        "--json",
        "--platform",
        "sim",
        "--sim-epc",
        "8Gi",
        "--dev-root",
        dev.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["epc_bytes"], 8u64 << 30);
    assert_eq!(v["sgx_usable"], true);
    assert_eq!(v["epc_source"], "cpuid");
    assert_eq!(v["report"]["platform"], "sim");
    assert_eq!(v["report"]["driver"], "in-kernel");
    assert_eq!(v["report"]["cpu"]["sgx2"], true);
    assert!(v["summary"].as_str().unwrap().contains("(simulated)"));
    let nodes = v["report"]["devices"].as_array().unwrap();
    assert!(
        nodes
            .iter()
            .any(|n| n["kind"] == "enclave" && n["present"] == true)
    );
}

#[test]
fn detect_sim_without_device_nodes_is_unusable_and_bad_size_fails() {
    let dev = tempfile::tempdir().unwrap();
    let out = confcom(&[
        "detect",
        "--platform",
        "sim",
        "--dev-root",
        dev.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("SGX enabled but unusable (simulated)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("epc:      64 MiB (67108864 bytes"),
        "{stdout}"
    );
    let out = confcom(&["detect", "--platform", "sim", "--sim-epc", "lots"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid size"));
}
