//! Entry points for `cargo fuzz` targets (not a stable API).
//!
//! [`attest_request`] sends one input as the body of
//! `POST /attest/SgxEnclave?api-version=2022-08-01` through the real [`crate::attest::router`]
//! (real verifier pinned to Intel's root, set A's real collateral, an ephemeral signing key, a
//! clock fixed inside set A's collateral window) and checks what must hold for every request.
//!
//! Input layout: byte 0 holds the mode (bits 0-1) and flags ([`STD_BASE64`], ...).
//! - Quote source [`RAW`] (bits 0-1 = 0): the rest of the input is the HTTP body verbatim.
//! - Otherwise byte 1 is a presence mask ([`HAS_RUNTIME`], ...) and the rest is split at
//!   [`SEP`] into at most 5 fields: quote, runtimeData, initTimeData, nonce,
//!   draftPolicyForAttestation. The harness writes a valid MAA JSON body from them, so mutated
//!   bytes reach the decoders and the verifier rather than the JSON parser:
//!   - [`QUOTE`]: the quote field is the quote;
//!   - [`PATCHED_A`] (and 3): the quote is set A's real quote edited by the quote field (see
//!     [`patch`]).
//!
//! The empty input is an empty body.
//!
//! Checked for every response: no panic; the status is 200 or the documented status of its
//! error code; the body is JSON, an `{"error":{"code","message"}}` object for errors; a 200
//! carries a token signed by the server's key whose claims are set A's verdict (no other
//! quote can verify here). For bodies the harness wrote: valid base64 and JSON are never
//! rejected, the signed part of a verified quote is set A's, the nonce and quote hash are
//! echoed, and set A's own quote is accepted unless bound data or a draft policy says no.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::attest::{self, AttestState};
use crate::client::CollateralSource;
use crate::clock::Clock;
use crate::collateral::{CollateralBundle, PreparedCollateral};
use crate::token::KeyRing;
use crate::verify::{DcapVerifier, QuoteVerifier, VerifiedQuote};

/// Set A's real quote (`testdata/dcap/dcap-qvl/sample/sgx_quote`).
pub const QUOTE_A: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/dcap/dcap-qvl/sample/sgx_quote"
));

/// Set A's real collateral (dcap-qvl JSON).
const COLLATERAL_A: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/dcap/dcap-qvl/sample/sgx_quote_collateral.json"
));

/// The server's fixed clock: inside set A's collateral window.
pub const TIME: i64 = 1_751_624_924;

/// The request target.
pub const PATH: &str = "/attest/SgxEnclave?api-version=2022-08-01";

/// Separates the fields of a structured input.
pub const SEP: &[u8] = &[0xff, 0xfe, 0xfd, 0xfc];

/// Bits of byte 0 that select the mode.
const MODE_MASK: u8 = 3;
/// Mode (byte 0, bits 0-1): the rest is the raw HTTP body.
pub const RAW: u8 = 0;
/// Mode: structured fields, the quote field is the quote.
pub const QUOTE: u8 = 1;
/// Mode (also 3): structured fields, the quote is set A's quote edited by the quote field.
pub const PATCHED_A: u8 = 2;
/// Byte 0 flag: encode the quote as padded standard base64 instead of base64url.
pub const STD_BASE64: u8 = 1 << 2;
/// Byte 0 flag: `runtimeData.dataType` is `JSON` (else `Binary`).
pub const RUNTIME_JSON: u8 = 1 << 3;
/// Byte 0 flag: `initTimeData.dataType` is `JSON` (else `Binary`).
pub const INIT_JSON: u8 = 1 << 4;
/// Byte 0 flag: omit `dataType`.
pub const NO_DATA_TYPE: u8 = 1 << 5;

/// Byte 1 (structured modes): send `runtimeData`.
pub const HAS_RUNTIME: u8 = 1;
/// Byte 1: send `initTimeData`.
pub const HAS_INIT: u8 = 1 << 1;
/// Byte 1: send `nonce`.
pub const HAS_NONCE: u8 = 1 << 2;
/// Byte 1: send `draftPolicyForAttestation`.
pub const HAS_DRAFT: u8 = 1 << 3;

/// Bytes of the quote covered by the attestation key's signature (header + report body).
const SIGNED_PREFIX: usize = 48 + 384;

/// A raw-body input.
#[must_use]
pub fn raw_input(body: &[u8]) -> Vec<u8> {
    [&[RAW][..], body].concat()
}

/// A structured input: mode byte, presence mask, then the fields joined by [`SEP`]
/// (quote, runtimeData, initTimeData, nonce, draftPolicyForAttestation).
#[must_use]
pub fn fields_input(mode: u8, present: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![mode, present];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(SEP);
        }
        out.extend_from_slice(f);
    }
    out
}

