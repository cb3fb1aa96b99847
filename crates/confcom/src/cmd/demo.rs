//! `confcom demo`: the whole add-on flow in one process, in simulation, on any machine.
//!
//! It starts a simulated SGX node (EPC and device nodes in a temp dir), the quote helper with
//! the simulation backend on a temporary AESM socket, a PCCS loaded with the simulated
//! collateral and the attestation server on loopback. Then it plays an enclave app: it asks
//! the quote helper for the QE's target info, builds a REPORT whose REPORTDATA is
//! SHA-256(runtime data), gets a quote over the AESM socket, attests it, and verifies the
//! token against the server's `/certs`. Each step prints its timing; the last line is
//! `demo: ok`, or `demo: failed at <step>: <reason>`.
//!
//! Everything here is simulated: the trust anchor is the simulated root CA written to the
//! state directory, never Intel's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use attestation::attest_client::{AttestRequest, Client as AttestClient};
use sgx_platform::Platform as _;
use sgx_quote::{Attributes, MrEnclave, MrSigner, Quote, Report, ReportBody, ReportData};
use tokio::sync::watch;

/// Arguments of `confcom demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Leave the services running after the flow and print their addresses (Ctrl-C stops).
    #[arg(long)]
    keep_running: bool,
    /// Where the simulated node keeps its state (default: a new temporary directory).
    #[arg(long, env = "CONFCOM_DEMO_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// EPC size of the simulated node.
    #[arg(long, default_value = "64Mi")]
    sim_epc: String,
    /// Runtime data the app binds into its quote (REPORTDATA[0..32] = SHA-256 of it).
    #[arg(long, default_value = "{\"pubkey\":\"demo\"}")]
    runtime_data: String,
}

