//! Integration tests of the device plugin: an in-test kubelet on a temp `kubelet.sock`, an
//! in-test kubelet plugin watcher on a temp plugins-registry directory, and the node
//! registrar against a mocked API server.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kubelet;
mod plugin_watcher;
mod registrar;
