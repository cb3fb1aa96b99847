//! `confcom verify`: verify a DCAP quote offline against collateral, with `dcap-verify`.
//!
//! ```text
//! confcom verify --quote FILE (--collateral FILE.json | --collateral-dir DIR) [--at UNIX_SECONDS]
//!                [--root PEM] [--allow-debug] [--allow-missing-crls] [--allow-expired] [--json]
//! ```
//!
//! The quote file is binary or ASCII hex (optionally `0x`-prefixed). `--collateral` is dcap-qvl's JSON collateral
//! object. `--collateral-dir` is a directory of Intel PCS API v4 responses with these file names:
//!
//! | file | content |
//! |---|---|
//! | `tcb_info.json` | body of `GET /sgx/certification/v4/tcb?fmspc=…` (`{"tcbInfo":…,"signature":…}`) |
//! | `tcb_info_issuer_chain.pem` | `TCB-Info-Issuer-Chain` header (PEM, URL-encoded or not) |
//! | `qe_identity.json` | body of `GET /sgx/certification/v4/qe/identity` |
//! | `qe_identity_issuer_chain.pem` | `SGX-Enclave-Identity-Issuer-Chain` header |
//! | `pck_crl.der` | body of `GET /sgx/certification/v4/pckcrl?ca=processor\|platform` (DER, PEM or hex) |
//! | `pck_crl_issuer_chain.pem` | `SGX-PCK-CRL-Issuer-Chain` header (optional) |
//! | `root_ca_crl.der` | the Intel SGX Root CA CRL (DER, PEM, or PCCS's hex form) |
//! | `pck_cert_chain.pem` | optional: PCK chain for quotes that do not carry it (certification data type 1–4) |
//!
//! Exit 0 when the quote is cryptographically valid and the collateral applies, whatever the TCB status (printed
//! with the advisories); exit 1 with one line naming the failed step otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use dcap_verify::{Collateral, PcsResponses, Policy, TrustAnchors, UnixTime, Verdict, Verifier};
use serde_json::json;

/// Arguments of `confcom verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Quote file (binary or ASCII hex).
    #[arg(long)]
    pub quote: PathBuf,
    /// Collateral as dcap-qvl's JSON object.
    #[arg(
        long,
        conflicts_with = "collateral_dir",
        required_unless_present = "collateral_dir"
    )]
    pub collateral: Option<PathBuf>,
    /// Directory of Intel PCS v4 responses (see the module documentation for the file names).
    #[arg(long)]
    pub collateral_dir: Option<PathBuf>,
    /// Verification time in UNIX seconds (default: now).
    #[arg(long)]
    pub at: Option<u64>,
    /// PEM root CA certificate(s) whose key replaces the Intel SGX Root CA key (test PKIs, simulation).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Accept debug enclaves.
    #[arg(long)]
    pub allow_debug: bool,
    /// Accept collateral without PCK CRL / root CA CRL.
    #[arg(long)]
    pub allow_missing_crls: bool,
    /// Report expired or not-yet-valid collateral as `collateral_expired` instead of failing.
    #[arg(long)]
    pub allow_expired: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `confcom verify`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match verify(&args) {
        Ok(v) => {
            if args.json {
                println!("{}", verdict_json(&v));
            } else {
                print_text(&v);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(line) => {
            eprintln!("verification failed: {line}");
            Ok(ExitCode::from(1))
        }
    }
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))
}

fn read_opt(p: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", p.display())),
    }
}

/// Binary quote, or ASCII hex.
fn decode_quote(raw: Vec<u8>) -> Vec<u8> {
    let text = std::str::from_utf8(&raw).ok().map(str::trim);
    if let Some(t) = text {
        let t = t.strip_prefix("0x").unwrap_or(t);
        let compact: String = t.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if !compact.is_empty()
            && compact.chars().all(|c| c.is_ascii_hexdigit())
            && let Ok(b) = hex::decode(&compact)
        {
            return b;
        }
    }
    raw
}

