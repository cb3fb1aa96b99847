//! `confcom`: the SGX confidential computing add-on for Kubernetes, one binary with a
//! subcommand per component (see the README and `docs/`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Exit code for invalid configuration (BSD `EX_USAGE`), used before any socket is bound.
pub const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "confcom",
    version,
    about = "Intel SGX confidential computing add-on for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start-up; boxing would only add noise"
)]
enum Command {
    /// Inspect SGX quotes, or ask a quote helper for one.
    Quote(cmd::quote::Args),
    /// Verify a DCAP quote against collateral.
    Verify(cmd::verify::Args),
    /// Print this node's SGX capabilities.
    Detect(cmd::detect::Args),
    /// Kubelet device plugin for SGX devices and EPC (DaemonSet).
    DevicePlugin(device_plugin::cli::Args),
    /// AESM-compatible quote helper (DaemonSet).
    QuoteHelper(quote_helper::cli::Args),
    /// Simulation tools (export the simulated PKI and collateral).
    Sim(cmd::sim::Args),
    /// Mutating admission webhook (Deployment).
    Webhook(webhook::cli::Args),
    /// PCCS-compatible collateral cache.
    Pccs(attestation::pccs_cli::Args),
    /// Attestation service, or a client that attests a quote.
    Attest(cmd::attest::Args),
    /// Run the whole flow locally in simulation.
    Demo(cmd::demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Quote(a) => cmd::quote::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Detect(a) => cmd::detect::run(a),
        Command::DevicePlugin(a) => cmd::serve_on_one_thread(|| device_plugin::cli::run(a)),
        Command::QuoteHelper(a) => cmd::serve(|| quote_helper::cli::run(a)),
        Command::Sim(a) => cmd::sim::run(a),
        Command::Webhook(a) => cmd::serve(|| webhook::cli::run(a)),
        Command::Pccs(a) => cmd::serve(|| attestation::pccs_cli::run(a)),
        Command::Attest(a) => cmd::attest::run(a),
        Command::Demo(a) => cmd::demo::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("confcom: {e:#}");
            ExitCode::FAILURE
        }
    }
}
