//! `confcom quote`: inspect a quote file (`confcom quote inspect FILE`), or ask a quote
//! helper for a quote over the AESM socket (`confcom quote --report-data HEX ...`).

use std::process::ExitCode;

use super::{quote_get, quote_inspect};

/// Arguments of `confcom quote`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<QuoteCommand>,
    #[command(flatten)]
    get: quote_get::Args,
}

#[derive(Debug, clap::Subcommand)]
enum QuoteCommand {
    /// Print the fields of a quote file (binary, hex or base64).
    Inspect(quote_inspect::Args),
}

/// Runs `confcom quote`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(QuoteCommand::Inspect(a)) => quote_inspect::run(a),
        None => quote_get::run(args.get),
    }
}
