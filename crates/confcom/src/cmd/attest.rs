//! `confcom attest`: run the attestation server (`confcom attest serve ...`), or attest a
//! quote against one (`confcom attest --url URL --quote FILE [--runtime-data FILE |
//! --runtime-data-hex HEX]`), print the token's claims and verify the token against the
//! server's `/certs`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `confcom attest`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<AttestCommand>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
enum AttestCommand {
    /// Run the attestation server (MAA-compatible API).
    Serve(attestation::attest_cli::ServeArgs),
}

/// Arguments of the client mode.
#[derive(Debug, clap::Args)]
struct ClientArgs {
    /// Attestation server base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "CONFCOM_ATTEST_URL")]
    url: Option<String>,
    /// Quote file (binary, hex or base64).
    #[arg(long)]
    quote: Option<PathBuf>,
    /// Runtime data file (its SHA-256 must be REPORTDATA[0..32]).
    #[arg(long, conflicts_with = "runtime_data_hex")]
    runtime_data: Option<PathBuf>,
    /// Runtime data as hex.
    #[arg(long)]
    runtime_data_hex: Option<String>,
    /// Send the runtime data as JSON (dataType JSON) rather than Binary.
    #[arg(long)]
    runtime_data_json: bool,
    /// Nonce to echo into the token.
    #[arg(long)]
    nonce: Option<String>,
    /// Extra trusted root (PEM) for an HTTPS server.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Validate the token's exp/nbf at this time (UNIX seconds) instead of now (for a
    /// server running with --verification-time).
    #[arg(long)]
    time: Option<i64>,
    /// Print only the verified claims as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `confcom attest`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match args.command {
        Some(AttestCommand::Serve(a)) => {
            confcom_runtime::init_tracing();
            rt.block_on(attestation::attest_cli::run(a))
        }
        None => rt.block_on(client(args.client)),
    }
}

async fn client(a: ClientArgs) -> anyhow::Result<ExitCode> {
    use attestation::attest_client::{AttestRequest, Client, decode_quote_file};
    let url = a
        .url
        .context("--url is required (or use `confcom attest serve`)")?;
    let quote_path = a.quote.context("--quote is required")?;
    let quote = decode_quote_file(
        &std::fs::read(&quote_path).with_context(|| format!("reading {}", quote_path.display()))?,
    );
    let runtime_data = match (&a.runtime_data, &a.runtime_data_hex) {
        (Some(p), _) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        (None, Some(h)) => Some(
            hex::decode(h.trim().trim_start_matches("0x"))
                .context("--runtime-data-hex is not hex")?,
        ),
        (None, None) => None,
    };
    let ca = match &a.ca_cert {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let client = Client::new(&url, ca.as_deref())?;
    let token = client
        .attest(&AttestRequest {
            quote,
            runtime_data,
            runtime_data_json: a.runtime_data_json,
            nonce: a.nonce,
        })
        .await?;
    let now = a
        .time
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp());
    let claims = client
        .verify(&token, now, None)
        .await
        .context("verifying the token against /certs")?;
    println!("{}", serde_json::to_string_pretty(&claims)?);
    if !a.json {
        eprintln!(
            "token verified against {}/certs: TCB status {}, EAR {}",
            url.trim_end_matches('/'),
            claims[attestation::attest::CLAIM_TCB_STATUS]
                .as_str()
                .unwrap_or("?"),
            claims[attestation::attest::CLAIM_EAR_STATUS]
                .as_str()
                .unwrap_or("?"),
        );
    }
    Ok(ExitCode::SUCCESS)
}