/// Runs `confcom demo`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut demo = Demo::default();
    match rt.block_on(flow(&args, &mut demo)) {
        Ok(()) => {
            println!("demo: ok");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!(
                "demo: failed at {}: {e:#}",
                demo.current.unwrap_or("start-up")
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Step bookkeeping: numbering, timing and the name of the step in progress.
#[derive(Default)]
struct Demo {
    n: usize,
    current: Option<&'static str>,
    started: Option<Instant>,
}

impl Demo {
    fn begin(&mut self, name: &'static str) {
        self.n += 1;
        self.current = Some(name);
        self.started = Some(Instant::now());
    }

    fn done(&mut self, detail: impl std::fmt::Display) {
        let ms = self
            .started
            .map(|s| s.elapsed().as_secs_f64() * 1000.0)
            .unwrap_or_default();
        println!(
            "[{}] {:<34} {:>8.2} ms  {detail}",
            self.n,
            self.current.unwrap_or(""),
            ms
        );
        self.current = None;
    }
}

/// Addresses and handles of the in-process services.
struct Services {
    socket: PathBuf,
    pccs: SocketAddr,
    attest: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn flow(args: &Args, demo: &mut Demo) -> anyhow::Result<()> {
    let tmp;
    let dir: PathBuf = match &args.state_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new().prefix("confcom-demo-").tempdir()?;
            tmp.path().to_owned()
        }
    };
    println!("confcom demo (simulation; state in {})", dir.display());
    let now = time::OffsetDateTime::now_utc();

    demo.begin("simulated SGX node");
    let epc = sgx_platform::size::parse_size(&args.sim_epc)
        .with_context(|| format!("--sim-epc {}", args.sim_epc))?;
    let platform = sgx_platform::sim::SimPlatform::new(epc, dir.join("dev"));
    platform.create_device_nodes()?;
    let report = platform.probe()?;
    demo.done(report.summary());

    demo.begin("simulated PKI and collateral");
    let sim = sgx_sim::state::load_or_create(&dir.join("sim"), now)?;
    let root_pem = dir.join("root-ca.pem");
    std::fs::write(&root_pem, sim.pki.root_ca_pem())?;
    let collateral_json = dir.join("collateral.json");
    std::fs::write(&collateral_json, sim.collateral(now)?.to_json())?;
    demo.done(format!(
        "root {} (simulated, never Intel's)",
        root_pem.display()
    ));

    let services = start_services(demo, &dir, sim, &root_pem, &collateral_json).await?;

    demo.begin("enclave app: REPORT for the QE");
    let client = aesm::client::Client::new(&services.socket);
    let init = {
        let c = client.clone();
        tokio::task::spawn_blocking(move || c.init_quote_ex()).await??
    };
    let runtime_data = args.runtime_data.as_bytes().to_vec();
    let mut report_data = [0u8; 64];
    report_data[..32].copy_from_slice(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &runtime_data).as_ref(),
    );
    let app_report = demo_report(report_data);
    demo.done(format!(
        "QE target info {} B; REPORTDATA = SHA-256(runtime data) = {}",
        init.target_info.len(),
        hex::encode(&report_data[..32])
    ));

    demo.begin("quote over the AESM socket");
    let quote = {
        let c = client.clone();
        let report = app_report.to_bytes().to_vec();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
            let size = c.get_quote_size_ex()?;
            let (buf, _) = c.get_quote_ex(&report, size, None)?;
            Ok(buf)
        })
        .await??
    };
    let (parsed, padding) = Quote::parse_tolerant(&quote)?;
    let quote_len = quote.len() - padding;
    demo.done(format!(
        "v{} quote, {quote_len} B, MRENCLAVE {}",
        parsed.header.version,
        hex::encode(app_report.body.mr_enclave.0)
    ));
    let quote = quote[..quote_len].to_vec();

    demo.begin("attest (MAA-compatible API)");
    let url = format!("http://{}", services.attest);
    let attest = AttestClient::new(&url, None)?;
    let token = attest
        .attest(&AttestRequest {
            quote,
            runtime_data: Some(runtime_data),
            runtime_data_json: true,
            nonce: Some("confcom-demo".into()),
        })
        .await?;
    demo.done(format!("token of {} B", token.len()));

    demo.begin("verify the token against /certs");
    let claims = attest
        .verify(
            &token,
            time::OffsetDateTime::now_utc().unix_timestamp(),
            Some(&url),
        )
        .await?;
    let mr = claims["x-ms-sgx-mrenclave"].as_str().unwrap_or_default();
    if mr != hex::encode(app_report.body.mr_enclave.0) {
        bail!("token MRENCLAVE {mr} is not the app's");
    }
    let rd = claims["x-ms-sgx-report-data"].as_str().unwrap_or_default();
    if rd != hex::encode(report_data) {
        bail!("token report data {rd} is not the app's");
    }
    demo.done("ES256 signature, issuer, validity and MRENCLAVE/REPORTDATA match");
    for key in [
        "x-ms-attestation-type",
        "x-ms-sgx-is-debuggable",
        "x-ms-sgx-mrenclave",
        "x-ms-sgx-mrsigner",
        "x-ms-sgx-product-id",
        "x-ms-sgx-svn",
        "x-ms-sgx-report-data",
        "x-ms-runtime",
        attestation::attest::CLAIM_TCB_STATUS,
        attestation::attest::CLAIM_ADVISORY_IDS,
        attestation::attest::CLAIM_EAR_STATUS,
        "iss",
        "exp",
        "nonce",
    ] {
        if let Some(v) = claims.get(key) {
            println!("    {key}: {v}");
        }
    }

    if args.keep_running {
        println!("services are running (Ctrl-C stops them):");
        println!(
            "  quote helper (AESM socket): {}",
            services.socket.display()
        );
        println!(
            "  PCCS:        http://{}/sgx/certification/v4/",
            services.pccs
        );
        println!(
            "  attestation: http://{}/attest/SgxEnclave?api-version=2022-08-01",
            services.attest
        );
        println!("  JWKS:        http://{}/certs", services.attest);
        println!(
            "  trust anchor for `confcom verify --root`: {}",
            root_pem.display()
        );
        confcom_runtime::shutdown_signal().await;
    }
    let _ = services.stop.send(true);
    for t in services.tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    Ok(())
}

