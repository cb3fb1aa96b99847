//! Run-time policy and signer changes shared through a runtime state store
//! ([`attestation::runtime_state`]): replicas (`AttestState`s) sharing one [`DirStore`] see a
//! change made through another after their poll step, restarts keep it, a changed start-up
//! configuration wins, a failing store refuses changes (503) without changing anything, a
//! compare-and-swap conflict is retried on the latest state, and an invalid stored document is
//! never applied. Attestation uses the real quote of set A (testdata/dcap/INDEX.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attestation::attest::{self, AttestState, SyncOutcome};
use attestation::client::CollateralSource;
use attestation::policy_jws::PolicySigners;
use attestation::runtime_state::{
    BasedOn, BoxFuture, DirStore, MAX_SIGNER_OPS, RuntimeState, RuntimeStore, STATE_KEY, SignerOp,
    SignerOpKind, Snapshot, StateBackend, StoreError, StoredPolicy,
};
use attestation::token::KeyRing;
use attestation::verify::{DcapVerifier, QuoteVerifier};
use attestation::{Clock, collateral::PreparedCollateral};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

mod common;
use common::{
    ADMIN, ISSUER, Signer, T_A, admin_get, assert_maybe_stored, assert_unavailable, bundle_a, call,
    error_code, metrics, put_policy, quote_a, signer_set, token_claims, unavailable_message,
    unsigned_policy, unsigned_reset,
};

/// Whether the quote of set A is a debug enclave (the policies below allow exactly that).
fn debug_a() -> bool {
    DcapVerifier::new(dcap_verify::TrustAnchors::intel())
        .verify(&quote_a(), &PreparedCollateral::new(bundle_a()), T_A)
        .unwrap()
        .debug
}

/// The start-up policy: set A's quote passes.
fn allow() -> String {
    format!("allow_debug: {}\n", debug_a())
}

/// A tightened policy: set A (ConfigurationAndSWHardeningNeeded) is denied.
fn deny() -> String {
    format!(
        "allow_debug: {}\naccepted_tcb_statuses: [UpToDate]\n",
        debug_a()
    )
}

/// One replica: set A's collateral, its clock, [`ADMIN`], [`ISSUER`], `signers`, `store`.
struct Replica {
    state: AttestState,
    app: axum::Router,
}

impl Replica {
    fn new(startup_policy: &str, signers: PolicySigners, store: &RuntimeStore) -> Self {
        Self::with(startup_policy, signers, Some(store.clone()), None)
    }

    /// A replica with any store (or none) and staleness limit.
    fn with(
        startup_policy: &str,
        signers: PolicySigners,
        store: Option<RuntimeStore>,
        max_staleness: Option<Duration>,
    ) -> Self {
        let state = AttestState::new(
            Arc::new(DcapVerifier::new(dcap_verify::TrustAnchors::intel())),
            CollateralSource::from_bundles(vec![bundle_a()]),
            KeyRing::ephemeral().unwrap(),
            startup_policy,
            attest::Config {
                issuer: ISSUER.into(),
                admin_token: Some(ADMIN.into()),
                policy_signers: signers,
                runtime_store: store,
                max_staleness,
                ..attest::Config::default()
            },
            Clock::fixed(T_A),
        )
        .unwrap();
        let app = attest::router(state.clone());
        Self { state, app }
    }

    /// A replica whose first read of the store succeeded.
    async fn started(startup_policy: &str, signers: PolicySigners, store: &RuntimeStore) -> Self {
        let r = Self::new(startup_policy, signers, store);
        r.sync().await;
        assert!(r.state.probes().is_ready());
        r
    }

    async fn sync(&self) -> SyncOutcome {
        self.state.sync_runtime_state().await.unwrap()
    }

