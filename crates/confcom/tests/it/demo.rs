//! Tests of `confcom demo` (`src/cmd/demo.rs`): the whole simulated flow in one process.

use super::confcom;

#[test]
fn demo_runs_every_step_and_ends_ok() {
    let state = tempfile::tempdir().unwrap();
    let out = confcom(&["demo", "--state-dir", state.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().last(), Some("demo: ok"), "{stdout}");
    for step in [
        "simulated SGX node",
        "quote over the AESM socket",
        "attest (MAA-compatible API)",
        "verify the token against /certs",
    ] {
        assert!(stdout.contains(step), "missing step {step}: {stdout}");
    }
    assert!(
        stdout.contains("x-confcom-tcb-status: \"UpToDate\""),
        "{stdout}"
    );
    // The app's runtime data came back in the token.
    assert!(
        stdout.contains("x-ms-runtime: {\"pubkey\":\"demo\"}"),
        "{stdout}"
    );
    // A second run reuses the persisted simulated PKI.
    let root = std::fs::read(state.path().join("root-ca.pem")).unwrap();
    let again = confcom(&["demo", "--state-dir", state.path().to_str().unwrap()]);
    assert!(again.status.success());
    assert_eq!(
        std::fs::read(state.path().join("root-ca.pem")).unwrap(),
        root
    );
}

#[test]
fn demo_reports_the_failing_step() {
    let out = confcom(&["demo", "--sim-epc", "lots"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("demo: failed at simulated SGX node:"),
        "{stdout}"
    );
}
