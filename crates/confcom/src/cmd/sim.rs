//! `confcom sim`: tools for the simulated SGX PKI (`sgx-sim`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `confcom sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SimCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SimCommand {
    /// Write the simulated root CA, collateral (JSON and PCS-style files) and PCK chain.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// Simulation state directory (as the quote helper's --sim-state); created if missing.
    #[arg(long, env = "CONFCOM_SIM_STATE")]
    sim_state: PathBuf,
    /// Output directory: root-ca.pem, collateral.json, pck-chain.pem, pcs/*.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `confcom sim`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        SimCommand::Export(a) => {
            let now = time::OffsetDateTime::now_utc();
            let sim = sgx_sim::state::load_or_create(&a.sim_state, now)
                .with_context(|| format!("loading simulation state {}", a.sim_state.display()))?;
            let written = sgx_sim::state::export(&sim, &a.out, now)
                .with_context(|| format!("exporting to {}", a.out.display()))?;
            for p in written {
                println!("{}", p.display());
            }
            eprintln!(
                "note: this is a SIMULATED PKI (confcom SIMULATED, not Intel); trust root-ca.pem only for tests"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
