//! Token signing key rotation through the server: `POST /keys:rotate` where the server owns
//! the key alone, refusals where it does not (a key managed outside it, replicas sharing
//! state), and rotation through the key files (what a Kubernetes Secret gives).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use attestation::attest::{self, AttestState};
use attestation::attest_cli::{ServeArgs, build_state, build_state_with_store};
use attestation::runtime_state::RuntimeStore;
use attestation::token::Reload;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;

mod common;
use common::{ADMIN, ISSUER, admin_get, call, error_code, metrics, testdata, verified_token};

fn args(key: &Path) -> ServeArgs {
    ServeArgs {
        collateral: vec![testdata("dcap-qvl/sample/sgx_quote_collateral.json")],
        signing_key: key.to_owned(),
        admin_token: Some(ADMIN.into()),
        issuer: Some(ISSUER.into()),
        ..ServeArgs::default()
    }
}

/// A new P-256 key as PKCS#8 PEM (what `openssl genpkey` writes).
fn new_key_pem() -> String {
    rcgen::KeyPair::generate().unwrap().serialize_pem()
}

async fn rotate(app: &axum::Router) -> (StatusCode, Value) {
    call(
        app,
        Request::post("/keys:rotate")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// A token signed by the server's key (`GET /policies/SgxEnclave`'s policy token).
async fn signed_token(app: &axum::Router) -> Value {
    let (s, v) = admin_get(app, "/policies/SgxEnclave").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn certs_kids(app: &axum::Router) -> Vec<String> {
    let (_, jwks) = call(app, Request::get("/certs").body(Body::empty()).unwrap()).await;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap_or_default();
            (p, data)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn rotate_answers_409_for_a_key_managed_outside_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, new_key_pem()).unwrap();
    let before = snapshot(dir.path());
    let state = build_state(&ServeArgs {
        signing_key_read_only: true,
        ..args(&key)
    })
    .unwrap();
    let kid = state.keys().kid();
    let app = attest::router(state);
    let (s, v) = rotate(&app).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::CONFLICT, "KeyRotationManagedExternally"),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    // The two-step procedure: the new key published first, then signing with it.
    for says in [
        "Secret",
        "two steps",
        "retired-next.pem",
        "key.pem",
        "retired-",
    ] {
        assert!(message.contains(says), "{message}");
    }
    assert!(
        message.find("retired-next.pem") < message.find("put the new key in key.pem"),
        "{message}"
    );
    assert_eq!(certs_kids(&app).await, vec![kid]);
    assert_eq!(snapshot(dir.path()), before, "nothing written");
    // The admin token is still checked first.
    let (s, _) = call(
        &app,
        Request::post("/keys:rotate").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_missing_read_only_key_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let err = build_state(&ServeArgs {
        signing_key_read_only: true,
        ..args(&key)
    })
    .err()
    .unwrap();
    let err = format!("{err:#}");
    assert!(
        err.contains("--signing-key")
            && err.contains(&key.display().to_string())
            && err.contains("does not exist"),
        "{err}"
    );
    assert!(snapshot(dir.path()).is_empty(), "nothing generated");
}

#[tokio::test]
async fn rotate_answers_409_when_replicas_share_state_through_a_config_map() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    // A ConfigMap store over a mock API server that is never called.
    let (mock, _handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let client = kube::Client::new(mock, "confcom");
    let store = RuntimeStore::config_map(kube::Api::namespaced(client, "confcom"), "state");
    assert!(store.is_shared_by_replicas());
    let state = build_state_with_store(&args(&key), Some(store)).unwrap();
    let kid = state.keys().kid();
    let app = attest::router(state);
    let (s, v) = rotate(&app).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::CONFLICT, "KeyRotationNotShared"),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("only this replica")
            && message.contains("ConfigMap")
            && message.contains("retired-next.pem"),
        "{message}"
    );
    assert_eq!(certs_kids(&app).await, vec![kid]);
    assert!(!dir.path().join("key.pem.retired").exists());
}

