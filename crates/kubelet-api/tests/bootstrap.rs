//! Regenerates `src/gen/` from the vendored `proto/kubelet/.../api.proto` into a temp dir and
//! fails when the checked-in code differs (linkerd `spiffe-proto/tests/bootstrap.rs` style).
//!
//! Needs `protoc` (Debian: `protobuf-compiler`). To update the checked-in code after changing
//! the proto or the generator version, run with `CONFCOM_BLESS=1`.

use std::path::{Path, PathBuf};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the generator; needs `protoc` (Debian: `apt-get install protobuf-compiler`).
fn generate(out: &Path) -> std::io::Result<()> {
    let root = manifest_dir().join("../../proto/kubelet");
    let proto = root.join("deviceplugin/v1beta1/api.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .out_dir(out)
        .compile_protos(&[proto], &[root])
}

#[test]
fn generated_code_is_up_to_date() {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path()).unwrap();
    let fresh = std::fs::read_to_string(tmp.path().join("v1beta1.rs")).unwrap();
    let checked_in_path = manifest_dir().join("src/gen/v1beta1.rs");
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    if fresh != checked_in {
        if std::env::var_os("CONFCOM_BLESS").is_some() {
            std::fs::write(&checked_in_path, &fresh).unwrap();
            return;
        }
        panic!(
            "{} is stale: regenerate with `CONFCOM_BLESS=1 cargo test -p kubelet-api --test bootstrap`",
            checked_in_path.display()
        );
    }
}
