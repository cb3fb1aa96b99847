//! Tests of the `confcom` subcommand implemented in `src/cmd/attest.rs` (and of
//! `confcom pccs`): the real binaries on loopback, the real set-A quote.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{confcom, testdata};

/// Set A (testdata/dcap/INDEX.md): inside the collateral's window.
const T_A: &str = "1751624924";

/// Kills the child (a server this test started) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn spawn(args: &[&str]) -> Server {
    Server(
        Command::new(env!("CARGO_BIN_EXE_confcom"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn confcom"),
    )
}

fn wait_listening(addr: SocketAddr, server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "server on {addr} exited early"
        );
        assert!(Instant::now() < deadline, "server on {addr} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pccs_import_serve_and_attest_the_real_quote() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let collateral = testdata("dcap/dcap-qvl/sample/sgx_quote_collateral.json");
    let out = confcom(&[
        "pccs",
        "import",
        "--store",
        store.to_str().unwrap(),
        collateral.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("imported sgx/tcb/00A067110000"), "{stdout}");

    let pccs_addr = free_addr();
    let mut pccs = spawn(&[
        "pccs",
        "serve",
        "--store",
        store.to_str().unwrap(),
        "--listen",
        &pccs_addr.to_string(),
        "--mode",
        "offline",
        "--time",
        T_A,
    ]);
    wait_listening(pccs_addr, &mut pccs);

    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "allow_debug: true\naccepted_tcb_statuses: [ConfigurationAndSWHardeningNeeded]\n",
    )
    .unwrap();
    let key = dir.path().join("key.pem");
    let attest_addr = free_addr();
    let pccs_url = format!("http://{pccs_addr}/sgx/certification/v4/");
    let mut server = spawn(&[
        "attest",
        "serve",
        "--listen",
        &attest_addr.to_string(),
        "--pccs-url",
        &pccs_url,
        "--verification-time",
        T_A,
        "--policy",
        policy.to_str().unwrap(),
        "--signing-key",
        key.to_str().unwrap(),
    ]);
    wait_listening(attest_addr, &mut server);
    assert!(
        key.exists(),
        "the signing key is generated and persisted on first start"
    );

    let url = format!("http://{attest_addr}");
    let quote = testdata("dcap/dcap-qvl/sample/sgx_quote");
    let out = confcom(&[
        "attest",
        "--url",
        &url,
        "--quote",
        quote.to_str().unwrap(),
        "--time",
        T_A,
        "--nonce",
        "abc",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        claims["x-confcom-tcb-status"],
        "ConfigurationAndSWHardeningNeeded"
    );
    assert_eq!(
        claims["x-confcom-advisory-ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
    assert_eq!(claims["nonce"], "abc");
    assert_eq!(claims["iss"], url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("token verified against"), "{stderr}");

    // Runtime data that REPORTDATA does not bind.
    let out = confcom(&[
        "attest",
        "--url",
        &url,
        "--quote",
        quote.to_str().unwrap(),
        "--runtime-data-hex",
        "00",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RuntimeDataMismatch"), "{stderr}");

    // Validating the token long after the fixed verification time: expired.
    let out = confcom(&["attest", "--url", &url, "--quote", quote.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired"));
}

#[test]
fn attest_usage_errors() {
    let out = confcom(&["attest", "--quote", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--url is required"));
    // serve needs a collateral source.
    let out = confcom(&["attest", "serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--pccs-url") || stderr.contains("--collateral"),
        "{stderr}"
    );
    // pccs import of something that is not collateral.
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("x.json");
    std::fs::write(&bogus, "{}").unwrap();
    let out = confcom(&[
        "pccs",
        "import",
        "--store",
        dir.path().join("s").to_str().unwrap(),
        bogus.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not importable collateral"));
}