    /// `POST /attest/SgxEnclave` with set A's quote.
    async fn attest(&self) -> (StatusCode, Value) {
        let body = json!({ "quote": URL_SAFE_NO_PAD.encode(quote_a()) });
        call(
            &self.app,
            Request::post("/attest/SgxEnclave?api-version=2022-08-01")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn assert_allows(&self) {
        let (s, v) = self.attest().await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    async fn assert_denies(&self) {
        let (s, v) = self.attest().await;
        assert_eq!(
            (s, error_code(&v)),
            (StatusCode::UNAUTHORIZED, "PolicyDenied"),
            "{v}"
        );
    }

    async fn put(&self, body: &str) -> (StatusCode, Value) {
        put_policy(&self.app, body).await
    }

    async fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        call(
            &self.app,
            Request::post(format!("{path}?api-version=2022-08-01"))
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
    }

    /// `GET /certificates`: the signer certificates (DER) in force.
    async fn signers(&self) -> Vec<Vec<u8>> {
        let (s, v) = get(&self.app, "/certificates").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        // Issued at set A's time: read, not verified (other tests verify these tokens).
        token_claims(&v)["x-ms-policy-certificates"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| STANDARD.decode(k["x5c"][0].as_str().unwrap()).unwrap())
            .collect()
    }

    /// `GET /policies/SgxEnclave`: the policy text in force.
    async fn policy_text(&self) -> String {
        let (s, v) = get(&self.app, "/policies/SgxEnclave").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["policy"].as_str().unwrap().to_owned()
    }
}

/// The stored document of a [`DirStore`] in `dir`.
fn stored(dir: &Path) -> RuntimeState {
    RuntimeState::from_json(&std::fs::read_to_string(dir.join(STATE_KEY)).unwrap()).unwrap()
}

#[tokio::test]
async fn a_put_on_one_replica_is_in_force_on_the_other_after_its_poll() {
    let dir = tempfile::tempdir().unwrap();
    let store = RuntimeStore::dir(dir.path());
    let a = Replica::started(&allow(), PolicySigners::none(), &store).await;
    let b = Replica::started(&allow(), PolicySigners::none(), &store).await;
    a.assert_allows().await;
    b.assert_allows().await;

    let (s, v) = a.put(&deny()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    a.assert_denies().await;
    // B judges by the old policy until its poll step…
    b.assert_allows().await;
    assert_eq!(b.sync().await, SyncOutcome::Applied);
    // …and by the new one after it.
    b.assert_denies().await;
    assert_eq!(b.policy_text().await, deny());
    assert_eq!(b.sync().await, SyncOutcome::Unchanged);
    // A sees its own write as in force already.
    assert_eq!(a.sync().await, SyncOutcome::Unchanged);

    let doc = stored(dir.path());
    assert_eq!(doc.generation, 1);
    assert_eq!(doc.policy.as_ref().unwrap().body, deny());
    assert!(doc.signer_ops.is_empty());

    // The JWS forms travel as sent; B's change reaches A alike.
    let (s, v) = b.put(&unsigned_policy(&allow())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(a.sync().await, SyncOutcome::Applied);
    a.assert_allows().await;
    let (s, v) = admin_get(&a.app, "/policies/SgxEnclave").await;
    assert_eq!(
        (s, &v["x-confcom-policy-form"]),
        (StatusCode::OK, &json!("unsigned-jws"))
    );
    assert_eq!(stored(dir.path()).generation, 2);
}

#[tokio::test]
async fn signer_changes_on_one_replica_are_honoured_by_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = RuntimeStore::dir(dir.path());
    let es = Signer::generate(Algorithm::ES256);
    let newcomer = Signer::generate(Algorithm::RS256);
    let a = Replica::started(&allow(), signer_set(&[&es]), &store).await;
    let b = Replica::started(&allow(), signer_set(&[&es]), &store).await;

    let add = es.about(&newcomer);
    let (s, v) = a.post("/certificates:add", &add).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(stored(dir.path()).generation, 1);
    // Stored as received, to be replayed from the start-up signers.
    assert_eq!(
        stored(dir.path()).signer_ops,
        vec![SignerOp {
            op: SignerOpKind::Add,
            jws: add
        }]
    );
    // Adding it again changes nothing and writes nothing.
    let (s, v) = a.post("/certificates:add", &es.about(&newcomer)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(stored(dir.path()).generation, 1);
    // B lists the newcomer after its poll step.
    assert_eq!(b.signers().await, vec![es.cert_der.clone()]);
    assert_eq!(b.sync().await, SyncOutcome::Applied);
    assert_eq!(
        b.signers().await,
        vec![es.cert_der.clone(), newcomer.cert_der.clone()]
    );
    b.assert_allows().await;
    // A change is checked against the store's latest signers, even on a replica that has not
    // polled yet.
    let c = Replica::new(&allow(), signer_set(&[&es]), &store);
    let (s, v) = c.put(&newcomer.policy(&deny())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    c.assert_denies().await;
    assert_eq!(b.sync().await, SyncOutcome::Applied);
    b.assert_denies().await;
    // The policy names the signer history it was accepted on.
    assert_eq!(stored(dir.path()).policy.unwrap().signer_ops, 1);

    // Removed through B: A refuses the newcomer after its poll. The policy the newcomer set
    // stays in force everywhere, as without a store.
    let (s, v) = b.post("/certificates:remove", &es.about(&newcomer)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(a.sync().await, SyncOutcome::Applied);
    a.assert_denies().await;
    let (s, v) = a
        .post("/certificates:add", &newcomer.about(&newcomer))
        .await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "PolicySignerNotTrusted"),
        "{v}"
    );
    let restarted = Replica::started(&allow(), signer_set(&[&es]), &store).await;
    restarted.assert_denies().await;
    assert_eq!(restarted.signers().await, vec![es.cert_der.clone()]);
    let ops: Vec<SignerOpKind> = stored(dir.path()).signer_ops.iter().map(|o| o.op).collect();
    assert_eq!(ops, [SignerOpKind::Add, SignerOpKind::Remove]);
}

#[tokio::test]
async fn a_restart_keeps_the_put_policy_and_a_reset_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = RuntimeStore::dir(dir.path());
    let a = Replica::started(&allow(), PolicySigners::none(), &store).await;
    let (s, v) = a.put(&deny()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    drop(a);

    // Restarted: not ready, and no attestation, until the store is read.
    let b = Replica::new(&allow(), PolicySigners::none(), &store);
    assert!(!b.state.probes().is_ready());
    let (s, v) = b.attest().await;
    unavailable_message(s, &v);
    assert_eq!(b.sync().await, SyncOutcome::Applied);
    assert!(b.state.probes().is_ready());
    b.assert_denies().await;

    let (s, v) = b
        .post("/policies/SgxEnclave:reset", &unsigned_reset())
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["x-ms-policy-result"], "Removed");
    b.assert_allows().await;
    assert_eq!(stored(dir.path()).policy, None);
    let c = Replica::started(&allow(), PolicySigners::none(), &store).await;
    c.assert_allows().await;
    assert_eq!(c.policy_text().await, allow());
}

#[tokio::test]
async fn a_changed_start_up_policy_drops_only_the_stored_policy_and_buries_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = RuntimeStore::dir(dir.path());
    let es = Signer::generate(Algorithm::ES256);
    let rs = Signer::generate(Algorithm::RS256);
    let signers = signer_set(&[&es, &rs]);
    let a = Replica::started(&allow(), signers.clone(), &store).await;
    // At run time: rs removed, the policy tightened.
    let (s, v) = a.post("/certificates:remove", &es.about(&rs)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = a.put(&es.policy(&deny())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(stored(dir.path()).generation, 2);

    // Another --policy (an unrelated edit of attestation.policy): its start-up policy is in
    // force, but the signer removed at run time stays removed.
    let other_policy = format!("{}min_svn: 0\n", allow());
    let b = Replica::new(&other_policy, signers.clone(), &store);
    assert_eq!(b.sync().await, SyncOutcome::Stale);
    assert!(b.state.probes().is_ready());
    b.assert_allows().await;
    assert_eq!(b.policy_text().await, other_policy);
    assert_eq!(b.signers().await, vec![es.cert_der.clone()]);
    let (s, v) = b.put(&rs.policy(&deny())).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "PolicySignerNotTrusted"),
        "{v}"
    );
    // Its first read buried the dropped policy: on its configuration, the generation goes
    // on, the signer history stays.
    let doc = stored(dir.path());
    assert_eq!(doc.generation, 3);
    assert_eq!(doc.based_on, BasedOn::new(&other_policy, &signers));
    assert_eq!((doc.policy, doc.signer_ops.len()), (None, 1));
    assert_eq!(b.sync().await, SyncOutcome::Unchanged);

    // A replica still on the old configuration (a rolling upgrade) that has started does not
    // apply a document made on another one, nor fall back to its start-up policy: it keeps
    // its run-time policy (and stays ready: the read counts as a successful one)...
    assert_eq!(a.sync().await, SyncOutcome::Stale);
    assert_eq!(a.sync().await, SyncOutcome::Stale);
    assert!(a.state.probes().is_ready());
    a.assert_denies().await;
    assert_eq!(a.policy_text().await, deny());
    // ...and a return to the old configuration (helm rollback) does not revive the policy
    // tightened under it.
    let c = Replica::new(&allow(), signers.clone(), &store);
    assert_eq!(c.sync().await, SyncOutcome::Applied);
    c.assert_allows().await;
    assert_eq!(c.signers().await, vec![es.cert_der.clone()]);

    // A policy put under the new configuration: replicas on the old one ignore it at their
    // polls, without rewriting the store (old and new replicas do not fight).
    let (s, v) = b.put(&es.policy(&deny())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let written = stored(dir.path());
    assert_eq!(written.generation, 4);
    assert_eq!(a.sync().await, SyncOutcome::Stale);
    assert_eq!(c.sync().await, SyncOutcome::Stale);
    a.assert_denies().await;
    c.assert_allows().await;
    assert_eq!(stored(dir.path()), written);
    b.assert_denies().await;
    assert_eq!(b.sync().await, SyncOutcome::Unchanged);
    // A replica starting on the old configuration buries it in turn.
    let d = Replica::new(&allow(), signers.clone(), &store);
    assert_eq!(d.sync().await, SyncOutcome::Stale);
    d.assert_allows().await;
    let doc = stored(dir.path());
    assert_eq!(doc.generation, 5);
    assert_eq!(doc.based_on, BasedOn::new(&allow(), &signers));
    assert_eq!((doc.policy, doc.signer_ops.len()), (None, 1));
}

#[tokio::test]
async fn a_changed_start_up_signer_set_drops_the_signer_history_but_keeps_a_policy_it_verifies() {
    let es = Signer::generate(Algorithm::ES256);
    let rs = Signer::generate(Algorithm::RS256);
    let newcomer = Signer::generate(Algorithm::ES256);
    for (policy_signer, kept) in [(&es, true), (&newcomer, false)] {
        let dir = tempfile::tempdir().unwrap();
        let store = RuntimeStore::dir(dir.path());
        let a = Replica::started(&allow(), signer_set(&[&es]), &store).await;
        let (s, v) = a.post("/certificates:add", &es.about(&newcomer)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = a.put(&policy_signer.policy(&deny())).await;
        assert_eq!(s, StatusCode::OK, "{v}");

        // The chart adds rs: the run-time signer history no longer applies.
        let startup = signer_set(&[&es, &rs]);
        let b = Replica::new(&allow(), startup.clone(), &store);
        assert_eq!(b.sync().await, SyncOutcome::Stale);
        assert_eq!(
            b.signers().await,
            vec![es.cert_der.clone(), rs.cert_der.clone()]
        );
        let doc = stored(dir.path());
        assert_eq!(doc.based_on, BasedOn::new(&allow(), &startup));
        assert!(doc.signer_ops.is_empty());
        if kept {
            // Signed by a start-up signer: the tightened policy stays.
            b.assert_denies().await;
            assert_eq!(doc.policy.unwrap().signer_ops, 0);
        } else {
            // Signed by a signer added at run time: dropped (with a warning).
            b.assert_allows().await;
            assert_eq!(doc.policy, None);
        }
    }
}

/// A backend over a [`DirStore`] that fails on demand, answers conflicts, or lets another
/// writer in just before a save.
struct Flaky {
    inner: DirStore,
    fail: AtomicBool,
    /// Writes reach the store but never answer.
    hang: AtomicBool,
    /// Writes never answer, nor reach the store.
    hang_before: AtomicBool,
    /// The next write reaches the store, then answers an error (once).
    fail_after_save: AtomicBool,
    /// The next write reaches the store, then answers a conflict (once): a client's retry of
    /// a committed write.
    conflict_after_save: AtomicBool,
    always_conflict: AtomicBool,
    /// A document written by "another replica" just before the next save.
    before_save: Mutex<Option<String>>,
    /// A document written by "another replica" just after the next save, which then answers
    /// an error (once): a write that went through, then was written over.
    after_save: Mutex<Option<String>>,
    /// Every save takes this long first.
    save_delay: Mutex<Option<Duration>>,
    saves: AtomicUsize,
}

impl Flaky {
    fn new(dir: &Path) -> Arc<Self> {
        Arc::new(Self {
            inner: DirStore::new(dir),
            fail: AtomicBool::new(false),
            hang: AtomicBool::new(false),
            hang_before: AtomicBool::new(false),
            fail_after_save: AtomicBool::new(false),
            conflict_after_save: AtomicBool::new(false),
            always_conflict: AtomicBool::new(false),
            before_save: Mutex::new(None),
            after_save: Mutex::new(None),
            save_delay: Mutex::new(None),
            saves: AtomicUsize::new(0),
        })
    }
}

/// An `Arc<Flaky>` as a backend, so that the test keeps a handle on it.
struct Shared(Arc<Flaky>);

impl StateBackend for Shared {
    fn load(&self) -> BoxFuture<'_, Result<Snapshot, StoreError>> {
        Box::pin(async move {
            if self.0.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("injected failure".into()));
            }
            self.0.inner.load().await
        })
    }

    fn save<'a>(
        &'a self,
        data: &'a str,
        expected: &'a str,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        Box::pin(async move {
            self.0.saves.fetch_add(1, Ordering::SeqCst);
            let delay = *self.0.save_delay.lock().unwrap();
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            if self.0.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("injected failure".into()));
            }
            if self.0.always_conflict.load(Ordering::SeqCst) {
                return Err(StoreError::Conflict);
            }
            if self.0.hang_before.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let competing = self.0.before_save.lock().unwrap().take();
            if let Some(doc) = competing {
                let current = self.0.inner.load().await?.version;
                self.0.inner.save(&doc, &current).await?;
            }
            let saved = self.0.inner.save(data, expected).await;
            if self.0.hang.load(Ordering::SeqCst) {
                // Written, but the answer never comes (a lost API server reply).
                std::future::pending::<()>().await;
            }
            let covering = self.0.after_save.lock().unwrap().take();
            if let (Ok(version), Some(doc)) = (&saved, covering) {
                self.0.inner.save(&doc, version).await?;
                return Err(StoreError::Unavailable(
                    "injected failure after the write".into(),
                ));
            }
            if saved.is_ok() && self.0.fail_after_save.swap(false, Ordering::SeqCst) {
                return Err(StoreError::Unavailable(
                    "injected failure after the write".into(),
                ));
            }
            if saved.is_ok() && self.0.conflict_after_save.swap(false, Ordering::SeqCst) {
                return Err(StoreError::Conflict);
            }
            saved
        })
    }

    fn describe(&self) -> String {
        "flaky test store".into()
    }
}

