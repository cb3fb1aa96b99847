//! `confcom detect`: this node's SGX capabilities (CPUID leaves 7 and 0x12, EPC sections,
//! sysfs EPC totals, device nodes, driver), from `sgx-platform`.
//!
//! ```text
//! confcom detect [--json] [--platform host|sim] [--dev-root DIR] [--sys-root DIR] [--sim-epc SIZE]
//! ```
//!
//! Exit 0 whether or not the node has SGX (the first line says so plainly); exit 1 only when
//! detection itself fails (an unreadable sysfs file, an invalid size).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use sgx_platform::size::format_size;
use sgx_platform::{EpcProtection, HostPlatform, Platform, PlatformReport, SimPlatform};

/// Platform implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlatformArg {
    /// The real CPU, `/dev` and `/sys`.
    Host,
    /// A simulated SGX node (nothing here is hardware).
    Sim,
}

/// Arguments of `confcom detect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where SGX facts come from.
    #[arg(long, env = "CONFCOM_PLATFORM", value_enum, default_value = "host")]
    pub platform: PlatformArg,
    /// The host's `/dev` (host platform), or the simulated device node directory (sim;
    /// default `$TMPDIR/confcom-sim/dev`). Nothing is created.
    #[arg(long, env = "CONFCOM_DEV_ROOT")]
    pub dev_root: Option<PathBuf>,
    /// The host's `/sys`.
    #[arg(long, env = "CONFCOM_SYS_ROOT", default_value = "/sys")]
    pub sys_root: PathBuf,
    /// EPC size of the simulated node (`64Mi`, `8Gi`, bytes).
    #[arg(long, env = "CONFCOM_SIM_EPC", default_value = "64Mi")]
    pub sim_epc: String,
}

/// Runs `confcom detect`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let platform: Box<dyn Platform> = match args.platform {
        PlatformArg::Host => Box::new(HostPlatform::new(
            args.dev_root.unwrap_or_else(|| PathBuf::from("/dev")),
            args.sys_root,
        )),
        PlatformArg::Sim => Box::new(SimPlatform::new(
            sgx_platform::parse_size(&args.sim_epc)?,
            args.dev_root
                .unwrap_or_else(|| std::env::temp_dir().join("confcom-sim/dev")),
        )),
    };
    let report = platform.probe()?;
    if args.json {
        let out = serde_json::json!({
            "summary": report.summary(),
            "sgx_capable": report.sgx_capable(),
            "sgx_usable": report.sgx_usable(),
            "epc_bytes": report.epc_bytes(),
            "epc_source": report.epc_source(),
            "epc_mismatch": report.epc_mismatch(),
            "report": report,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", text(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn text(r: &PlatformReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", r.summary());
    let c = &r.cpu;
    let _ = writeln!(
        s,
        "cpu:      SGX {}, launch control (FLC) {}, SGX1 {}, SGX2 {}",
        yes(c.sgx),
        yes(c.sgx_lc),
        yes(c.sgx1),
        yes(c.sgx2)
    );
    if let Some(m) = c.max_enclave_size_64 {
        let _ = writeln!(s, "enclaves: max size {} (64-bit)", format_size(m));
    }
    for (i, sec) in c.epc_sections.iter().enumerate() {
        let prot = match sec.protection {
            EpcProtection::ConfidentialityIntegrity => "confidentiality + integrity".to_owned(),
            EpcProtection::ConfidentialityOnly => "confidentiality only".to_owned(),
            EpcProtection::Reserved(v) => format!("reserved property {v}"),
        };
        let _ = writeln!(
            s,
            "epc[{i}]:   base {:#x}, size {} ({prot})",
            sec.base,
            format_size(sec.size)
        );
    }
    let _ = writeln!(
        s,
        "epc:      {} ({} bytes, from {})",
        format_size(r.epc_bytes()),
        r.epc_bytes(),
        r.epc_source()
    );
    match r.sysfs_total_bytes() {
        Some(t) => {
            let _ = writeln!(
                s,
                "sysfs:    {} bytes over {} node(s){}",
                t,
                r.sysfs_epc.len(),
                if r.epc_mismatch() {
                    " (differs from CPUID)"
                } else {
                    ""
                }
            );
        }
        None => {
            let _ = writeln!(s, "sysfs:    no sgx_total_bytes");
        }
    }
    for n in &r.devices.nodes {
        let legacy = if n.kind.is_legacy() { " (legacy)" } else { "" };
        let _ = writeln!(
            s,
            "device:   {}{legacy}: {}",
            n.host_path.display(),
            if n.present { "present" } else { "missing" }
        );
    }
    let _ = writeln!(s, "driver:   {}", r.driver);
    s
}
