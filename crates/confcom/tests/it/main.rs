//! Integration tests of the `confcom` binary, one module per subcommand (one test binary
//! per crate keeps link time down on small machines).

// Test helpers outside `#[test]` functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod attest;
mod demo;
mod detect;
mod quote_get;
mod quote_inspect;
mod sim;
mod verify;

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the built `confcom` binary with `args`.
pub fn confcom(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confcom"))
        .args(args)
        .output()
        .expect("run confcom")
}

/// Path of a file under the repository's `testdata/`.
pub fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}
