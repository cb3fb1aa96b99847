//! Offline import of PCK certificates from quotes with certification data type 5
//! (`confcom pccs import --store DIR QUOTE...`), then QCNL-style `pckcert` requests against
//! the PCCS. Expected values come from the quote bytes at fixed offsets, from INDEX.md and
//! from the certificates read with `openssl asn1parse`, not from the code under test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use attestation::Clock;
use attestation::collateral::decode_chain_header;
use attestation::pccs::{self, ImportError, Mode, PccsState, QuoteImportError};
use attestation::store::{CT_PEM, Entry, Store, key};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use clap::Parser;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Set A (INDEX.md): inside the collateral window and the PCK certificate's validity.
const T_A: i64 = 1_751_624_924;

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dcap")
        .join(rel)
}

const QUOTE_A: &str = "dcap-qvl/sample/sgx_quote";
const QUOTE_D: &str = "rust-sgx/intel-sgx/dcap-ql/tests/quote_pck_cert_chain.bin";
const QUOTE_E_HEX: &str = "automata-dcap-attestation/rust-crates/samples/quotev3.hex";
const QUOTE_TDX: &str = "dcap-qvl/sample/tdx_quote";
const QUOTE_TYPE_3: &str = "oasis-core/go/common/sgx/pcs/testdata/quote_v3_ecdsa_p256_eppid.bin";

/// The `pckcert` parameters QCNL sends for a v3 quote's platform, read at fixed offsets
/// (Intel SGX ECDSA Quote Library API, Appendix A): QE ID = header `user_data[0..16]`
/// (bytes 28..44), raw PCESVN = header bytes 10..12, raw CPUSVN = the QE report's first 16
/// bytes (header 48 + report body 384 + signature length 4 + signature 64 + key 64 = 564).
struct Platform {
    qeid: String,
    cpusvn: String,
    pcesvn: String,
}

fn platform_of_v3(quote: &[u8]) -> Platform {
    assert_eq!(&quote[..2], &[3, 0]);
    Platform {
        qeid: hex::encode(&quote[28..44]),
        pcesvn: hex::encode(&quote[10..12]),
        cpusvn: hex::encode(&quote[564..580]),
    }
}

/// The certificates of the quote's PEM chain, in the quote's order (found by their PEM
/// markers in the raw bytes).
fn chain_in_quote(quote: &[u8]) -> Vec<Vec<u8>> {
    let start = quote.windows(11).position(|w| w == b"-----BEGIN ").unwrap();
    let end = quote.len() - quote.iter().rev().position(|&b| b == b'-').unwrap();
    let text = std::str::from_utf8(&quote[start..end]).unwrap();
    pem::parse_many(text)
        .unwrap()
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect()
}

fn offline(store: Store, now: i64) -> PccsState {
    PccsState::new(
        store,
        pccs::Config {
            mode: Mode::Offline,
            ..pccs::Config::default()
        },
        Clock::fixed(now),
    )
    .unwrap()
}

fn import(dir: &Path, files: &[&str]) -> Store {
    let store = Store::open(dir).unwrap();
    let paths: Vec<_> = files.iter().map(|f| testdata(f)).collect();
    pccs::import_paths(&store, &paths, T_A).unwrap();
    store
}

