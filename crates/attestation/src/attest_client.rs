//! The `confcom attest` client: posts a quote (and runtime data) to an attestation server in
//! MAA's format, then verifies the returned token against the server's `/certs`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Transport failure.
    #[error("request to {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("server answered {status}: {code}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Error message.
        message: String,
    },
    /// The server's answer is not what MAA returns.
    #[error("unexpected response: {0}")]
    Unexpected(String),
    /// The token does not verify.
    #[error("token invalid: {0}")]
    Token(String),
}

/// What to attest.
#[derive(Debug, Clone, Default)]
pub struct AttestRequest {
    /// The quote bytes.
    pub quote: Vec<u8>,
    /// Runtime data bound by REPORTDATA[0..32] = SHA-256(runtime data).
    pub runtime_data: Option<Vec<u8>>,
    /// Send runtime data as `JSON` (else `Binary`).
    pub runtime_data_json: bool,
    /// Nonce echoed into the token.
    pub nonce: Option<String>,
}

/// The attestation server's base URL plus an HTTP client.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of `base_url` (e.g. `http://127.0.0.1:8080`); `ca_pem` adds a trusted root
    /// for HTTPS.
    pub fn new(base_url: &str, ca_pem: Option<&[u8]>) -> Result<Self, ClientError> {
        crate::install_crypto_provider();
        let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|source| ClientError::Http {
                url: base_url.to_owned(),
                source,
            })?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|source| ClientError::Http {
            url: base_url.to_owned(),
            source,
        })?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// `POST /attest/SgxEnclave?api-version=2022-08-01`; returns the token.
    pub async fn attest(&self, req: &AttestRequest) -> Result<String, ClientError> {
        let url = format!("{}/attest/SgxEnclave?api-version=2022-08-01", self.base);
        let mut body = json!({ "quote": URL_SAFE_NO_PAD.encode(&req.quote) });
        if let Some(rt) = &req.runtime_data {
            body["runtimeData"] = json!({
                "data": URL_SAFE_NO_PAD.encode(rt),
                "dataType": if req.runtime_data_json { "JSON" } else { "Binary" },
            });
        }
        if let Some(n) = &req.nonce {
            body["nonce"] = json!(n);
        }
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .map_err(|e| ClientError::Unexpected(format!("non-JSON body ({status}): {e}")))?;
        if !status.is_success() {
            return Err(ClientError::Server {
                status: status.as_u16(),
                code: v["error"]["code"].as_str().unwrap_or_default().to_owned(),
                message: v["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Unexpected("no token in the response".into()))
    }

    /// `GET /certs`.
    pub async fn jwks(&self) -> Result<jsonwebtoken::jwk::JwkSet, ClientError> {
        let url = format!("{}/certs", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
        resp.json()
            .await
            .map_err(|e| ClientError::Unexpected(format!("JWKS: {e}")))
    }

    /// Verifies `token` against the server's `/certs` at `now` (UNIX seconds): ES256
    /// signature by the key named by `kid`, `iss` equal to `expected_issuer` when given,
    /// `nbf <= now < exp`. Returns the claims.
    pub async fn verify(
        &self,
        token: &str,
        now: i64,
        expected_issuer: Option<&str>,
    ) -> Result<Value, ClientError> {
        let jwks = self.jwks().await?;
        verify_token(token, &jwks, now, expected_issuer)
    }
}

/// Verifies a token against a JWKS at `now` (see [`Client::verify`]).
pub fn verify_token(
    token: &str,
    jwks: &jsonwebtoken::jwk::JwkSet,
    now: i64,
    expected_issuer: Option<&str>,
) -> Result<Value, ClientError> {
    let bad = |m: String| ClientError::Token(m);
    let header = jsonwebtoken::decode_header(token).map_err(|e| bad(format!("header: {e}")))?;
    if header.alg != jsonwebtoken::Algorithm::ES256 {
        return Err(bad(format!("unexpected algorithm {:?}", header.alg)));
    }
    let kid = header
        .kid
        .ok_or_else(|| bad("no kid in the header".into()))?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| bad(format!("kid {kid} not in /certs")))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| bad(format!("JWK: {e}")))?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    // Times are checked below against the caller's clock (the server's may be fixed).
    v.validate_exp = false;
    v.validate_nbf = false;
    v.required_spec_claims = ["exp", "nbf", "iss"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if let Some(iss) = expected_issuer {
        v.set_issuer(&[iss]);
    }
    let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| bad(e.to_string()))?;
    let c = data.claims;
    let exp = c["exp"].as_i64().unwrap_or(i64::MIN);
    let nbf = c["nbf"].as_i64().unwrap_or(i64::MAX);
    if now >= exp {
        return Err(bad(format!("expired at {exp} (now {now})")));
    }
    if now < nbf {
        return Err(bad(format!("not valid before {nbf} (now {now})")));
    }
    Ok(c)
}

/// Reads a quote file: binary, hex (optionally `0x`-prefixed) or base64/base64url.
#[must_use]
pub fn decode_quote_file(bytes: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(bytes).map(str::trim);
    if let Ok(t) = text {
        let h = t.strip_prefix("0x").unwrap_or(t);
        if !h.is_empty()
            && h.len() % 2 == 0
            && h.bytes().all(|b| b.is_ascii_hexdigit())
            && let Ok(v) = hex::decode(h)
        {
            return v;
        }
        let compact: String = t.split_whitespace().collect();
        if let Ok(v) = URL_SAFE_NO_PAD.decode(compact.trim_end_matches('=')) {
            return v;
        }
        if let Ok(v) = base64::engine::general_purpose::STANDARD.decode(&compact) {
            return v;
        }
    }
    bytes.to_vec()
}
