//! The server over TLS on loopback: requests, bad inputs, certificate rotation, shutdown.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use webhook::tls::{CertReloader, provider, server_config};
use webhook::{AppState, router};

use crate::pki::Ca;
use crate::{patch_of, review_body};

struct Running {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(dir: &std::path::Path) -> Running {
    let state = AppState::new();
    let reloader = CertReloader::new(
        dir.join("tls.crt"),
        dir.join("tls.key"),
        Duration::ZERO,
        Some(state.metrics().clone()),
    )
    .unwrap();
    let tls = server_config(Arc::new(reloader)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(state.clone());
    let task = tokio::spawn(async move {
        confcom_runtime::tls::serve_tls(
            listener,
            tls,
            app,
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        )
        .await;
    });
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

fn client_config(ca: &CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// The leaf certificate a fresh TLS handshake sees.
async fn served_certificate(
    addr: std::net::SocketAddr,
    ca: &CertificateDer<'static>,
) -> CertificateDer<'static> {
    let connector = TlsConnector::from(Arc::new(client_config(ca)));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test]
async fn serves_admission_reviews_over_tls_and_rotates_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let first = ca.leaf("webhook-1");
    first.install(dir.path());
    let mut running = start(dir.path()).await;
    let base = format!("https://localhost:{}", running.addr.port());

    let client = reqwest::Client::builder()
        .use_preconfigured_tls(client_config(&ca.der()))
        .resolve("localhost", running.addr)
        .build()
        .unwrap();

    // A pod that requests EPC, over HTTP/2 (ALPN), on a kept-alive connection.
    let resp = client
        .post(format!("{base}/mutate"))
        .header("content-type", "application/json")
        .body(review_body("aesmd-multi-container"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let review: Value = resp.json().await.unwrap();
    assert_eq!(review["response"]["allowed"], true);
    assert!(patch_of(&review).unwrap().as_array().unwrap().len() > 5);

    // Bad inputs are 400 with a reason, over the wire too.
    for (body, want) in [
        ("not json".to_owned(), "not AdmissionReview JSON"),
        (
            r#"{"apiVersion":"v1","kind":"Pod"}"#.to_owned(),
            "expected kind",
        ),
    ] {
        let resp = client
            .post(format!("{base}/mutate"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        assert!(resp.text().await.unwrap().contains(want));
    }
    let resp = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // HTTP/1.1 (an API server with HTTP/2 disabled) works the same.
    let mut h1_tls = client_config(&ca.der());
    h1_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let h1 = reqwest::Client::builder()
        .use_preconfigured_tls(h1_tls)
        .resolve("localhost", running.addr)
        .build()
        .unwrap();
    let resp = h1
        .post(format!("{base}/mutate"))
        .body(review_body("mismatch"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    let review: Value = resp.json().await.unwrap();
    assert_eq!(review["response"]["allowed"], false);
    drop(h1);

    // A plain HTTP client speaking to the TLS port gets nowhere, and the server survives.
    let mut plain = TcpStream::connect(running.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"POST /mutate HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut buf).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // Certificate rotation: new files, new handshakes see the new certificate.
    assert_eq!(served_certificate(running.addr, &ca.der()).await, first.der);
    let second = ca.leaf("webhook-2");
    second.install(dir.path());
    assert_eq!(
        served_certificate(running.addr, &ca.der()).await,
        second.der
    );

    // A broken pair (key of another certificate) is ignored: the last good one stays.
    let third = ca.leaf("webhook-3");
    std::fs::write(dir.path().join("tls.key"), &third.key_pem).unwrap();
    assert_eq!(
        served_certificate(running.addr, &ca.der()).await,
        second.der
    );
    // ... until the matching certificate arrives.
    third.install(dir.path());
    assert_eq!(served_certificate(running.addr, &ca.der()).await, third.der);

    // The kept-alive client still works (its connection keeps its certificate).
    let resp = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503); // nobody marked this test server ready

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("confcom_webhook_certificate_reloads_total{result=\"success\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("confcom_webhook_certificate_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    let not_after = webhook::tls::not_after(&rustls::sign::CertifiedKey::new(
        vec![third.der.clone()],
        rustls::crypto::aws_lc_rs::sign::any_supported_type(
            &rustls_pki_types::PrivateKeyDer::from_pem_slice(third.key_pem.as_bytes()).unwrap(),
        )
        .unwrap(),
    ))
    .unwrap();
    assert!(not_after > 1_700_000_000, "{not_after}");
    assert!(
        metrics.contains(&format!(
            "confcom_webhook_certificate_not_after_seconds {not_after}"
        )),
        "{metrics}"
    );

    // Graceful shutdown: the server stops accepting and returns once the client is gone.
    running.stop.take().unwrap().send(()).unwrap();
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), &mut running.task)
        .await
        .expect("server drains and stops")
        .unwrap();
    assert!(TcpStream::connect(running.addr).await.is_err());
}

#[tokio::test]
async fn unloadable_certificate_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = CertReloader::new(
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        Duration::ZERO,
        None,
    )
    .unwrap_err();
    assert!(missing.to_string().contains("reading"), "{missing}");
    std::fs::write(dir.path().join("tls.crt"), "not pem").unwrap();
    std::fs::write(dir.path().join("tls.key"), "not pem").unwrap();
    let empty = CertReloader::new(
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        Duration::ZERO,
        None,
    )
    .unwrap_err();
    assert!(
        empty.to_string().contains("holds no PEM certificate"),
        "{empty}"
    );
    let ca = Ca::new();
    let (a, b) = (ca.leaf("a"), ca.leaf("b"));
    std::fs::write(dir.path().join("tls.crt"), &a.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &b.key_pem).unwrap();
    let mismatch = CertReloader::new(
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        Duration::ZERO,
        None,
    )
    .unwrap_err();
    assert!(mismatch.to_string().contains("certificate"), "{mismatch}");
}