#[tokio::test]
async fn rotate_works_with_a_single_replica_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let state = build_state(&ServeArgs {
        state_dir: Some(dir.path().join("state")),
        ..args(&key)
    })
    .unwrap();
    state.sync_runtime_state().await.unwrap();
    let kid1 = state.keys().kid();
    let app = attest::router(state);
    let (s, v) = rotate(&app).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let kid2 = v["kid"].as_str().unwrap().to_owned();
    assert_eq!(certs_kids(&app).await, vec![kid2, kid1.clone()]);
    assert!(
        dir.path()
            .join(format!("key.pem.retired/{kid1}.pem"))
            .exists()
    );
}

#[tokio::test]
async fn rotate_answers_409_when_the_key_file_was_changed_outside_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let state = build_state(&args(&key)).unwrap();
    let kid = state.keys().kid();
    let app = attest::router(state.clone());
    let tmp = dir.path().join("new");
    std::fs::write(&tmp, new_key_pem()).unwrap();
    std::fs::rename(&tmp, &key).unwrap();
    let before = snapshot(dir.path());
    let (s, v) = rotate(&app).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::CONFLICT, "KeyFileChanged"),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(snapshot(dir.path()), before, "nothing written");
    assert_eq!(certs_kids(&app).await, vec![kid.clone()]);
    // The next poll puts the file's key in force; then a rotation works.
    assert!(matches!(
        state.reload_signing_keys().unwrap(),
        Reload::KeyChanged { .. }
    ));
    let (s, v) = rotate(&app).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_bad_retired_key_file_at_start_up_is_logged_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, new_key_pem()).unwrap();
    std::fs::write(dir.path().join("retired-good.pem"), new_key_pem()).unwrap();
    std::fs::write(dir.path().join("retired-bad.pem"), "not a key").unwrap();
    let state = build_state(&ServeArgs {
        signing_key_read_only: true,
        ..args(&key)
    })
    .unwrap();
    let app = attest::router(state.clone());
    assert_eq!(certs_kids(&app).await.len(), 2);
    let m = metrics(&app).await;
    assert!(
        m.contains(r#"confcom_attest_signing_key_reloads_total{result="error"} 1"#),
        "{m}"
    );
    // Unchanged files: not reported again at the next poll.
    assert_eq!(state.reload_signing_keys().unwrap(), Reload::Unchanged);
}

#[test]
fn replaced_keys_are_kept_for_the_token_lifetime_plus_the_margin() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let state = build_state(&args(&key)).unwrap();
    assert_eq!(
        state.keys().retention(),
        std::time::Duration::from_secs(8 * 3600 + 900)
    );
    let state = build_state(&ServeArgs {
        token_ttl_secs: 600,
        signing_key_retention_margin_secs: 60,
        ..args(&key)
    })
    .unwrap();
    assert_eq!(
        state.keys().retention(),
        std::time::Duration::from_secs(660)
    );
}

#[tokio::test]
async fn rotate_still_works_for_a_single_writable_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let state = build_state(&args(&key)).unwrap();
    let kid1 = state.keys().kid();
    let app = attest::router(state.clone());
    let before = signed_token(&app).await;
    let (s, v) = rotate(&app).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let kid2 = v["kid"].as_str().unwrap().to_owned();
    assert_ne!(kid1, kid2);
    assert_eq!(certs_kids(&app).await, vec![kid2.clone(), kid1.clone()]);
    assert!(
        dir.path()
            .join(format!("key.pem.retired/{kid1}.pem"))
            .exists()
    );
    // The poll finds the rotation's own files: nothing to reload.
    assert_eq!(state.reload_signing_keys().unwrap(), Reload::Unchanged);
    let (header, _) = verified_token(&app, &before).await;
    assert_eq!(header.kid.as_deref(), Some(kid1.as_str()));
    let (header, _) = verified_token(&app, &signed_token(&app).await).await;
    assert_eq!(header.kid.as_deref(), Some(kid2.as_str()));
}

#[tokio::test]
async fn a_rotation_failing_on_the_file_system_is_a_json_500_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let state = build_state(&args(&key)).unwrap();
    let kid = state.keys().kid();
    let app = attest::router(state);
    // The retired directory cannot be created: a file is in the way.
    std::fs::write(dir.path().join("key.pem.retired"), "").unwrap();
    let (s, v) = rotate(&app).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::INTERNAL_SERVER_ERROR, "KeyRotationFailed"),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("file system error"), "{message}");
    assert!(
        !message.contains(&dir.path().display().to_string()),
        "no paths to clients: {message}"
    );
    assert_eq!(certs_kids(&app).await, vec![kid]);
}

