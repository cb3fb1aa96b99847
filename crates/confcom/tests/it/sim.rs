//! Tests of the `confcom` subcommand implemented in `src/cmd/sim.rs`.

use super::confcom;

#[test]
fn sim_export_writes_root_collateral_and_pcs_files_and_keeps_the_pki() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("out");
    let (s, o) = (state.to_str().unwrap(), out.to_str().unwrap());
    let first = confcom(&["sim", "export", "--sim-state", s, "--out", o]);
    assert!(first.status.success(), "{first:?}");
    for f in [
        "root-ca.pem",
        "collateral.json",
        "pck-chain.pem",
        "pcs/tcb_info.json",
        "pcs/qe_identity.json",
        "pcs/pck_crl.der",
        "pcs/root_ca_crl.der",
        "pcs/tcb_info_issuer_chain.pem",
        "pcs/qe_identity_issuer_chain.pem",
        "pcs/pck_crl_issuer_chain.pem",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let root = std::fs::read_to_string(out.join("root-ca.pem")).unwrap();
    let json = std::fs::read(out.join("collateral.json")).unwrap();
    let collateral = dcap_verify::Collateral::from_json(&json).unwrap();
    assert!(collateral.tcb_info.contains("\"version\":3"));
    // Subjects say it is simulated.
    let chain = std::fs::read(out.join("pck-chain.pem")).unwrap();
    let ders = sgx_quote::pck::split_pem_chain(&chain).unwrap();
    assert!(
        String::from_utf8_lossy(&ders[0]).contains("confcom SIMULATED"),
        "PCK subject is not marked"
    );
    // A second export reuses the persisted PKI.
    let second = confcom(&["sim", "export", "--sim-state", s, "--out", o]);
    assert!(second.status.success());
    assert_eq!(
        std::fs::read_to_string(out.join("root-ca.pem")).unwrap(),
        root
    );
}
