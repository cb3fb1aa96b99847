//! `confcom webhook` wiring: flags to listeners, readiness, shutdown, bad configuration.

use std::process::ExitCode;
use std::time::Duration;

use tokio::sync::oneshot;
use webhook::cli::{Args, run_until};

use crate::pki::Ca;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn args(dir: &std::path::Path, port: u16, metrics_port: u16) -> Args {
    Args {
        listen: ([127, 0, 0, 1], port).into(),
        tls_cert: dir.join("tls.crt"),
        tls_key: dir.join("tls.key"),
        metrics_listen: Some(([127, 0, 0, 1], metrics_port).into()),
        cert_check_interval_secs: 0,
        drain_timeout_secs: 2,
    }
}

#[tokio::test]
async fn serves_until_shutdown_with_probes_on_the_metrics_port() {
    let dir = tempfile::tempdir().unwrap();
    Ca::new().leaf("cli").install(dir.path());
    let (port, metrics_port) = (free_port(), free_port());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(run_until(args(dir.path(), port, metrics_port), async {
        let _ = stopped.await;
    }));

    // reqwest is built without a default crypto provider: hand it a (root-less) TLS config.
    let tls = rustls::ClientConfig::builder_with_provider(webhook::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let plain = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let readyz = format!("http://127.0.0.1:{metrics_port}/readyz");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = plain.get(&readyz).send().await {
            ready = r.status() == 200;
            if ready {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ready, "the metrics port reports ready");
    let metrics = plain
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("confcom_webhook_admission_duration_seconds"),
        "{metrics}"
    );
    // The TLS port is up too.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    );

    stop.send(()).unwrap();
    let code = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stops after the shutdown signal")
        .unwrap()
        .unwrap();
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn unreadable_certificate_exits_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let code = run_until(args(dir.path(), port, free_port()), std::future::pending())
        .await
        .unwrap();
    assert_eq!(code, ExitCode::from(64));
    // Nothing was bound.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
}
