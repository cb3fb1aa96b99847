//! Regenerates `src/gen/` from the vendored protos into a temp dir and fails when the
//! checked-in code differs (linkerd `spiffe-proto/tests/bootstrap.rs` style):
//! - `proto/kubelet/deviceplugin/v1beta1/api.proto` (workspace root) → `src/gen/v1beta1.rs`;
//! - `proto/kubelet/pluginregistration/v1/api.proto` → `src/gen/pluginregistration.rs`.
//!
//! Needs `protoc` (Debian: `protobuf-compiler`). To update the checked-in code after changing
//! a proto or the generator version, run with `CONFCOM_BLESS=1`.

use std::path::{Path, PathBuf};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The generated files, by name under `src/gen/`.
const GENERATED: [&str; 2] = ["v1beta1.rs", "pluginregistration.rs"];

/// Runs the generator; needs `protoc` (Debian: `apt-get install protobuf-compiler`).
fn generate(out: &Path) -> std::io::Result<()> {
    let root = manifest_dir().join("../../proto/kubelet");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .out_dir(out)
        .compile_protos(
            &[
                root.join("deviceplugin/v1beta1/api.proto"),
                root.join("pluginregistration/v1/api.proto"),
            ],
            std::slice::from_ref(&root),
        )
}

#[test]
fn generated_code_is_up_to_date() {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path()).unwrap();
    let mut produced: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    produced.sort_unstable();
    let mut expected = GENERATED.map(String::from).to_vec();
    expected.sort_unstable();
    assert_eq!(produced, expected, "the generator's output files changed");
    let bless = std::env::var_os("CONFCOM_BLESS").is_some();
    let mut stale = Vec::new();
    for name in GENERATED {
        let fresh = std::fs::read_to_string(tmp.path().join(name)).unwrap();
        let checked_in_path = manifest_dir().join("src/gen").join(name);
        let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
        if fresh != checked_in {
            if bless {
                std::fs::write(&checked_in_path, &fresh).unwrap();
            } else {
                stale.push(checked_in_path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} stale: regenerate with `CONFCOM_BLESS=1 cargo test -p kubelet-api --test bootstrap`"
    );
}
