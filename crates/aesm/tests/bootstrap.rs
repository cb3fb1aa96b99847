//! Regenerates the checked-in prost code from `proto/aesm/messages.proto` and fails if it
//! differs from `src/gen/aesm.message.rs`.
//!
//! Run with `CONFCOM_BLESS=1` to rewrite the checked-in file after editing the proto.

use std::path::PathBuf;

#[test]
fn generated_code_is_up_to_date() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let proto_dir = manifest.join("../../proto/aesm");
    let out = tempfile::tempdir().unwrap();
    prost_build::Config::new()
        .out_dir(out.path())
        .compile_protos(&[proto_dir.join("messages.proto")], &[&proto_dir])
        .unwrap();
    let fresh = std::fs::read_to_string(out.path().join("aesm.message.rs")).unwrap();
    let checked_in_path = manifest.join("src/gen/aesm.message.rs");
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    if fresh != checked_in {
        if std::env::var_os("CONFCOM_BLESS").is_some() {
            std::fs::write(&checked_in_path, &fresh).unwrap();
            return;
        }
        panic!(
            "{} is stale: rerun `CONFCOM_BLESS=1 cargo test -p aesm --test bootstrap`",
            checked_in_path.display()
        );
    }
}
