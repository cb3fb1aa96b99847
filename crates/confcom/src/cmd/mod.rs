//! Subcommands implemented in the binary itself (tools), and the runtime wrapper for services.

use std::future::Future;
use std::process::ExitCode;

pub mod attest;
pub mod demo;
pub mod detect;
pub mod quote;
pub mod quote_get;
pub mod quote_inspect;
pub mod sim;
pub mod verify;

/// Runs a service subcommand: installs tracing, builds the tokio runtime and drives `f`.
pub fn serve<F, Fut>(f: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    confcom_runtime::init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(f())
}

/// Like [`serve`], on one thread: for the device plugin, whose work is a few gRPC calls from the
/// kubelet, so that its footprint does not grow with the node's CPU count (as
/// `confcom-device-plugin` does).
pub fn serve_on_one_thread<F, Fut>(f: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    confcom_runtime::init_tracing();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(f())
}
