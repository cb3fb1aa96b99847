//! Replays the committed corpus of the `maa_policy` fuzz target (`fuzz/corpus/maa_policy/`)
//! through the same entry point, so stable CI catches regressions without nightly. Named seeds
//! must keep their outcome: `valid-*` parse and are permitted for the claims below, `invalid-*`
//! fail to parse; other files (added by fuzzing) only must not panic.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use attestation::maa_policy::{MaaPolicy, fuzz_claims as claims, fuzz_entry, looks_like_maa};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/maa_policy")
}

#[test]
fn corpus_replays_with_documented_outcomes() {
    let (mut valid, mut invalid, mut other) = (0, 0, 0);
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        fuzz_entry(&data);
        let text = String::from_utf8_lossy(&data);
        if name.starts_with("valid-") {
            valid += 1;
            let policy = MaaPolicy::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(looks_like_maa(&text), "{name}");
            let out = policy
                .evaluate(&claims())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!out.claims.is_empty(), "{name}: issues claims");
        } else if name.starts_with("invalid-") {
            invalid += 1;
            let e = MaaPolicy::parse(&text).unwrap_err();
            assert!(e.position().is_some(), "{name}: {e}");
        } else {
            other += 1;
        }
    }
    assert!(
        valid >= 4 && invalid >= 4,
        "seed corpus missing: {valid} valid, {invalid} invalid"
    );
    eprintln!("replayed {valid} valid, {invalid} invalid, {other} other inputs");
}
