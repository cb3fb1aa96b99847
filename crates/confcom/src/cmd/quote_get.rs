//! `confcom quote --report-data HEX --out FILE`: asks a quote helper (or aesmd) for a quote
//! over the AESM socket and writes it to a file.
//!
//! Outside an enclave there is no EREPORT, so the tool builds the app REPORT itself from
//! `--mrenclave`, `--mrsigner`, `--debug` and the report data. That is only meaningful with
//! the simulation backend (`confcom quote-helper --backend sim`), which does not check the
//! REPORT's MAC; real quoting enclaves reject such a REPORT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use sgx_quote::{Attributes, MrEnclave, MrSigner, Quote, Report, ReportBody, ReportData};

/// Arguments of `confcom quote` (without a subcommand).
#[derive(Debug, clap::Args)]
// `confcom quote`'s own `Args` flattens this one: give the group a distinct id.
#[group(id = "quote_get")]
pub struct Args {
    /// AESM socket of the quote helper.
    #[arg(long, env = "CONFCOM_AESM_SOCKET", default_value = aesm::client::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Report data to bind into the quote: hex, up to 64 bytes (zero-padded). Required.
    #[arg(long, required = false)]
    report_data: Option<String>,
    /// File to write the quote to (binary). Required.
    #[arg(long, required = false)]
    out: Option<PathBuf>,
    /// MRENCLAVE of the simulated app REPORT (32 bytes hex; default all zero).
    #[arg(long)]
    mrenclave: Option<String>,
    /// MRSIGNER of the simulated app REPORT (32 bytes hex; default all zero).
    #[arg(long)]
    mrsigner: Option<String>,
    /// ISVPRODID of the simulated app REPORT.
    #[arg(long, default_value_t = 0)]
    isv_prod_id: u16,
    /// ISVSVN of the simulated app REPORT.
    #[arg(long, default_value_t = 0)]
    isv_svn: u16,
    /// Mark the simulated enclave as a debug enclave (ATTRIBUTES.DEBUG).
    #[arg(long)]
    debug: bool,
    /// Timeout per AESM request, in ms.
    #[arg(long, default_value_t = 15_000)]
    timeout_ms: u64,
}

fn hex_bytes<const N: usize>(flag: &str, s: &str, exact: bool) -> anyhow::Result<[u8; N]> {
    let s = s.trim().trim_start_matches("0x");
    let bytes = hex::decode(s).with_context(|| format!("{flag}: not hex"))?;
    if bytes.len() > N || (exact && bytes.len() != N) {
        bail!(
            "{flag}: {} bytes, expected {}{N}",
            bytes.len(),
            if exact { "" } else { "at most " }
        );
    }
    let mut out = [0u8; N];
    out.get_mut(..bytes.len())
        .context("length checked above")?
        .copy_from_slice(&bytes);
    Ok(out)
}

/// Runs `confcom quote --report-data ... --out ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (Some(report_data), Some(out)) = (args.report_data.as_deref(), args.out.as_ref()) else {
        bail!(
            "confcom quote needs --report-data HEX and --out FILE \
             (or use `confcom quote inspect FILE`)"
        );
    };
    let report_data = hex_bytes::<64>("--report-data", report_data, false)?;
    let mr_enclave = match &args.mrenclave {
        Some(h) => hex_bytes::<32>("--mrenclave", h, true)?,
        None => [0; 32],
    };
    let mr_signer = match &args.mrsigner {
        Some(h) => hex_bytes::<32>("--mrsigner", h, true)?,
        None => [0; 32],
    };
    let mut flags = Attributes::INIT | Attributes::MODE64BIT;
    if args.debug {
        flags |= Attributes::DEBUG;
    }
    let report = Report {
        body: ReportBody {
            attributes: Attributes { flags, xfrm: 0x3 },
            mr_enclave: MrEnclave(mr_enclave),
            mr_signer: MrSigner(mr_signer),
            isv_prod_id: args.isv_prod_id,
            isv_svn: args.isv_svn,
            report_data: ReportData(report_data),
            ..ReportBody::default()
        },
        key_id: [0; 32],
        mac: [0; 16],
    };

    let client = aesm::client::Client::new(&args.socket)
        .with_timeout(Duration::from_millis(args.timeout_ms));
    let ctx = || format!("quote helper at {}", args.socket.display());
    // The same sequence as libsgx_dcap_ql out-of-proc: init (probe + fetch), size, quote.
    let init = client.init_quote_ex().with_context(ctx)?;
    // MAC the REPORT as the Intel SDK's simulated EREPORT would for the QE's target info, so a
    // simulation quote helper logs it as `report_mac="sdk-sim-valid"`.
    let report =
        match <&[u8; sgx_quote::report::TARGET_INFO_LEN]>::try_from(init.target_info.as_slice()) {
            Ok(ti) => sgx_sim::report_mac::sdk_sim_report(&report.body.to_bytes(), ti),
            Err(_) => report.to_bytes(),
        };
    let size = client.get_quote_size_ex().with_context(ctx)?;
    let (buf, _) = client.get_quote_ex(&report, size, None).with_context(ctx)?;
    let (quote, padding) =
        Quote::parse_tolerant(&buf).context("the service returned a malformed quote")?;
    let len = buf.len().saturating_sub(padding);
    let body = quote
        .sgx_report_body()
        .context("the service returned a non-SGX quote")?;
    if body.report_data.0 != report_data || body.mr_enclave.0 != mr_enclave {
        bail!("the quote does not carry the requested report body");
    }
    let bytes = buf.get(..len).context("quote length")?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {len}-byte quote v{} to {} (mrenclave={} reportdata={})",
        quote.header.version,
        out.display(),
        hex::encode(mr_enclave),
        hex::encode(report_data)
    );
    Ok(ExitCode::SUCCESS)
}