/// The quote field of [`PATCHED_A`] inputs: set A's quote cut to `keep` bytes, then `bytes`
/// written at `offset` (clipped to the quote's end). Fewer than 4 bytes: the quote unchanged.
#[must_use]
pub fn patch(offset: u16, keep: u16, bytes: &[u8]) -> Vec<u8> {
    [&offset.to_le_bytes()[..], &keep.to_le_bytes(), bytes].concat()
}

fn apply_patch(field: &[u8]) -> Vec<u8> {
    let mut q = QUOTE_A.to_vec();
    if let [o0, o1, k0, k1, bytes @ ..] = field {
        q.truncate(usize::from(u16::from_le_bytes([*k0, *k1])));
        let offset = usize::from(u16::from_le_bytes([*o0, *o1]));
        if let Some(dst) = q.get_mut(offset..) {
            for (d, s) in dst.iter_mut().zip(bytes) {
                *d = *s;
            }
        }
    }
    q
}

fn split_fields(data: &[u8]) -> [&[u8]; 5] {
    let mut out: [&[u8]; 5] = [&[]; 5];
    let mut rest = data;
    for (i, slot) in out.iter_mut().enumerate() {
        let cut = (i < 4)
            .then(|| rest.windows(SEP.len()).position(|w| w == SEP))
            .flatten();
        let Some(p) = cut else {
            *slot = rest;
            break;
        };
        *slot = rest.get(..p).unwrap_or_default();
        rest = rest.get(p.saturating_add(SEP.len())..).unwrap_or_default();
    }
    out
}

/// What the harness put in a structured body.
struct Sent {
    quote: Vec<u8>,
    runtime: Option<Vec<u8>>,
    init: Option<Vec<u8>>,
    nonce: Option<String>,
    draft: bool,
}

/// Builds the HTTP body, and what it carries when the harness wrote it.
fn build(data: &[u8]) -> (Vec<u8>, Option<Sent>) {
    let Some((&mode, rest)) = data.split_first() else {
        return (Vec::new(), None);
    };
    if mode & MODE_MASK == RAW {
        return (rest.to_vec(), None);
    }
    let (present, rest) = rest.split_first().map_or((0, &[][..]), |(p, r)| (*p, r));
    let [q, rt, it, nonce, draft] = split_fields(rest);
    let quote = if mode & MODE_MASK == QUOTE {
        q.to_vec()
    } else {
        apply_patch(q)
    };
    let data_type = |json_flag: u8| {
        (mode & NO_DATA_TYPE == 0).then_some(if mode & json_flag != 0 {
            "JSON"
        } else {
            "Binary"
        })
    };
    let item = |d: &[u8], json_flag: u8| match data_type(json_flag) {
        Some(t) => json!({ "data": URL_SAFE_NO_PAD.encode(d), "dataType": t }),
        None => json!({ "data": URL_SAFE_NO_PAD.encode(d) }),
    };
    let quote_text = if mode & STD_BASE64 != 0 {
        STANDARD.encode(&quote)
    } else {
        URL_SAFE_NO_PAD.encode(&quote)
    };
    let mut body = json!({ "quote": quote_text });
    let sent = Sent {
        quote,
        runtime: (present & HAS_RUNTIME != 0).then(|| rt.to_vec()),
        init: (present & HAS_INIT != 0).then(|| it.to_vec()),
        nonce: (present & HAS_NONCE != 0).then(|| String::from_utf8_lossy(nonce).into_owned()),
        draft: present & HAS_DRAFT != 0,
    };
    if let Some(rt) = &sent.runtime {
        body["runtimeData"] = item(rt, RUNTIME_JSON);
    }
    if let Some(it) = &sent.init {
        body["initTimeData"] = item(it, INIT_JSON);
    }
    if let Some(n) = &sent.nonce {
        body["nonce"] = json!(n);
    }
    if sent.draft {
        body["draftPolicyForAttestation"] = json!(String::from_utf8_lossy(draft));
    }
    (body.to_string().into_bytes(), Some(sent))
}

/// The server, built once per thread.
struct Harness {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    /// The verifier's own verdict on set A at [`TIME`].
    verdict_a: VerifiedQuote,
    decoding_key: jsonwebtoken::DecodingKey,
}

fn setup_failed(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("fuzz harness setup: {what}: {e}")
}

