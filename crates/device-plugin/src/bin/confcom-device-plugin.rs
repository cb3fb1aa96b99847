//! `confcom-device-plugin`: the device plugin and node registrar alone, with the flags of
//! `confcom device-plugin`. The DaemonSet runs this binary: it maps only the plugin's code, so
//! the process that stays resident on every SGX node is small.

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "confcom-device-plugin",
    version,
    about = "Kubelet device plugin for SGX devices and EPC, plus the node registrar"
)]
struct Cli {
    #[command(flatten)]
    args: device_plugin::cli::Args,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    confcom_runtime::init_tracing();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("confcom-device-plugin: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(device_plugin::cli::run(cli.args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("confcom-device-plugin: {e:#}");
            ExitCode::FAILURE
        }
    }
}