#[tokio::test]
async fn a_token_signed_before_a_file_rotation_still_verifies_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let old_pem = new_key_pem();
    std::fs::write(&key, &old_pem).unwrap();
    let state = build_state(&ServeArgs {
        signing_key_read_only: true,
        ..args(&key)
    })
    .unwrap();
    let app = attest::router(state.clone());
    let kid1 = state.keys().kid();
    let before = signed_token(&app).await;

    // The operator's rotation: the new key in key.pem, the old one as retired-1.pem.
    let tmp = dir.path().join("new");
    std::fs::write(&tmp, new_key_pem()).unwrap();
    std::fs::rename(&tmp, &key).unwrap();
    std::fs::write(dir.path().join("retired-1.pem"), &old_pem).unwrap();
    let Reload::KeyChanged { previous, kid } = state.reload_signing_keys().unwrap() else {
        panic!("the key changed")
    };
    assert_eq!(previous, kid1);
    assert_eq!(certs_kids(&app).await, vec![kid.clone(), kid1.clone()]);
    let (header, claims) = verified_token(&app, &before).await;
    assert_eq!(header.kid.as_deref(), Some(kid1.as_str()));
    assert!(claims["x-ms-policy"].is_string());
    let (header, _) = verified_token(&app, &signed_token(&app).await).await;
    assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
    // Once the retired file is removed, the old key stays published from memory (for the
    // token lifetime): the token still verifies.
    std::fs::remove_file(dir.path().join("retired-1.pem")).unwrap();
    assert_eq!(state.reload_signing_keys().unwrap(), Reload::RetiredChanged);
    verified_token(&app, &before).await;
    assert!(
        metrics(&app)
            .await
            .contains(r#"confcom_attest_signing_key_reloads_total{result="ok"} 2"#)
    );

    // A broken key file: an error, counted at every poll, and the keys in force stay.
    std::fs::write(&key, "not a key").unwrap();
    assert!(state.reload_signing_keys().is_err());
    assert!(state.reload_signing_keys().is_err());
    assert_eq!(state.keys().kid(), kid);
    assert_eq!(certs_kids(&app).await, vec![kid, kid1]);
    verified_token(&app, &before).await;
    let m = metrics(&app).await;
    assert!(
        m.contains(r#"confcom_attest_signing_key_reloads_total{result="error"} 2"#),
        "{m}"
    );
}

#[test]
fn signing_key_flags_parse() {
    use clap::Parser;
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }
    let a = Cli::try_parse_from(["serve", "--pccs-url", "http://p"])
        .unwrap()
        .args;
    assert!(!a.signing_key_read_only);
    assert_eq!(a.signing_key_poll_secs, 10);
    assert_eq!(a.signing_key_retention_margin_secs, 900);
    let a = Cli::try_parse_from([
        "serve",
        "--pccs-url",
        "http://p",
        "--signing-key-read-only",
        "--signing-key-poll-secs",
        "0",
        "--signing-key-retention-margin-secs",
        "120",
    ])
    .unwrap()
    .args;
    assert!(a.signing_key_read_only);
    assert_eq!(a.signing_key_poll_secs, 0);
    assert_eq!(a.signing_key_retention_margin_secs, 120);
}

#[tokio::test(start_paused = true)]
async fn the_poll_task_picks_up_a_changed_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, new_key_pem()).unwrap();
    let state: AttestState = build_state(&ServeArgs {
        signing_key_read_only: true,
        ..args(&key)
    })
    .unwrap();
    let kid1 = state.keys().kid();
    let task = tokio::spawn(
        state
            .clone()
            .run_signing_key_reload(std::time::Duration::from_secs(10)),
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    std::fs::write(&key, new_key_pem()).unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(state.keys().kid(), kid1, "not before the poll");
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    assert_ne!(state.keys().kid(), kid1);
    task.abort();
}
