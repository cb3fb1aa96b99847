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