async fn start_services(
    demo: &mut Demo,
    dir: &Path,
    sim: sgx_sim::Simulation,
    root_pem: &Path,
    collateral_json: &Path,
) -> anyhow::Result<Services> {
    let (stop, rx) = watch::channel(false);
    let mut tasks = Vec::new();

    demo.begin("quote helper (sim backend)");
    let socket = dir.join("aesmd").join("aesm.socket");
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = quote_helper::metrics::Metrics::register(&mut registry);
    let backend = Arc::new(quote_helper::backend::sim::SimBackend::new(sim));
    let server = quote_helper::server::Server::bind(
        quote_helper::server::ServerConfig {
            socket: socket.clone(),
            socket_mode: 0o666,
            max_connections: 64,
            max_pending: 1024,
            io_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(2),
        },
        backend,
        metrics,
    )?;
    tasks.push(tokio::spawn(server.serve(stopped(rx.clone()))));
    demo.done(socket.display());

    demo.begin("PCCS (offline, simulated collateral)");
    let store = attestation::store::Store::open(&dir.join("pccs"))?;
    let clock = attestation::Clock::system();
    let imported =
        attestation::pccs::import_paths(&store, &[collateral_json.to_owned()], clock.now())?;
    let pccs_state = attestation::pccs::PccsState::new(
        store,
        attestation::pccs::Config {
            mode: attestation::pccs::Mode::Offline,
            ..attestation::pccs::Config::default()
        },
        clock,
    )?;
    let pccs_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let pccs = pccs_listener.local_addr()?;
    let shutdown = stopped(rx.clone());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = attestation::pccs::serve_on(pccs_listener, pccs_state, shutdown).await {
            tracing::error!(error = %e, "PCCS stopped");
        }
    }));
    demo.done(format!("http://{pccs} ({} entries)", imported.len()));

    demo.begin("attestation server");
    let attest_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let attest = attest_listener.local_addr()?;
    let serve_args = attestation::attest_cli::ServeArgs {
        listen: attest,
        tls_cert: None,
        tls_key: None,
        pccs_url: Some(format!("http://{pccs}")),
        collateral: Vec::new(),
        root: Some(root_pem.to_owned()),
        policy: None,
        signing_key: dir.join("attest-signing-key.pem"),
        verification_time: None,
        admin_token: None,
        issuer: None,
        token_ttl_secs: 3600,
        collateral_timeout_secs: 5,
        collateral_attempts: 2,
        ..attestation::attest_cli::ServeArgs::default()
    };
    let state = attestation::attest_cli::build_state(&serve_args)?;
    let shutdown = stopped(rx);
    tasks.push(tokio::spawn(async move {
        if let Err(e) = attestation::attest::serve_on(attest_listener, state, shutdown).await {
            tracing::error!(error = %e, "attestation server stopped");
        }
    }));
    demo.done(format!(
        "http://{attest} (trust anchor: the simulated root)"
    ));

    Ok(Services {
        socket,
        pccs,
        attest,
        stop,
        tasks,
    })
}

/// The demo enclave's REPORT: a fixed, recognisable identity, production mode (not debug).
fn demo_report(report_data: [u8; 64]) -> Report {
    let digest = |s: &str| {
        let mut out = [0u8; 32];
        out.copy_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes()).as_ref(),
        );
        out
    };
    let body = ReportBody {
        mr_enclave: MrEnclave(digest("confcom demo enclave")),
        mr_signer: MrSigner(digest("confcom demo signer")),
        attributes: Attributes {
            flags: Attributes::INIT | Attributes::MODE64BIT,
            xfrm: 0x3,
        },
        isv_prod_id: 1,
        isv_svn: 1,
        report_data: ReportData(report_data),
        ..ReportBody::default()
    };
    Report {
        body,
        key_id: [0; 32],
        mac: [0; 16],
    }
}