fn collateral_from_dir(dir: &Path) -> Result<Collateral, String> {
    let f = |name: &str| dir.join(name);
    let tcb = read(&f("tcb_info.json"))?;
    let tcb_chain = read(&f("tcb_info_issuer_chain.pem"))?;
    let qe = read(&f("qe_identity.json"))?;
    let qe_chain = read(&f("qe_identity_issuer_chain.pem"))?;
    let pck_crl = read_opt(&f("pck_crl.der"))?;
    let pck_crl_chain = read_opt(&f("pck_crl_issuer_chain.pem"))?.unwrap_or_default();
    let root_crl = read_opt(&f("root_ca_crl.der"))?;
    let pck_chain = read_opt(&f("pck_cert_chain.pem"))?;
    Collateral::from_pcs(PcsResponses {
        tcb_info: &tcb,
        tcb_info_issuer_chain: &tcb_chain,
        qe_identity: &qe,
        qe_identity_issuer_chain: &qe_chain,
        pck_crl: pck_crl.as_deref(),
        pck_crl_issuer_chain: &pck_crl_chain,
        root_ca_crl: root_crl.as_deref(),
        pck_certificate_chain: pck_chain.as_deref(),
    })
    .map_err(|e| e.to_string())
}

fn verify(args: &Args) -> Result<Verdict, String> {
    let quote = decode_quote(read(&args.quote)?);
    let collateral = match (&args.collateral, &args.collateral_dir) {
        (Some(p), _) => Collateral::from_json(&read(p)?).map_err(|e| e.to_string())?,
        (None, Some(d)) => collateral_from_dir(d)?,
        (None, None) => return Err("--collateral or --collateral-dir is required".into()),
    };
    let anchors = match &args.root {
        Some(p) => TrustAnchors::from_pem(&read(p)?).map_err(|e| format!("--root: {e}"))?,
        None => TrustAnchors::intel(),
    };
    let now = match args.at {
        Some(t) => UnixTime(t),
        None => UnixTime(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_secs(),
        ),
    };
    let policy = Policy::default()
        .accept_any_status()
        .allow_debug(args.allow_debug)
        .allow_missing_crls(args.allow_missing_crls)
        .allow_expired_collateral(args.allow_expired);
    Verifier::new(anchors)
        .verify(&quote, &collateral, now, &policy)
        .map_err(|e| e.to_string())
}

fn verdict_json(v: &Verdict) -> serde_json::Value {
    json!({
        "status": v.status.as_str(),
        "advisory_ids": v.advisory_ids,
        "platform_status": v.platform_status.as_str(),
        "qe_status": v.qe_status.as_str(),
        "mr_enclave": hex::encode(v.mr_enclave),
        "mr_signer": hex::encode(v.mr_signer),
        "isv_prod_id": v.isv_prod_id,
        "isv_svn": v.isv_svn,
        "attributes": hex::encode(v.attributes),
        "debug": v.debug,
        "report_data": hex::encode(v.report_data),
        "fmspc": hex::encode_upper(v.fmspc),
        "pce_id": hex::encode_upper(v.pce_id),
        "tcb_evaluation_data_number": v.tcb_evaluation_data_number,
        "valid_until": v.valid_until.0,
        "valid_until_utc": v.valid_until.to_string(),
        "collateral_expired": v.collateral_expired,
    })
}

fn print_text(v: &Verdict) {
    println!("status: {}", v.status);
    let adv = if v.advisory_ids.is_empty() {
        "none".to_owned()
    } else {
        v.advisory_ids.join(", ")
    };
    println!("advisory_ids: {adv}");
    println!("mr_enclave: {}", hex::encode(v.mr_enclave));
    println!("mr_signer: {}", hex::encode(v.mr_signer));
    println!("isv_prod_id: {}", v.isv_prod_id);
    println!("isv_svn: {}", v.isv_svn);
    println!("debug: {}", v.debug);
    println!("report_data: {}", hex::encode(v.report_data));
    println!("fmspc: {}", hex::encode_upper(v.fmspc));
    println!("valid_until: {} ({})", v.valid_until, v.valid_until.0);
    if v.collateral_expired {
        println!("collateral_expired: true");
    }
}
