//! The committed seed corpus of the `verify` fuzz target (`fuzz/corpus/verify/`): generated here from the real
//! verification sets (set `DCAP_VERIFY_WRITE_CORPUS=1` to rewrite it), and replayed through
//! `dcap_verify::fuzzing::verify` (without the `dangerous-fuzzing` feature the real signatures are checked).

mod common;

use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/verify")
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    common::all_sets()
        .into_iter()
        .map(|s| {
            let name = format!("set-{}", s.name.to_lowercase());
            let input = dcap_verify::fuzzing::input(&s.quote, s.collateral.to_json().as_bytes());
            (name, input)
        })
        .collect()
}

#[test]
fn seed_corpus_is_generated_from_the_real_sets() {
    let dir = corpus_dir();
    let write = std::env::var_os("DCAP_VERIFY_WRITE_CORPUS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, input) in seeds() {
        let path = dir.join(&name);
        if write {
            std::fs::write(&path, &input).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with DCAP_VERIFY_WRITE_CORPUS=1)",
                path.display()
            )
        });
        assert!(
            committed == input,
            "{name} is stale (run with DCAP_VERIFY_WRITE_CORPUS=1)"
        );
    }
}

#[test]
fn corpus_replays_without_panicking() {
    let mut n = 0;
    let mut verified = Vec::new();
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if dcap_verify::fuzzing::verify(&data) {
            verified.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        n += 1;
    }
    assert!(n >= 6, "only {n} corpus files");
    // Set A (debug off, both CRLs) verifies with real signatures at the fuzzing time (expiry is a flag there).
    assert!(verified.iter().any(|f| f == "set-a"), "{verified:?}");
}