impl Harness {
    fn new() -> Self {
        let bundle = CollateralBundle::from_json(COLLATERAL_A)
            .unwrap_or_else(|e| setup_failed("set A collateral", e));
        let verifier = DcapVerifier::new(dcap_verify::TrustAnchors::intel());
        let verdict_a = verifier
            .verify(QUOTE_A, &PreparedCollateral::new(bundle.clone()), TIME)
            .unwrap_or_else(|e| setup_failed("set A does not verify", e));
        // A policy that accepts set A and exercises every kind of rule.
        let policy = format!(
            "allow_debug: {}\nmrenclave: [\"{}\"]\nmrsigner: [\"{}\"]\nproduct_id: [{}]\n\
             min_svn: {}\naccepted_tcb_statuses: [\"{}\"]\naccepted_advisories: [{}]\n\
             rules:\n  - {{ name: ehd, claim: x-ms-sgx-report-data, one_of: [\"{}\"] }}\n",
            verdict_a.debug,
            hex::encode(verdict_a.mr_enclave),
            hex::encode(verdict_a.mr_signer),
            verdict_a.isv_prod_id,
            verdict_a.isv_svn,
            verdict_a.tcb_status,
            verdict_a
                .advisory_ids
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", "),
            hex::encode(verdict_a.report_data),
        );
        let keys = KeyRing::ephemeral().unwrap_or_else(|e| setup_failed("signing key", e));
        let jwks: jsonwebtoken::jwk::JwkSet =
            serde_json::from_value(keys.jwks()).unwrap_or_else(|e| setup_failed("JWKS", e));
        let decoding_key = jwks
            .find(&keys.kid())
            .map(jsonwebtoken::DecodingKey::from_jwk)
            .unwrap_or_else(|| setup_failed("JWKS", "no current key"))
            .unwrap_or_else(|e| setup_failed("JWK", e));
        let state = AttestState::new(
            Arc::new(verifier),
            CollateralSource::from_bundles(vec![bundle]),
            keys,
            &policy,
            attest::Config::default(),
            Clock::fixed(TIME),
        )
        .unwrap_or_else(|e| setup_failed("policy", e));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| setup_failed("tokio runtime", e));
        Self {
            rt,
            app: attest::router(state),
            verdict_a,
            decoding_key,
        }
    }

    fn send(&self, body: Vec<u8>) -> (StatusCode, Option<String>, Vec<u8>) {
        let req = Request::post(PATH)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap_or_else(|e| setup_failed("request", e));
        self.rt.block_on(async {
            let resp = match self.app.clone().oneshot(req).await {
                Ok(r) => r,
                Err(e) => match e {},
            };
            let status = resp.status();
            let ctype = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap_or_else(|e| panic!("response body: {e}"));
            (status, ctype, body.to_vec())
        })
    }
}

thread_local! {
    static HARNESS: Harness = Harness::new();
}

/// The documented status of each error code of `POST /attest/SgxEnclave` with static
/// collateral (`CollateralUnavailable`, `Unauthorized`, `NotConfigured` and `InternalError`
/// cannot happen on this path: seeing one is a bug).
fn documented_status(code: &str) -> Option<StatusCode> {
    match code {
        "InvalidRequest"
        | "InvalidBase64"
        | "QuoteTruncated"
        | "MalformedQuote"
        | "UnsupportedTee"
        | "RuntimeDataMismatch"
        | "InitTimeDataMismatch"
        | "QuoteVerificationFailed" => Some(StatusCode::BAD_REQUEST),
        "PolicyDenied" => Some(StatusCode::UNAUTHORIZED),
        "PayloadTooLarge" => Some(StatusCode::PAYLOAD_TOO_LARGE),
        "CollateralNotFound" => Some(StatusCode::SERVICE_UNAVAILABLE),
        _ => None,
    }
}

fn sha256(d: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, d)
        .as_ref()
        .to_vec()
}

/// The outcome of one request: the status and, for errors, the error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// HTTP status.
    pub status: u16,
    /// `error.code` of a non-200 response.
    pub code: Option<String>,
}

/// Fuzz entry point: see the module docs. Panics when the response breaks the contract.
pub fn attest_request(data: &[u8]) {
    let _ = attest_request_outcome(data);
}

/// [`attest_request`], returning the outcome (for the corpus replay test).
pub fn attest_request_outcome(data: &[u8]) -> Outcome {
    HARNESS.with(|h| {
        let (body, sent) = build(data);
        let (status, ctype, resp) = h.send(body);
        assert_eq!(
            ctype.as_deref(),
            Some("application/json"),
            "status {status}: content type"
        );
        let v: Value = serde_json::from_slice(&resp)
            .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e})"));
        let outcome = if status == StatusCode::OK {
            check_token(h, &v, sent.as_ref());
            Outcome {
                status: 200,
                code: None,
            }
        } else {
            let code = v["error"]["code"].as_str().unwrap_or_default();
            let message = v["error"]["message"].as_str().unwrap_or_default();
            assert!(
                v.as_object().is_some_and(|o| o.len() == 1) && !message.is_empty(),
                "status {status}: not an error object: {v}"
            );
            assert_eq!(
                documented_status(code),
                Some(status),
                "undocumented status/code: {v}"
            );
            Outcome {
                status: status.as_u16(),
                code: Some(code.to_owned()),
            }
        };
        if let Some(sent) = &sent {
            check_structured(h, sent, &outcome);
        }
        outcome
    })
}