async fn get(state: &PccsState, query: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    let r = pccs::router(state.clone())
        .oneshot(
            Request::get(format!("/sgx/certification/v4/pckcert?{query}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

/// A QCNL-style query: an RSA-3072 encrypted PPID (384 bytes) the PCCS cannot read.
fn qcnl_query(p: &Platform, cpusvn: &str) -> String {
    format!(
        "qeid={}&encrypted_ppid={}&cpusvn={cpusvn}&pcesvn={}&pceid=0000",
        p.qeid,
        "5a".repeat(384),
        p.pcesvn
    )
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// Checks a 200 `pckcert` answer against the quote's own chain (leaf, PCK CA, root).
fn assert_pck_response(
    headers: &HeaderMap,
    body: &[u8],
    chain: [&[u8]; 3],
    tcbm: &str,
    fmspc: &str,
    ca: &str,
) {
    let [leaf, pck_ca, root] = chain;
    assert_eq!(header(headers, "content-type"), CT_PEM);
    let body = std::str::from_utf8(body).unwrap();
    assert!(body.starts_with("-----BEGIN CERTIFICATE-----\n"), "{body}");
    assert!(!body.contains('\r'));
    let blocks = pem::parse_many(body).unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].contents(), leaf);

    let issuers = decode_chain_header(header(headers, "SGX-PCK-Certificate-Issuer-Chain")).unwrap();
    let issuers: Vec<_> = pem::parse_many(&issuers)
        .unwrap()
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect();
    assert_eq!(issuers, vec![pck_ca.to_vec(), root.to_vec()]);

    assert_eq!(header(headers, "SGX-TCBm"), tcbm);
    assert_eq!(header(headers, "SGX-FMSPC"), fmspc);
    assert_eq!(header(headers, "SGX-PCK-Certificate-CA-Type"), ca);
}

#[tokio::test]
async fn imported_quote_serves_its_pck_certificate_to_qcnl_offline() {
    let dir = tempfile::tempdir().unwrap();
    let quote = std::fs::read(testdata(QUOTE_A)).unwrap();
    let p = platform_of_v3(&quote);
    let chain = chain_in_quote(&quote);
    assert_eq!(chain.len(), 3);
    let store = Store::open(dir.path()).unwrap();
    let keys = pccs::import_paths(&store, &[testdata(QUOTE_A)], T_A).unwrap();
    assert_eq!(
        keys,
        vec![key::pck_cert_by_platform(
            &p.qeid, "0000", &p.cpusvn, &p.pcesvn
        )]
    );
    let state = offline(store, T_A);

    let (status, headers, body) = get(&state, &qcnl_query(&p, &p.cpusvn)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    // The certificate's TCB (sgx_quote's PCK: comp SVNs 0B 0B 02 02 FF 01 0…, PCESVN 13), not
    // the platform's raw CPUSVN/PCESVN (0b0b1a18ffff04…, 0f00): PCS maps raw to certified TCB.
    assert_eq!(p.cpusvn, "0b0b1a18ffff04000000000000000000");
    assert_eq!(p.pcesvn, "0f00");
    assert_pck_response(
        &headers,
        &body,
        [&chain[0], &chain[1], &chain[2]],
        "0B0B0202FF01000000000000000000000D00",
        "00A067110000",
        "processor",
    );
    assert!(headers.get("warning").is_none());

    // Hex case does not matter, nor does the encrypted PPID (or its absence).
    let upper = format!(
        "qeid={}&encrypted_ppid={}&cpusvn={}&pcesvn={}&pceid=0000",
        p.qeid.to_ascii_uppercase(),
        "5A".repeat(384),
        p.cpusvn.to_ascii_uppercase(),
        p.pcesvn.to_ascii_uppercase()
    );
    let (status, _, body2) = get(&state, &upper).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body2, body);
    let no_ppid = format!(
        "qeid={}&cpusvn={}&pcesvn={}&pceid=0000",
        p.qeid, p.cpusvn, p.pcesvn
    );
    assert_eq!(get(&state, &no_ppid).await.0, StatusCode::OK);

    // Another platform TCB, QE or PCE: the same 404 as any offline miss.
    let other_cpusvn = "0c0b1a18ffff04000000000000000000";
    let (status, _, body) = get(&state, &qcnl_query(&p, other_cpusvn)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error"]["code"], "NotFound");
    let other_pcesvn = qcnl_query(&p, &p.cpusvn).replace("pcesvn=0f00", "pcesvn=0e00");
    assert_eq!(get(&state, &other_pcesvn).await.0, StatusCode::NOT_FOUND);
    let other_pceid = qcnl_query(&p, &p.cpusvn).replace("pceid=0000", "pceid=0100");
    assert_eq!(get(&state, &other_pceid).await.0, StatusCode::NOT_FOUND);
    let no_qeid = format!("cpusvn={}&pcesvn={}&pceid=0000", p.cpusvn, p.pcesvn);
    assert_eq!(get(&state, &no_qeid).await.0, StatusCode::NOT_FOUND);

    // Parameter validation is unchanged.
    let not_hex = qcnl_query(&p, "zz");
    assert_eq!(get(&state, &not_hex).await.0, StatusCode::BAD_REQUEST);
    let no_pceid = format!("qeid={}&cpusvn={}&pcesvn={}", p.qeid, p.cpusvn, p.pcesvn);
    assert_eq!(get(&state, &no_pceid).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn certificate_expires_with_the_leaf_not_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = import(dir.path(), &[QUOTE_A]);
    let quote = std::fs::read(testdata(QUOTE_A)).unwrap();
    let p = platform_of_v3(&quote);
    // Leaf notAfter: 2030-09-20T21:53:43Z (openssl x509 -enddate).
    let not_after = 1_916_171_623;
    let k = key::pck_cert_by_platform(&p.qeid, "0000", &p.cpusvn, &p.pcesvn);
    let entry = store.get(&k).unwrap().unwrap();
    assert_eq!(entry.next_update, not_after);
    assert_eq!(entry.fetched_at, T_A);

    let state = offline(store, not_after - 3600);
    let (status, headers, _) = get(&state, &qcnl_query(&p, &p.cpusvn)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(header(&headers, "warning").contains("Stale"));
}

#[tokio::test]
async fn expired_certificate_is_a_503_offline() {
    let dir = tempfile::tempdir().unwrap();
    let store = import(dir.path(), &[QUOTE_A]);
    let p = platform_of_v3(&std::fs::read(testdata(QUOTE_A)).unwrap());
    let state = offline(store, 1_916_171_623 + 1);
    let (status, _, body) = get(&state, &qcnl_query(&p, &p.cpusvn)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["error"]["code"], "CollateralExpired");
}

#[tokio::test]
async fn out_of_order_chain_with_the_old_root_is_reordered() {
    // Set D: the chain in the quote is leaf, root (2033 variant), PCK CA.
    let dir = tempfile::tempdir().unwrap();
    let store = import(dir.path(), &[QUOTE_D]);
    let quote = std::fs::read(testdata(QUOTE_D)).unwrap();
    let p = platform_of_v3(&quote);
    let chain = chain_in_quote(&quote);
    let state = offline(store, T_A);
    let (status, headers, body) = get(&state, &qcnl_query(&p, &p.cpusvn)).await;
    assert_eq!(status, StatusCode::OK);
    assert_pck_response(
        &headers,
        &body,
        [&chain[0], &chain[2], &chain[1]],
        "060602040180010000000000000000000700",
        "00906EA10000",
        "processor",
    );
}

#[tokio::test]
async fn hex_quote_platform_ca_and_json_collateral_in_one_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let keys = pccs::import_paths(
        &store,
        &[
            testdata("dcap-qvl/sample/sgx_quote_collateral.json"),
            testdata(QUOTE_E_HEX),
            testdata(QUOTE_TDX),
        ],
        T_A,
    )
    .unwrap();
    assert_eq!(keys.len(), 4 + 1 + 1, "{keys:?}");
    assert!(keys.contains(&key::tcb("00A067110000")));
    let text = std::fs::read_to_string(testdata(QUOTE_E_HEX)).unwrap();
    let text = text.trim();
    let quote = hex::decode(text.strip_prefix("0x").unwrap_or(text)).unwrap();
    let p = platform_of_v3(&quote);
    let chain = chain_in_quote(&quote);
    let state = offline(store, T_A);
    let (status, headers, body) = get(&state, &qcnl_query(&p, &p.cpusvn)).await;
    assert_eq!(status, StatusCode::OK);
    // PCK TCB (openssl asn1parse): CPUSVN 0E0E0303FFFF01 0…, PCESVN 13.
    assert_pck_response(
        &headers,
        &body,
        [&chain[0], &chain[1], &chain[2]],
        "0E0E0303FFFF010000000000000000000D00",
        "00606A000000",
        "platform",
    );
    // The imported TDX quote's PCK certificate is a Platform CA one for FMSPC B0C06F000000.
    let tdx = keys.last().unwrap();
    let e = state.store().get(tdx).unwrap().unwrap();
    assert_eq!(e.header("SGX-FMSPC"), Some("B0C06F000000"));
    assert_eq!(e.header("SGX-PCK-Certificate-CA-Type"), Some("platform"));
}

#[tokio::test]
async fn exact_query_entry_wins_over_the_imported_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = import(dir.path(), &[QUOTE_A]);
    let p = platform_of_v3(&std::fs::read(testdata(QUOTE_A)).unwrap());
    // An entry an upstream answered earlier for one exact query (canonical: sorted, lower case).
    let canon = format!(
        "cpusvn={}&encrypted_ppid=01&pceid=0000&pcesvn={}&qeid={}",
        p.cpusvn, p.pcesvn, p.qeid
    );
    let fetched = Entry {
        body: b"from upstream".to_vec(),
        content_type: CT_PEM.into(),
        headers: Vec::new(),
        next_update: i64::MAX,
        fetched_at: 0,
    };
    store.put(&key::pck_cert(&canon), &fetched).unwrap();
    let state = offline(store, T_A);
    let (status, _, body) = get(&state, &canon).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"from upstream");
    let other_ppid = canon.replace("encrypted_ppid=01", "encrypted_ppid=02");
    let (status, _, body) = get(&state, &other_ppid).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with(b"-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn lazy_mode_serves_the_import_without_asking_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let store = import(dir.path(), &[QUOTE_A]);
    let p = platform_of_v3(&std::fs::read(testdata(QUOTE_A)).unwrap());
    // An upstream that refuses connections: any request reaching it fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!(
        "http://{}/sgx/certification/v4",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let state = PccsState::new(
        store,
        pccs::Config {
            mode: Mode::Lazy,
            upstream: Some(upstream),
            ..pccs::Config::default()
        },
        Clock::fixed(T_A),
    )
    .unwrap();
    let (status, headers, _) = get(&state, &qcnl_query(&p, &p.cpusvn)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "SGX-FMSPC"), "00A067110000");
    let other = qcnl_query(&p, "0c0b1a18ffff04000000000000000000");
    assert_eq!(get(&state, &other).await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn quote_without_a_pck_chain_is_an_import_error_naming_file_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let path = testdata(QUOTE_TYPE_3);
    let err = pccs::import_paths(&store, std::slice::from_ref(&path), T_A).unwrap_err();
    assert!(
        matches!(
            &err,
            ImportError::Quote { path: p, source: QuoteImportError::CertType(3) }
                if p == &path.display().to_string()
        ),
        "{err:?}"
    );
    let text = anyhow::Error::from(err);
    let text = format!("{text:#}");
    assert!(text.contains("quote_v3_ecdsa_p256_eppid.bin"), "{text}");
    assert!(text.contains("certification data type 3"), "{text}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn damaged_quote_is_a_parse_error_not_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut quote = std::fs::read(testdata(QUOTE_A)).unwrap();
    quote.truncate(1000);
    let path = dir.path().join("truncated.bin");
    std::fs::write(&path, &quote).unwrap();
    let err = pccs::import_paths(&store, &[path], T_A).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Quote {
                source: QuoteImportError::Parse(_),
                ..
            }
        ),
        "{err:?}"
    );
    // Neither JSON nor a quote: the collateral error as before.
    let path = dir.path().join("garbage");
    std::fs::write(&path, b"not collateral").unwrap();
    let err = pccs::import_paths(&store, &[path], T_A).unwrap_err();
    assert!(matches!(err, ImportError::Collateral { .. }), "{err:?}");
}

/// `confcom pccs` as the binary parses it (`pccs_cli::Args` is flattened into the binary's
/// command line).
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    pccs: attestation::pccs_cli::Args,
}

#[tokio::test]
async fn cli_import_of_a_quote_file() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let quote = testdata(QUOTE_A);
    let cli = Cli::try_parse_from([
        "pccs".as_ref(),
        "import".as_ref(),
        "--store".as_ref(),
        store_dir.as_os_str(),
        quote.as_os_str(),
    ])
    .unwrap();
    let code = attestation::pccs_cli::run(cli.pccs).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let p = platform_of_v3(&std::fs::read(&quote).unwrap());
    let state = offline(Store::open(&store_dir).unwrap(), T_A);
    let (status, headers, _) = get(&state, &qcnl_query(&p, &p.cpusvn)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "SGX-PCK-Certificate-CA-Type"), "processor");
    drop(state); // Releases the store's lock, as a stopped server would.

    let bad = Cli::try_parse_from([
        "pccs".as_ref(),
        "import".as_ref(),
        "--store".as_ref(),
        store_dir.as_os_str(),
        testdata(QUOTE_TYPE_3).as_os_str(),
    ])
    .unwrap();
    let err = attestation::pccs_cli::run(bad.pccs).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("certification data type 3"),
        "{err:#}"
    );
}

#[test]
fn wrapped_hex_quote_imports_like_the_raw_quote() {
    let dir = tempfile::tempdir().unwrap();
    let raw = std::fs::read(testdata(QUOTE_A)).unwrap();
    let hex_text = hex::encode_upper(&raw);
    let wrapped: Vec<&str> = hex_text
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let path = dir.path().join("quote.hex");
    std::fs::write(&path, format!("0x{}\n", wrapped.join("\n"))).unwrap();
    let a = Store::open(&dir.path().join("a")).unwrap();
    let b = Store::open(&dir.path().join("b")).unwrap();
    let from_hex = pccs::import_paths(&a, &[path], T_A).unwrap();
    let from_raw = pccs::import_paths(&b, &[testdata(QUOTE_A)], T_A).unwrap();
    assert_eq!(from_hex, from_raw);
    assert_eq!(a.get(&from_hex[0]).unwrap(), b.get(&from_raw[0]).unwrap());
}
