//! Integration tests of the admission rules (one test binary).

// Test helpers outside `#[test]` functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod properties;
mod rules;