/// A 200 carries a token signed by the server's key whose claims are set A's verdict: no
/// other quote can verify against set A's collateral and Intel's root. A request with a draft
/// policy gets an unsecured token (`alg: none`, no signature), never a signed one.
fn check_token(h: &Harness, v: &Value, sent: Option<&Sent>) {
    use base64::Engine as _;
    let token = v["token"]
        .as_str()
        .unwrap_or_else(|| panic!("200 without a token: {v}"));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let verified = jsonwebtoken::decode::<Value>(token, &h.decoding_key, &validation);
    let parts: Vec<&str> = token.split('.').collect();
    let claims = if parts.get(2) == Some(&"") {
        assert!(
            sent.is_none_or(|s| s.draft),
            "an unsecured token without a draft policy"
        );
        assert!(verified.is_err(), "an unsecured token verified");
        let decode = |p: Option<&&str>| -> Value {
            let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.copied().unwrap_or_default())
                .unwrap_or_else(|e| panic!("token part is not base64url: {e}"));
            serde_json::from_slice(&b).unwrap_or_else(|e| panic!("token part is not JSON: {e}"))
        };
        assert_eq!(decode(parts.first())["alg"], "none");
        let claims = decode(parts.get(1));
        assert_eq!(claims["x-ms-policy-draft"], true);
        claims
    } else {
        assert!(
            sent.is_none_or(|s| !s.draft),
            "a signed token for a draft policy"
        );
        verified
            .unwrap_or_else(|e| panic!("token does not verify: {e}"))
            .claims
    };
    let a = &h.verdict_a;
    assert_eq!(claims["x-ms-sgx-mrenclave"], hex::encode(a.mr_enclave));
    assert_eq!(claims["x-ms-sgx-mrsigner"], hex::encode(a.mr_signer));
    assert_eq!(claims["x-ms-sgx-report-data"], hex::encode(a.report_data));
    assert_eq!(claims["x-confcom-tcb-status"], a.tcb_status.as_str());
    assert_eq!(claims["iat"], TIME);
    if let Some(s) = sent {
        assert_eq!(
            s.quote.get(..SIGNED_PREFIX),
            QUOTE_A.get(..SIGNED_PREFIX),
            "a quote with another signed header/report body verified"
        );
        assert_eq!(
            claims["x-ms-sgx-collateral"]["quotehash"],
            hex::encode(sha256(&s.quote))
        );
        match &s.nonce {
            Some(n) => assert_eq!(claims["nonce"], n.as_str()),
            None => assert!(claims.get("nonce").is_none()),
        }
        assert_eq!(claims.get("x-ms-policy-draft").is_some(), s.draft);
    }
}

/// Bodies the harness wrote are valid JSON with valid base64: only the quote, the bound data
/// and the draft policy can fail; set A's own quote fails only on the bound data or the
/// draft policy.
fn check_structured(h: &Harness, s: &Sent, o: &Outcome) {
    let code = o.code.as_deref();
    assert_ne!(code, Some("InvalidBase64"), "valid base64 rejected");
    if code == Some("InvalidRequest") {
        assert!(s.draft, "well-formed body rejected");
    }
    if s.quote != QUOTE_A {
        return;
    }
    let a = &h.verdict_a;
    let rt_bad = s
        .runtime
        .as_ref()
        .is_some_and(|d| a.report_data.get(..32) != Some(&sha256(d)[..]));
    let it_bad = s
        .init
        .as_ref()
        .is_some_and(|d| a.config_id.get(..32) != Some(&sha256(d)[..]));
    let expected = if rt_bad {
        Some("RuntimeDataMismatch")
    } else if it_bad {
        Some("InitTimeDataMismatch")
    } else {
        None
    };
    match (expected, s.draft) {
        (Some(e), _) => assert_eq!(code, Some(e), "set A with bound data"),
        (None, false) => assert_eq!(o.status, 200, "set A rejected: {code:?}"),
        (None, true) => assert!(
            matches!(code, None | Some("InvalidRequest" | "PolicyDenied")),
            "set A with a draft policy: {code:?}"
        ),
    }
}