#[tokio::test]
async fn a_failing_store_refuses_changes_with_503_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = Flaky::new(dir.path());
    let store = RuntimeStore::new(Shared(flaky.clone()));
    let es = Signer::generate(Algorithm::ES256);
    let other = Signer::generate(Algorithm::ES256);
    let a = Replica::started(&allow(), signer_set(&[&es]), &store).await;

    flaky.fail.store(true, Ordering::SeqCst);
    for (path, body) in [
        ("PUT", es.policy(&deny())),
        ("/policies/SgxEnclave:reset", es.sign(&json!({}))),
        ("/certificates:add", es.about(&other)),
        ("/certificates:remove", es.about(&es)),
    ] {
        let (s, v) = if path == "PUT" {
            a.put(&body).await
        } else {
            a.post(path, &body).await
        };
        assert_unavailable(s, &v, "nothing was changed");
    }
    // Nothing changed locally: the start-up policy judges, the newcomer is no signer.
    a.assert_allows().await;
    assert_eq!(a.policy_text().await, allow());
    let (s, v) = a.put(&other.policy(&deny())).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    // A poll failure keeps the replica ready with the state in force.
    assert!(a.state.sync_runtime_state().await.is_err());
    assert!(a.state.probes().is_ready());
    a.assert_allows().await;

    // A replica starting while the store is down is not ready and does not attest.
    let b = Replica::new(&allow(), signer_set(&[&es]), &store);
    assert!(b.state.sync_runtime_state().await.is_err());
    assert!(!b.state.probes().is_ready());
    let (s, v) = b.attest().await;
    unavailable_message(s, &v);

    // Back: the change goes through, B becomes ready under it.
    flaky.fail.store(false, Ordering::SeqCst);
    let (s, v) = a.put(&es.policy(&deny())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(b.sync().await, SyncOutcome::Applied);
    assert!(b.state.probes().is_ready());
    b.assert_denies().await;

    // Conflicts without end: 503 after a few attempts, nothing changed.
    flaky.always_conflict.store(true, Ordering::SeqCst);
    let before = flaky.saves.load(Ordering::SeqCst);
    let (s, v) = a.put(&es.policy(&allow())).await;
    unavailable_message(s, &v);
    assert_eq!(flaky.saves.load(Ordering::SeqCst) - before, 5);
    a.assert_denies().await;

    // A write that fails after a good read (the directory store itself: its lock file
    // cannot be opened): 503, and as a failed write may have been stored (and written over
    // since), the answer does not claim that nothing changed. Here nothing did.
    flaky.always_conflict.store(false, Ordering::SeqCst);
    let doc = stored(dir.path());
    let lock = dir.path().join(".runtime-state.lock");
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    let (s, v) = a.post("/certificates:add", &es.about(&other)).await;
    assert_maybe_stored(s, &v);
    assert_eq!(stored(dir.path()), doc);
    assert_eq!(a.signers().await, vec![es.cert_der.clone()]);
    a.assert_denies().await;

    // What an alert watches.
    let text = metrics(&a.app).await;
    for line in [
        r#"confcom_attest_runtime_state_writes_total{result="conflict"} 5"#,
        r#"confcom_attest_runtime_state_writes_total{result="ok"} 1"#,
        r#"confcom_attest_runtime_state_writes_total{result="error"} 1"#,
        r#"confcom_attest_runtime_state_syncs_total{result="error"} 1"#,
        r#"confcom_attest_runtime_state_syncs_total{result="unchanged"} 1"#,
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

#[tokio::test]
async fn a_conflicting_write_is_retried_on_the_latest_state() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = Flaky::new(dir.path());
    let store = RuntimeStore::new(Shared(flaky.clone()));
    let es = Signer::generate(Algorithm::ES256);
    let rs = Signer::generate(Algorithm::RS256);
    let newcomer = Signer::generate(Algorithm::ES256);
    let startup = signer_set(&[&es, &rs]);
    let a = Replica::started(&allow(), startup.clone(), &store).await;

    // Another replica adds the newcomer between A's read and A's write: A's write conflicts,
    // A retries on the latest state, and both changes are kept.
    let mut competing = RuntimeState::empty(BasedOn::new(&allow(), &startup));
    competing.generation = 1;
    competing.signer_ops.push(SignerOp {
        op: SignerOpKind::Add,
        jws: rs.about(&newcomer),
    });
    *flaky.before_save.lock().unwrap() = Some(competing.to_json().unwrap());
    let before = flaky.saves.load(Ordering::SeqCst);
    let (s, v) = a.put(&es.policy(&deny())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(flaky.saves.load(Ordering::SeqCst) - before, 2);
    let doc = stored(dir.path());
    assert_eq!(doc.generation, 2);
    assert!(doc.policy.is_some());
    assert_eq!(doc.signer_ops.len(), 1);
    assert_eq!(doc.policy.as_ref().unwrap().signer_ops, 1);
    a.assert_denies().await;
    // The newcomer is a signer on A too.
    let (s, v) = a.put(&newcomer.policy(&allow())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    a.assert_allows().await;

    // Another replica removes rs meanwhile: rs's policy, checked again on the latest state,
    // is refused and nothing is written.
    let mut competing = stored(dir.path());
    competing.generation += 1;
    competing.signer_ops.push(SignerOp {
        op: SignerOpKind::Remove,
        jws: es.about(&rs),
    });
    *flaky.before_save.lock().unwrap() = Some(competing.to_json().unwrap());
    let (s, v) = a.put(&rs.policy(&deny())).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "PolicySignerNotTrusted"),
        "{v}"
    );
    assert_eq!(stored(dir.path()), competing);
    a.assert_allows().await;
}

#[tokio::test]
async fn an_invalid_stored_document_is_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = RuntimeStore::dir(dir.path());
    let es = Signer::generate(Algorithm::ES256);
    let newcomer = Signer::generate(Algorithm::ES256);
    // Not a signer: its JWSs verify with their own x5c only.
    let stranger = Signer::generate(Algorithm::ES256);
    let signers = signer_set(&[&es]);
    let a = Replica::started(&allow(), signers.clone(), &store).await;
    let (s, v) = a.put(&es.policy(&deny())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let b = Replica::started(&allow(), signers.clone(), &store).await;
    b.assert_denies().await;
    let good = stored(dir.path());

    let p384 = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        rcgen::CertificateParams::new(vec!["p384".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec()
    };
    let doc = |ops: Vec<SignerOp>, policy: Option<(String, usize)>| {
        let mut s = good.clone();
        s.generation += 1;
        s.signer_ops = ops;
        s.policy = policy.map(|(body, signer_ops)| StoredPolicy {
            body,
            hash: String::new(),
            signer_ops,
        });
        s.to_json().unwrap()
    };
    let op = |op, jws: String| SignerOp { op, jws };
    let tampered = {
        let jws = es.policy(&allow());
        let other = es.policy(&deny());
        let p: Vec<&str> = jws.split('.').collect();
        let q: Vec<&str> = other.split('.').collect();
        format!("{}.{}.{}", p[0], q[1], p[2])
    };
    let invalid = [
        ("not json".to_owned(), "unreadable"),
        (
            {
                let mut v = serde_json::to_value(&good).unwrap();
                v["version"] = json!(2);
                v.to_string()
            },
            "format version 2",
        ),
        (
            {
                let mut v = serde_json::to_value(&good).unwrap();
                v["signers"] = json!([STANDARD.encode(&stranger.cert_der)]);
                v.to_string()
            },
            "unknown field",
        ),
        (
            doc(vec![], Some((es.policy("bogus: 1"), 0))),
            "stored policy",
        ),
        (doc(vec![], Some((allow(), 0))), "must be a JWS signed"),
        (
            doc(vec![], Some((unsigned_policy(&allow()), 0))),
            "must be a JWS signed",
        ),
        (doc(vec![], Some((tampered, 0))), "does not verify"),
        // Forged: a policy signed by a certificate that is no signer.
        (
            doc(vec![], Some((stranger.policy(&allow()), 0))),
            "not a current policy signer",
        ),
        // Forged: a signer change signed by a stranger (adding itself), and a policy it signs.
        (
            doc(
                vec![op(SignerOpKind::Add, stranger.about(&stranger))],
                Some((stranger.policy(&allow()), 1)),
            ),
            "signer change 0: the JWS is signed by a certificate that is not a current policy signer",
        ),
        // A policy accepted on a signer history longer than the one stored.
        (
            doc(vec![], Some((es.policy(&allow()), 1))),
            "past the 0 stored",
        ),
        (
            doc(
                vec![op(SignerOpKind::Add, es.about_der(&p384))],
                good.policy.clone().map(|p| (p.body, 0)),
            ),
            "P-256",
        ),
        // A removal turned into an addition (or any change that changes nothing).
        (
            doc(vec![op(SignerOpKind::Remove, es.about(&newcomer))], None),
            "changes nothing",
        ),
        (
            doc(vec![op(SignerOpKind::Remove, es.about(&es))], None),
            "removes the last signer",
        ),
    ];
    for (doc, reason) in &invalid {
        std::fs::write(dir.path().join(STATE_KEY), doc).unwrap();
        for _ in 0..2 {
            // Looked at again at every poll, never applied.
            match b.sync().await {
                SyncOutcome::Invalid(r) => assert!(r.contains(reason), "{reason}: {r}"),
                other => panic!("{doc}: {other:?}"),
            }
        }
        // A running replica keeps its last valid state.
        assert!(b.state.probes().is_ready());
        b.assert_denies().await;
        // A replica starting now is not ready and refuses attestation rather than run its
        // start-up policy.
        let c = Replica::new(&allow(), signers.clone(), &store);
        assert!(matches!(c.sync().await, SyncOutcome::Invalid(_)));
        assert!(!c.state.probes().is_ready());
        let (s, v) = c.attest().await;
        unavailable_message(s, &v);
        // A change on top of an invalid document is refused rather than guessed.
        let (s, v) = b.put(&es.policy(&allow())).await;
        unavailable_message(s, &v);
        b.assert_denies().await;
    }

    // Repaired: applied again, and a replica waiting for it becomes ready.
    let c = Replica::new(&allow(), signers.clone(), &store);
    assert!(matches!(c.sync().await, SyncOutcome::Invalid(_)));
    let mut repaired = good.clone();
    repaired.generation += 5;
    repaired.policy = None;
    std::fs::write(dir.path().join(STATE_KEY), repaired.to_json().unwrap()).unwrap();
    assert_eq!(b.sync().await, SyncOutcome::Applied);
    b.assert_allows().await;
    assert_eq!(c.sync().await, SyncOutcome::Unchanged);
    assert!(c.state.probes().is_ready());
    c.assert_allows().await;

    // Without signers, signer changes in the document are invalid too.
    let open = tempfile::tempdir().unwrap();
    let open_store = RuntimeStore::dir(open.path());
    let mut doc = RuntimeState::empty(BasedOn::new(&allow(), &PolicySigners::none()));
    doc.signer_ops
        .push(op(SignerOpKind::Add, es.about(&newcomer)));
    std::fs::write(open.path().join(STATE_KEY), doc.to_json().unwrap()).unwrap();
    let d = Replica::new(&allow(), PolicySigners::none(), &open_store);
    match d.sync().await {
        SyncOutcome::Invalid(r) => assert!(r.contains("not in isolated mode"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert!(!d.state.probes().is_ready());
}

#[tokio::test]
async fn a_truncated_signer_history_is_a_valid_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let store = RuntimeStore::dir(dir.path());
    let es = Signer::generate(Algorithm::ES256);
    let newcomer = Signer::generate(Algorithm::ES256);
    let a = Replica::started(&allow(), signer_set(&[&es]), &store).await;
    let (s, v) = a.post("/certificates:add", &es.about(&newcomer)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = a.put(&newcomer.policy(&deny())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = a.post("/certificates:remove", &es.about(&newcomer)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let full = stored(dir.path());
    assert_eq!(
        (
            full.signer_ops.len(),
            full.policy.as_ref().unwrap().signer_ops
        ),
        (2, 1)
    );

    // Write access to the store can drop the last change: an earlier valid state (the
    // newcomer a signer again) is back. No forgery, but a rollback.
    let b = Replica::new(&allow(), signer_set(&[&es]), &store);
    let mut truncated = full.clone();
    truncated.generation += 1;
    truncated.signer_ops.truncate(1);
    std::fs::write(dir.path().join(STATE_KEY), truncated.to_json().unwrap()).unwrap();
    assert_eq!(b.sync().await, SyncOutcome::Applied);
    b.assert_denies().await;
    assert_eq!(
        b.signers().await,
        vec![es.cert_der.clone(), newcomer.cert_der.clone()]
    );
    // Or drop every change: the start-up state.
    let mut none = truncated.clone();
    none.generation += 1;
    none.signer_ops.clear();
    none.policy = None;
    std::fs::write(dir.path().join(STATE_KEY), none.to_json().unwrap()).unwrap();
    assert_eq!(b.sync().await, SyncOutcome::Applied);
    b.assert_allows().await;
    assert_eq!(b.signers().await, vec![es.cert_der.clone()]);
    // But not keep a policy without the history it was accepted on.
    let mut orphan = full.clone();
    orphan.generation += 3;
    orphan.signer_ops.clear();
    std::fs::write(dir.path().join(STATE_KEY), orphan.to_json().unwrap()).unwrap();
    assert!(matches!(b.sync().await, SyncOutcome::Invalid(_)));
    b.assert_allows().await;
}

#[tokio::test]
async fn signer_changes_beyond_the_limit_are_refused_until_the_set_is_restated() {
    let dir = tempfile::tempdir().unwrap();
    let store = RuntimeStore::dir(dir.path());
    let es = Signer::generate(Algorithm::ES256);
    let x = Signer::generate(Algorithm::ES256);
    let a = Replica::started(&allow(), signer_set(&[&es]), &store).await;
    for i in 0..MAX_SIGNER_OPS {
        let path = if i.is_multiple_of(2) {
            "/certificates:add"
        } else {
            "/certificates:remove"
        };
        let (s, v) = a.post(path, &es.about(&x)).await;
        assert_eq!(s, StatusCode::OK, "{i}: {v}");
    }
    assert_eq!(stored(dir.path()).signer_ops.len(), MAX_SIGNER_OPS);
    let (s, v) = a.post("/certificates:add", &es.about(&x)).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::CONFLICT, "SignerChangeLimitReached"),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("restate"),
        "{v}"
    );
    // Changes that change nothing, and policies, still go through.
    let (s, v) = a.post("/certificates:remove", &es.about(&x)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = a.put(&es.policy(&deny())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        stored(dir.path()).policy.unwrap().signer_ops,
        MAX_SIGNER_OPS
    );
    // Restated in the start-up configuration: a new history.
    let b = Replica::new(&allow(), signer_set(&[&es, &x]), &store);
    assert_eq!(b.sync().await, SyncOutcome::Stale);
    let (s, v) = b.post("/certificates:remove", &es.about(&x)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(stored(dir.path()).signer_ops.len(), 1);
}

#[tokio::test]
async fn without_a_store_changes_stay_in_memory_as_before() {
    let es = Signer::generate(Algorithm::ES256);
    let newcomer = Signer::generate(Algorithm::ES256);
    let a = Replica::with(&allow(), signer_set(&[&es]), None, None);
    assert!(a.state.probes().is_ready());
    assert_eq!(a.sync().await, SyncOutcome::NoStore);
    a.assert_allows().await;
    let (s, v) = a.put(&es.policy(&deny())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = a.post("/certificates:add", &es.about(&newcomer)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // In force on that instance...
    a.assert_denies().await;
    assert_eq!(a.policy_text().await, deny());
    assert_eq!(
        a.signers().await,
        vec![es.cert_der.clone(), newcomer.cert_der.clone()]
    );
    // ...and nowhere else: a new instance (a restart) is back on the start-up state.
    let fresh = Replica::with(&allow(), signer_set(&[&es]), None, None);
    fresh.assert_allows().await;
    assert_eq!(fresh.policy_text().await, allow());
    assert_eq!(fresh.signers().await, vec![es.cert_der.clone()]);
}

#[tokio::test]
async fn the_poll_loop_makes_a_replica_ready_and_applies_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = RuntimeStore::dir(dir.path());
    let a = Replica::started(&allow(), PolicySigners::none(), &store).await;
    let b = Replica::new(&allow(), PolicySigners::none(), &store);
    let poll = tokio::spawn(b.state.clone().run_runtime_sync(Duration::from_millis(10)));
    let (s, v) = a.put(&deny()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Within a few polls (bounded: 10 s).
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if b.attest().await.0 == StatusCode::UNAUTHORIZED {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("B did not apply the change");
    assert!(b.state.probes().is_ready());
    b.assert_denies().await;
    poll.abort();
}

#[tokio::test]
async fn a_write_that_times_out_is_checked_by_reading_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = Flaky::new(dir.path());
    let store = RuntimeStore::new(Shared(flaky.clone())).with_timeout(Duration::from_millis(300));
    let a = Replica::started(&allow(), PolicySigners::none(), &store).await;
    // Written, the answer lost: the store holds it, so it is in force.
    flaky.hang.store(true, Ordering::SeqCst);
    let (s, v) = a.put(&deny()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    a.assert_denies().await;
    flaky.hang.store(false, Ordering::SeqCst);
    // Not written (yet): 503, not in force here.
    flaky.hang_before.store(true, Ordering::SeqCst);
    let (s, v) = a.put(&allow()).await;
    let message = assert_unavailable(s, &v, "write timed out");
    assert!(
        message.contains("may or may not have been stored"),
        "{message}"
    );
    flaky.hang_before.store(false, Ordering::SeqCst);
    a.assert_denies().await;
    assert_eq!(a.sync().await, SyncOutcome::Unchanged);
    a.assert_denies().await;
}

#[tokio::test]
async fn a_write_whose_outcome_is_unknown_is_checked_by_reading_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = Flaky::new(dir.path());
    let store = RuntimeStore::new(Shared(flaky.clone()));
    let es = Signer::generate(Algorithm::ES256);
    let x = Signer::generate(Algorithm::ES256);
    let a = Replica::started(&allow(), signer_set(&[&es, &x]), &store).await;
    // A committed write answered 409 (a client's retry of it): x removes itself. Run again on
    // the new state, the change would be refused (x no longer signs): it is not run again.
    flaky.conflict_after_save.store(true, Ordering::SeqCst);
    let (s, v) = a.post("/certificates:remove", &x.about(&x)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(a.signers().await, vec![es.cert_der.clone()]);
    assert_eq!(stored(dir.path()).signer_ops.len(), 1);
    // A committed write answered with an error (the directory fsync after the rename).
    flaky.fail_after_save.store(true, Ordering::SeqCst);
    let (s, v) = a.put(&es.policy(&deny())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    a.assert_denies().await;
    assert_eq!(stored(dir.path()).generation, 2);
    assert_eq!(a.sync().await, SyncOutcome::Unchanged);
}

#[tokio::test]
async fn a_replica_that_cannot_read_the_store_for_too_long_stops_attesting() {
    const LIMIT: Duration = Duration::from_millis(500);
    const PAST: Duration = Duration::from_millis(600);
    let dir = tempfile::tempdir().unwrap();
    let flaky = Flaky::new(dir.path());
    let store = RuntimeStore::new(Shared(flaky.clone()));
    let a = Replica::with(
        &allow(),
        PolicySigners::none(),
        Some(store.clone()),
        Some(LIMIT),
    );
    let unlimited = Replica::with(&allow(), PolicySigners::none(), Some(store), None);
    a.sync().await;
    unlimited.sync().await;
    let metrics = metrics(&a.app).await;
    let last: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("confcom_attest_runtime_state_last_sync_timestamp_seconds "))
        .unwrap_or_else(|| panic!("no gauge in\n{metrics}"))
        .parse()
        .unwrap();
    assert!(last > 1_700_000_000, "{last}");

    // Reads fail: within the limit, the state in force stays.
    flaky.fail.store(true, Ordering::SeqCst);
    assert!(a.state.sync_runtime_state().await.is_err());
    assert!(a.state.probes().is_ready());
    a.assert_allows().await;
    // Past it: not ready, no attestation (the poll step and the request both check).
    tokio::time::sleep(PAST).await;
    let (s, v) = a.attest().await;
    assert_unavailable(s, &v, "too long");
    assert!(!a.state.probes().is_ready());
    assert!(a.state.sync_runtime_state().await.is_err());
    assert!(!a.state.probes().is_ready());
    // Without a limit: still attesting.
    assert!(unlimited.state.sync_runtime_state().await.is_err());
    assert!(unlimited.state.probes().is_ready());
    unlimited.assert_allows().await;

    // The next successful read ends it.
    flaky.fail.store(false, Ordering::SeqCst);
    assert_eq!(a.sync().await, SyncOutcome::Unchanged);
    assert!(a.state.probes().is_ready());
    a.assert_allows().await;
    // An invalid document is no successful read either.
    std::fs::write(dir.path().join(STATE_KEY), "not json").unwrap();
    tokio::time::sleep(PAST).await;
    assert!(matches!(a.sync().await, SyncOutcome::Invalid(_)));
    assert!(!a.state.probes().is_ready());
    assert_eq!(a.attest().await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_names_the_policy_that_judged_it() {
    let maa = |id: &str| {
        format!(
            "version=1.0; authorizationrules {{ => permit(); }}; issuancerules {{ => issue(type=\"policy-id\", value=\"{id}\"); }};"
        )
    };
    let r = Replica::with(&maa("start"), PolicySigners::none(), None, None);
    let mut hashes = std::collections::HashMap::new();
    for id in ["A", "B"] {
        let (s, v) = r.put(&maa(id)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        hashes.insert(
            id.to_owned(),
            v["x-ms-policy-hash"].as_str().unwrap().to_owned(),
        );
    }
    // Policies replaced without pause while requests are judged.
    let app = r.app.clone();
    let (a, b) = (maa("A"), maa("B"));
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let flipper = tokio::spawn(async move {
        let mut i = 0u64;
        while !stopped.load(Ordering::SeqCst) {
            let body = if i.is_multiple_of(2) { &a } else { &b };
            assert_eq!(put_policy(&app, body).await.0, StatusCode::OK);
            i += 1;
        }
    });
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let (s, v) = r.attest().await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let claims = token_claims(&v);
        let id = claims["x-ms-policy"]["policy-id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            claims["x-ms-policy-hash"].as_str(),
            hashes.get(&id).map(String::as_str),
            "{id}"
        );
        seen.insert(id);
    }
    stop.store(true, Ordering::SeqCst);
    flipper.await.unwrap();
    // Both policies judged requests.
    assert_eq!(seen.len(), 2, "{seen:?}");
}

/// `GET path` with the admin token.
async fn get(app: &axum::Router, path: &str) -> (StatusCode, Value) {
    admin_get(app, &format!("{path}?api-version=2022-08-01")).await
}

#[tokio::test]
async fn a_change_too_large_for_the_store_is_refused_and_the_store_stays_readable() {
    use attestation::runtime_state::MAX_DOCUMENT_LEN;
    let dir = tempfile::tempdir().unwrap();
    let store = RuntimeStore::dir(dir.path());
    let es = Signer::generate(Algorithm::ES256);
    let a = Replica::started(&allow(), signer_set(&[&es]), &store).await;
    let (s, v) = a.put(&es.policy(&deny())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let before = std::fs::read(dir.path().join(STATE_KEY)).unwrap();

    // A body over the limit of the policy and certificate routes: 413, before anything.
    let huge = "x".repeat(MAX_DOCUMENT_LEN + 1);
    for (method, path) in [
        ("PUT", "/policies/SgxEnclave"),
        ("POST", "/policies/SgxEnclave:reset"),
        ("POST", "/certificates:add"),
        ("POST", "/certificates:remove"),
    ] {
        let (s, v) = call(
            &a.app,
            Request::builder()
                .method(method)
                .uri(format!("{path}?api-version=2022-08-01"))
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(Body::from(huge.clone()))
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, error_code(&v)),
            (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
            "{path}: {v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{MAX_DOCUMENT_LEN}-byte limit")),
            "{message}"
        );
    }
    // A body within it, whose stored form would not be (every newline is escaped in JSON):
    // refused before writing, with a clear message.
    let plain = format!("{}{}", allow(), "\n".repeat(MAX_DOCUMENT_LEN - 64));
    let open = tempfile::tempdir().unwrap();
    let open_store = RuntimeStore::dir(open.path());
    let o = Replica::started(&allow(), PolicySigners::none(), &open_store).await;
    let (s, v) = o.put(&plain).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("runtime state document would be")
            && message.contains("nothing was changed"),
        "{message}"
    );
    assert!(!open.path().join(STATE_KEY).exists());
    o.assert_allows().await;
    assert_eq!(o.sync().await, SyncOutcome::Unchanged);

    // Nothing changed: the store reads as before, everywhere.
    assert_eq!(std::fs::read(dir.path().join(STATE_KEY)).unwrap(), before);
    assert_eq!(a.sync().await, SyncOutcome::Unchanged);
    a.assert_denies().await;
    let b = Replica::started(&allow(), signer_set(&[&es]), &store).await;
    b.assert_denies().await;

    // The store itself refuses to write what it could not read back.
    let version = store.load().await.unwrap().version;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_DOCUMENT_LEN));
    assert!(matches!(
        store.save(&big, &version).await,
        Err(StoreError::TooLarge(n)) if n == big.len()
    ));
    assert!(matches!(
        DirStore::new(dir.path()).save(&big, &version).await,
        Err(StoreError::TooLarge(_))
    ));
    assert_eq!(std::fs::read(dir.path().join(STATE_KEY)).unwrap(), before);
}

#[tokio::test]
async fn a_started_replica_keeps_its_run_time_state_when_another_configuration_rewrites_the_store()
{
    const LIMIT: Duration = Duration::from_millis(300);
    let dir = tempfile::tempdir().unwrap();
    let store = RuntimeStore::dir(dir.path());
    let es = Signer::generate(Algorithm::ES256);
    let old = Replica::with(
        &allow(),
        signer_set(&[&es]),
        Some(store.clone()),
        Some(LIMIT),
    );
    old.sync().await;
    let (s, v) = old.put(&es.policy(&deny())).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // A rolling upgrade changes the start-up policy: the first new replica buries the
    // run-time policy (start-up configuration wins at start-up)...
    let new_policy = format!("{}min_svn: 0\n", allow());
    let new = Replica::new(&new_policy, signer_set(&[&es]), &store);
    assert_eq!(new.sync().await, SyncOutcome::Stale);
    new.assert_allows().await;
    assert_eq!(stored(dir.path()).policy, None);
    // ...but the old replica, already running, neither applies that document nor falls back
    // to its own start-up policy: it keeps the tightened policy until it is replaced.
    for _ in 0..2 {
        assert_eq!(old.sync().await, SyncOutcome::Stale);
        old.assert_denies().await;
        assert_eq!(old.policy_text().await, deny());
    }
    // Nor does it make a change on top of that document (which would drop its own state, or
    // the other configuration's): 503 until the rollout is complete.
    let written = stored(dir.path());
    for (path, body) in [
        ("PUT", es.policy(&allow())),
        ("/policies/SgxEnclave:reset", es.sign(&json!({}))),
        ("/certificates:add", es.about(&es)),
    ] {
        let (s, v) = if path == "PUT" {
            old.put(&body).await
        } else {
            old.post(path, &body).await
        };
        assert_eq!(
            (s, error_code(&v)),
            (StatusCode::SERVICE_UNAVAILABLE, "RuntimeStateUnavailable"),
            "{path}: {v}"
        );
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("another start-up configuration"), "{m}");
    }
    assert_eq!(stored(dir.path()), written);
    old.assert_denies().await;
    // Such a read is a successful one: no staleness.
    tokio::time::sleep(LIMIT + Duration::from_millis(100)).await;
    assert_eq!(old.sync().await, SyncOutcome::Stale);
    assert!(old.state.probes().is_ready());
    old.assert_denies().await;
    // A document on its own configuration again (a rollback) is followed.
    let back = Replica::new(&allow(), signer_set(&[&es]), &store);
    assert_eq!(back.sync().await, SyncOutcome::Unchanged);
    let (s, v) = back.put(&es.policy(&allow())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(old.sync().await, SyncOutcome::Applied);
    old.assert_allows().await;
}

#[tokio::test]
async fn reads_of_the_policy_and_signers_wait_for_a_fresh_store() {
    const LIMIT: Duration = Duration::from_millis(200);
    let dir = tempfile::tempdir().unwrap();
    let flaky = Flaky::new(dir.path());
    let store = RuntimeStore::new(Shared(flaky.clone()));
    let es = Signer::generate(Algorithm::ES256);
    let a = Replica::with(&allow(), signer_set(&[&es]), Some(store), Some(LIMIT));
    // Not read yet: the start-up state is not what is in force service-wide.
    for path in ["/policies/SgxEnclave", "/certificates"] {
        let (s, v) = get(&a.app, path).await;
        assert_unavailable(s, &v, "since start-up");
    }
    a.sync().await;
    for path in ["/policies/SgxEnclave", "/certificates"] {
        assert_eq!(get(&a.app, path).await.0, StatusCode::OK);
    }
    // Not read for too long: outdated.
    flaky.fail.store(true, Ordering::SeqCst);
    tokio::time::sleep(LIMIT + Duration::from_millis(100)).await;
    for path in ["/policies/SgxEnclave", "/certificates"] {
        let (s, v) = get(&a.app, path).await;
        assert_unavailable(s, &v, "too long");
    }
    assert!(!a.state.probes().is_ready());
    flaky.fail.store(false, Ordering::SeqCst);
    a.sync().await;
    for path in ["/policies/SgxEnclave", "/certificates"] {
        assert_eq!(get(&a.app, path).await.0, StatusCode::OK);
    }
    // The admin token is still checked first.
    let (s, _) = call(
        &a.app,
        Request::get("/certificates").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_failed_write_that_may_have_been_stored_does_not_claim_nothing_changed() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = Flaky::new(dir.path());
    let store = RuntimeStore::new(Shared(flaky.clone()));
    let a = Replica::started(&allow(), PolicySigners::none(), &store).await;
    // The write goes through, another replica writes on top, and the answer is an error:
    // reading again does not find the write, which was stored all the same.
    let mut other = RuntimeState::empty(BasedOn::new(&allow(), &PolicySigners::none()));
    other.generation = 7;
    *flaky.after_save.lock().unwrap() = Some(other.to_json().unwrap());
    let (s, v) = a.put(&deny()).await;
    assert_maybe_stored(s, &v);
    assert_eq!(stored(dir.path()), other);
    // Not in force here; the poll follows the store.
    a.assert_allows().await;
    assert_eq!(a.sync().await, SyncOutcome::Unchanged);
    a.assert_allows().await;
    // A failed read, before any write, did change nothing, and says so.
    flaky.fail.store(true, Ordering::SeqCst);
    let (s, v) = a.put(&deny()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was changed"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_read_is_not_undone_by_a_concurrent_staleness_check() {
    const LIMIT: Duration = Duration::from_millis(100);
    let dir = tempfile::tempdir().unwrap();
    let store = RuntimeStore::dir(dir.path());
    let a = Replica::with(
        &allow(),
        PolicySigners::none(),
        Some(store.clone()),
        Some(LIMIT),
    );
    a.sync().await;
    for _ in 0..4 {
        // Stale; requests keep checking staleness while a read succeeds.
        tokio::time::sleep(LIMIT + Duration::from_millis(20)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let hammers: Vec<_> = (0..2)
            .map(|_| {
                let (app, stop) = (a.app.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        get(&app, "/certificates").await;
                    }
                })
            })
            .collect();
        tokio::task::yield_now().await;
        let started = std::time::Instant::now();
        assert_eq!(a.sync().await, SyncOutcome::Unchanged);
        // Right after a successful read the server is ready, unless the limit passed since.
        let ready = a.state.probes().is_ready();
        assert!(ready || started.elapsed() >= LIMIT);
        stop.store(true, Ordering::SeqCst);
        for h in hammers {
            h.await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_change_gives_up_after_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = Flaky::new(dir.path());
    // Reads and writes within 200 ms each: the whole change within 400 ms.
    let store = RuntimeStore::new(Shared(flaky.clone())).with_timeout(Duration::from_millis(200));
    let a = Replica::started(&allow(), PolicySigners::none(), &store).await;
    // Every write answers a conflict after 150 ms: five attempts would take 750 ms.
    *flaky.save_delay.lock().unwrap() = Some(Duration::from_millis(150));
    flaky.always_conflict.store(true, Ordering::SeqCst);
    let before = flaky.saves.load(Ordering::SeqCst);
    let (s, v) = a.put(&deny()).await;
    let message = assert_unavailable(s, &v, "did not complete within");
    assert!(
        message.contains("may or may not have been stored"),
        "{message}"
    );
    let saves = flaky.saves.load(Ordering::SeqCst) - before;
    assert!((1..5).contains(&saves), "{saves}");
    // The replica is free for the next change.
    *flaky.save_delay.lock().unwrap() = None;
    flaky.always_conflict.store(false, Ordering::SeqCst);
    let (s, v) = a.put(&deny()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    a.assert_denies().await;
}
