//! MAA's JWS form of a policy (`PUT /policies/{type}`): a compact JWS whose payload is
//! `{"AttestationPolicy": "<base64url of the policy text>"}`, either unsigned (header
//! `{"alg":"none"}`, empty signature: `header.payload.`) or signed (RS256 or ES256) by a key
//! whose X.509 certificate is the first `x5c` entry and must be one of the configured policy
//! signer certificates. This module only unwraps the policy text: [`crate::policy`] parses it.
//!
//! Rules ([`decode`]):
//! - no signer certificates configured: a plain (YAML/JSON) body, an unsigned JWS, or a
//!   signed JWS whose signature verifies with its own `x5c` leaf (integrity only);
//! - signer certificates configured: only a JWS signed by one of them; a plain body or an
//!   unsigned JWS is [`Error::SignatureRequired`].
//!
//! The same JWS form carries MAA's policy management certificate requests
//! (`POST /certificates:add` and `POST /certificates:remove`, [`decode_certificate_request`]):
//! signed (RS256 or ES256) by a current signer whose certificate is the first `x5c` entry, the
//! payload `{"policyCertificate": <JWK>}` naming the certificate in the JWK's `x5c`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use der::Decode;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Errors of unwrapping a policy body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The body is not UTF-8.
    #[error("policy must be UTF-8")]
    NotUtf8,
    /// The body has the shape of a compact JWS but is not a valid policy JWS.
    #[error("malformed policy JWS: {0}")]
    Malformed(&'static str),
    /// A JWS algorithm other than `none`, `RS256` and `ES256`.
    #[error("unsupported policy JWS algorithm {0:?} (expected none, RS256 or ES256)")]
    UnsupportedAlgorithm(String),
    /// Signers are configured and the policy is plain text or an unsigned JWS.
    #[error(
        "policy signer certificates are configured: the body must be a JWS signed (RS256 or ES256) by one of them, with its certificate in x5c"
    )]
    SignatureRequired,
    /// The `x5c` leaf is not one of the current signer certificates.
    #[error(
        "the JWS is signed by a certificate that is not a current policy signer (SHA-256 {thumbprint})"
    )]
    UntrustedSigner {
        /// Hex SHA-256 of the presented certificate (DER).
        thumbprint: String,
    },
    /// The signature does not verify with the `x5c` leaf's public key.
    #[error("the JWS signature does not verify with its x5c certificate")]
    BadSignature,
    /// A `--policy-signer-cert` file holds no certificate, or a malformed one.
    #[error("policy signer certificate: {0}")]
    SignerCertificate(String),
}

/// The policy signer certificates (`--policy-signer-cert`, repeatable; then changed at run
/// time through `POST /certificates:add|remove`). Each certificate appears once.
#[derive(Debug, Clone, Default)]
pub struct PolicySigners {
    /// DER of each certificate, in the order added.
    certs: Vec<Vec<u8>>,
}

impl PolicySigners {
    /// No signers: plain and unsigned policies are accepted.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds every certificate of a PEM file (one or more `CERTIFICATE` blocks).
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<(), Error> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut added = 0usize;
        for der_cert in CertificateDer::pem_slice_iter(pem) {
            let der_cert = der_cert.map_err(|e| Error::SignerCertificate(e.to_string()))?;
            check_signer_key(&der_cert)?;
            self.insert(der_cert.to_vec());
            added = added.saturating_add(1);
        }
        if added == 0 {
            return Err(Error::SignerCertificate("no PEM certificate found".into()));
        }
        Ok(())
    }

    /// Whether no signer is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// Number of signer certificates.
    #[must_use]
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Whether `der_cert` (DER) is one of the signers.
    #[must_use]
    pub fn contains(&self, der_cert: &[u8]) -> bool {
        self.certs.iter().any(|c| c.as_slice() == der_cert)
    }

    /// The certificates (DER), in the order added.
    pub fn certificates(&self) -> impl Iterator<Item = &[u8]> {
        self.certs.iter().map(Vec::as_slice)
    }

    /// Adds a certificate (DER, already parsed as X.509 by the caller); `false` when it was
    /// already there.
    pub fn insert(&mut self, der_cert: Vec<u8>) -> bool {
        if self.contains(&der_cert) {
            return false;
        }
        self.certs.push(der_cert);
        true
    }

    /// Removes a certificate (DER); `false` when it was not there.
    pub fn remove(&mut self, der_cert: &[u8]) -> bool {
        let before = self.certs.len();
        self.certs.retain(|c| c.as_slice() != der_cert);
        self.certs.len() != before
    }

    /// MAA's `x-ms-policy-certificates` value: a JWKS with one key per certificate, each
    /// carrying the certificate in `x5c` (standard base64 DER).
    #[must_use]
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.certificates().map(certificate_jwk).collect();
        serde_json::json!({ "keys": keys })
    }
}

/// The public key algorithm of an RSA certificate (rsaEncryption).
const RSA_KEY: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// The public key algorithm of an EC certificate (id-ecPublicKey).
const EC_KEY: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// A JWK for a certificate: `kty` (and `alg`) from its public key algorithm, `use: sig`, and
/// the certificate as the only `x5c` entry.
#[must_use]
pub fn certificate_jwk(der_cert: &[u8]) -> Value {
    let oid = x509_cert::Certificate::from_der(der_cert)
        .map(|c| c.tbs_certificate.subject_public_key_info.algorithm.oid)
        .ok();
    let mut jwk = serde_json::Map::new();
    if oid == Some(RSA_KEY) {
        jwk.insert("kty".into(), "RSA".into());
        jwk.insert("alg".into(), "RS256".into());
    } else if oid == Some(EC_KEY) {
        jwk.insert("kty".into(), "EC".into());
        jwk.insert("alg".into(), "ES256".into());
    }
    jwk.insert("use".into(), "sig".into());
    jwk.insert("x5c".into(), serde_json::json!([STANDARD.encode(der_cert)]));
    Value::Object(jwk)
}

/// Hex (upper case) SHA-1 of a certificate's DER: MAA's `x-ms-certificate-thumbprint`.
#[must_use]
pub fn sha1_thumbprint(der_cert: &[u8]) -> String {
    hex::encode_upper(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        der_cert,
    ))
}

/// How the policy arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Plain YAML/JSON text.
    Plain,
    /// A JWS with `alg: none`.
    Unsigned,
    /// A signed JWS.
    Signed,
}

/// An unwrapped policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedPolicy {
    /// The policy text, for [`crate::policy::AnyPolicy::parse`].
    pub text: String,
    /// How it arrived.
    pub form: Form,
    /// Hex SHA-256 of the signing certificate (DER), for signed policies.
    pub signer: Option<String>,
    /// DER of the signing certificate, for signed policies.
    pub signer_certificate: Option<Vec<u8>>,
    /// The compact JWS as sent (without JSON string quotes or surrounding white space), for
    /// the JWS forms: what MAA's `x-ms-policy-token-hash` hashes.
    pub jws: Option<String>,
}

impl DecodedPolicy {
    /// MAA's `x-ms-policy-token-hash`: BASE64URL(SHA256(the compact JWS as sent)), as Azure's
    /// SDKs compute it over the token they serialize; for the plain form (an extension), over
    /// the text itself.
    #[must_use]
    pub fn token_hash(&self) -> String {
        token_hash(self.jws.as_deref().unwrap_or(&self.text))
    }
}

/// BASE64URL(SHA256(UTF8(`jws`))).
#[must_use]
pub fn token_hash(jws: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        jws.as_bytes(),
    ))
}

/// A verified `POST /policies/{type}:reset` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetRequest {
    /// Unsigned or signed.
    pub form: Form,
    /// Hex SHA-256 of the signing certificate (DER), when signed.
    pub signer: Option<String>,
    /// DER of the signing certificate, when signed.
    pub signer_certificate: Option<Vec<u8>>,
    /// The compact JWS as sent.
    pub jws: String,
}

/// Whether `text` has the shape of a compact JWS (three base64url segments), optionally as a
/// JSON string. No YAML/JSON policy has that shape (it would be a bare scalar).
#[must_use]
pub fn looks_like_jws(text: &str) -> bool {
    compact(text).is_some()
}

/// The compact JWS inside `text` (trimmed, JSON string quotes removed), if it has that shape.
fn compact(text: &str) -> Option<&str> {
    let t = text.trim();
    let t = t
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(t);
    let ok = t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (ok && t.bytes().filter(|&b| b == b'.').count() == 2 && !t.starts_with('.')).then_some(t)
}

/// Unwraps a `PUT /policies/SgxEnclave` body (see the module docs for the rules).
pub fn decode(body: &[u8], signers: &PolicySigners) -> Result<DecodedPolicy, Error> {
    let text = std::str::from_utf8(body).map_err(|_| Error::NotUtf8)?;
    let Some(jws) = compact(text) else {
        if !signers.is_empty() {
            return Err(Error::SignatureRequired);
        }
        return Ok(DecodedPolicy {
            text: text.to_owned(),
            form: Form::Plain,
            signer: None,
            signer_certificate: None,
            jws: None,
        });
    };
    decode_jws(jws, signers)
}

/// Unwraps and checks a `POST /policies/SgxEnclave:reset` body: MAA's JWS with an empty
/// policy document (an empty payload, or `null` or `{}` JSON), as a bare compact JWS or a JSON
/// string, unsigned or signed under the same rules as a policy (see the module docs).
pub fn decode_reset(body: &[u8], signers: &PolicySigners) -> Result<ResetRequest, Error> {
    let jws = request_jws(
        body,
        "a policy reset request is a compact JWS (header.payload.signature)",
    )?;
    let parts = Jws::split(jws)?;
    let (form, signer) = parts.signer(signers)?;
    let p = parts.p;
    if !p.is_empty() {
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let empty = match payload {
            Some(Value::Null) => true,
            Some(Value::Object(m)) => m.is_empty(),
            _ => false,
        };
        if !empty {
            return Err(Error::Malformed(
                "a policy reset JWS has an empty payload (no policy document)",
            ));
        }
    }
    let (signer, signer_certificate) = signer.unzip();
    Ok(ResetRequest {
        form,
        signer,
        signer_certificate,
        jws: jws.to_owned(),
    })
}

/// A JWS signer: the hex SHA-256 and the DER of its certificate.
type JwsSigner = (String, Vec<u8>);

fn decode_jws(jws: &str, signers: &PolicySigners) -> Result<DecodedPolicy, Error> {
    let parts = Jws::split(jws)?;
    let text = policy_text(parts.p)?;
    let (form, signer) = parts.signer(signers)?;
    let (signer, signer_certificate) = signer.unzip();
    Ok(DecodedPolicy {
        text,
        form,
        signer,
        signer_certificate,
        jws: Some(jws.to_owned()),
    })
}

/// The signature algorithm of a JWS `alg`: RS256 or ES256, and the names Azure's .NET and
/// Python SDKs write for them (`RSA256`, and `ECDH256` for ECDSA P-256 with SHA-256, the
/// signature in the JWS r ‖ s form).
fn signing_alg(alg: &str) -> Result<Algorithm, Error> {
    match alg {
        "RS256" | "RSA256" => Ok(Algorithm::RS256),
        "ES256" | "ECDH256" => Ok(Algorithm::ES256),
        other => Err(Error::UnsupportedAlgorithm(other.to_owned())),
    }
}

/// Checks a signed JWS (RS256 or ES256): its `x5c` leaf must be one of `signers` when
/// `require_member`, and the signature must verify with that leaf. Returns the leaf's hex
/// SHA-256 and its DER.
fn check_signed(
    alg: Algorithm,
    header: &serde_json::Map<String, Value>,
    h: &str,
    p: &str,
    sig: &str,
    signers: &PolicySigners,
    require_member: bool,
) -> Result<JwsSigner, Error> {
    let leaf = x5c_leaf(header)?;
    let thumbprint = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &leaf));
    if require_member && !signers.contains(&leaf) {
        return Err(Error::UntrustedSigner { thumbprint });
    }
    verify_signature(h, p, sig, &leaf, alg)?;
    Ok((thumbprint, leaf))
}

/// A verified `POST /certificates:add|remove` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    /// DER of the certificate to add or remove (the payload's JWK `x5c[0]`).
    pub certificate: Vec<u8>,
    /// Hex SHA-256 of the signing certificate (a current signer).
    pub signer: String,
    /// The compact JWS as sent (without JSON string quotes or surrounding white space).
    pub jws: String,
}

/// Unwraps and checks a `POST /certificates:add|remove` body: a compact JWS (optionally as a
/// JSON string, as Azure's SDKs send it) signed (RS256 or ES256) by one of `signers`, its
/// certificate as the first `x5c` entry, whose payload is `{"policyCertificate": <JWK>}`
/// (also accepted: `aas-policyCertificate`, the name in Azure's REST examples) with the
/// certificate to add or remove as the JWK's first `x5c` entry. An empty `signers` trusts
/// nobody. The signature is checked before the payload is read.
pub fn decode_certificate_request(
    body: &[u8],
    signers: &PolicySigners,
) -> Result<CertificateRequest, Error> {
    let jws = request_jws(
        body,
        "a policy certificate request is a compact JWS (header.payload.signature)",
    )?;
    let Jws {
        header,
        alg,
        h,
        p,
        sig,
    } = Jws::split(jws)?;
    let signer = match alg.as_str() {
        "none" => return Err(Error::SignatureRequired),
        other => check_signed(signing_alg(other)?, &header, h, p, sig, signers, true)?.0,
    };
    let payload = json_object(p, "payload is not base64url JSON")?;
    let jwk = payload
        .get("policyCertificate")
        .or_else(|| payload.get("aas-policyCertificate"))
        .and_then(Value::as_object)
        .ok_or(Error::Malformed(
            "payload has no policyCertificate JSON Web Key",
        ))?;
    let encoded = jwk
        .get("x5c")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or(Error::Malformed(
            "policyCertificate carries the certificate in x5c",
        ))?;
    let certificate = STANDARD
        .decode(encoded)
        .map_err(|_| Error::Malformed("policyCertificate x5c is not base64"))?;
    check_signer_key(&certificate)?;
    Ok(CertificateRequest {
        certificate,
        signer,
        jws: jws.to_owned(),
    })
}

/// Whether a certificate's key can sign policies here: ECDSA P-256, or RSA of 2048 to 8192
/// bits (what RS256/ES256 verification accepts). A signer with another key could never sign,
/// and adding one, then removing the others, would lock policy management until a restart.
pub fn check_signer_key(der_cert: &[u8]) -> Result<(), Error> {
    const P256: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    let cert = x509_cert::Certificate::from_der(der_cert)
        .map_err(|e| Error::SignerCertificate(format!("not a DER X.509 certificate: {e}")))?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let refuse = |why: String| Err(Error::SignerCertificate(why));
    if spki.algorithm.oid == EC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok());
        return if curve == Some(P256) {
            Ok(())
        } else {
            refuse("its EC key is not on P-256 (policies are signed with ES256)".into())
        };
    }
    if spki.algorithm.oid == RSA_KEY {
        #[derive(der::Sequence)]
        struct RsaPublicKey<'a> {
            modulus: der::asn1::UintRef<'a>,
            _exponent: der::asn1::UintRef<'a>,
        }
        let bits = RsaPublicKey::from_der(spki.subject_public_key.raw_bytes())
            .map(|k| k.modulus.as_bytes().len().saturating_mul(8))
            .map_err(|e| Error::SignerCertificate(format!("its RSA key does not parse: {e}")))?;
        return if (2048..=8192).contains(&bits) {
            Ok(())
        } else {
            refuse(format!(
                "its RSA key has {bits} bits (2048 to 8192 can sign with RS256)"
            ))
        };
    }
    refuse(format!(
        "its key algorithm {} cannot sign policies (RS256 or ES256)",
        spki.algorithm.oid
    ))
}

/// The parts of a compact JWS, its header decoded.
struct Jws<'a> {
    header: serde_json::Map<String, Value>,
    /// The header's `alg`.
    alg: String,
    h: &'a str,
    p: &'a str,
    sig: &'a str,
}

impl<'a> Jws<'a> {
    /// Splits `header.payload.signature` and decodes the header; `crit` is refused (no
    /// critical extension is understood).
    fn split(jws: &'a str) -> Result<Self, Error> {
        let mut parts = jws.splitn(3, '.');
        let (Some(h), Some(p), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Malformed("expected header.payload.signature"));
        };
        let header = json_object(h, "header is not base64url JSON")?;
        if header.contains_key("crit") {
            return Err(Error::Malformed(
                "critical header parameters are not supported",
            ));
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(Error::Malformed("header has no alg"))?
            .to_owned();
        Ok(Self {
            header,
            alg,
            h,
            p,
            sig,
        })
    }

    /// The form and the signer (hex SHA-256 and DER of its certificate) of a policy or reset
    /// JWS, checked against `signers` (see the module docs).
    fn signer(&self, signers: &PolicySigners) -> Result<(Form, Option<JwsSigner>), Error> {
        match self.alg.as_str() {
            "none" => {
                if !self.sig.is_empty() {
                    return Err(Error::Malformed(
                        "an unsigned (alg none) JWS has an empty signature",
                    ));
                }
                if !signers.is_empty() {
                    return Err(Error::SignatureRequired);
                }
                Ok((Form::Unsigned, None))
            }
            other => {
                let alg = signing_alg(other)?;
                let signer = check_signed(
                    alg,
                    &self.header,
                    self.h,
                    self.p,
                    self.sig,
                    signers,
                    !signers.is_empty(),
                )?;
                Ok((Form::Signed, Some(signer)))
            }
        }
    }
}

/// The compact JWS of a request body that must be one (bare, or as a JSON string).
fn request_jws<'a>(body: &'a [u8], not_jws: &'static str) -> Result<&'a str, Error> {
    let text = std::str::from_utf8(body).map_err(|_| Error::NotUtf8)?;
    compact(text).ok_or(Error::Malformed(not_jws))
}

fn json_object(segment: &str, what: &'static str) -> Result<serde_json::Map<String, Value>, Error> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Error::Malformed(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::Malformed(what)),
    }
}

/// The policy text of the payload `{"AttestationPolicy": "<base64url>"}`.
fn policy_text(payload: &str) -> Result<String, Error> {
    let payload = json_object(payload, "payload is not base64url JSON")?;
    let encoded = payload
        .get("AttestationPolicy")
        .and_then(Value::as_str)
        .ok_or(Error::Malformed("payload has no AttestationPolicy string"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| Error::Malformed("AttestationPolicy is not base64url"))?;
    String::from_utf8(bytes).map_err(|_| Error::Malformed("AttestationPolicy is not UTF-8"))
}

/// The DER of the first `x5c` certificate (RFC 7515 §4.1.6: standard base64), from the header
/// or, as Azure's Python SDK writes it, from the header's `jwk`.
fn x5c_leaf(header: &serde_json::Map<String, Value>) -> Result<Vec<u8>, Error> {
    let first = header
        .get("x5c")
        .or_else(|| header.get("jwk").and_then(|j| j.get("x5c")))
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or(Error::Malformed(
            "a signed policy JWS carries its certificate in x5c",
        ))?;
    STANDARD
        .decode(first)
        .map_err(|_| Error::Malformed("x5c is not base64"))
}

fn verify_signature(
    header: &str,
    payload: &str,
    sig: &str,
    leaf: &[u8],
    alg: Algorithm,
) -> Result<(), Error> {
    let cert = x509_cert::Certificate::from_der(leaf)
        .map_err(|_| Error::Malformed("x5c certificate is not DER X.509"))?;
    // RSA: PKCS#1 RSAPublicKey; EC: the uncompressed point. jsonwebtoken (aws-lc-rs)
    // takes the subjectPublicKey bits as they are.
    let spk = cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let key = match alg {
        Algorithm::RS256 => DecodingKey::from_rsa_der(spk),
        _ => DecodingKey::from_ec_der(spk),
    };
    let message = format!("{header}.{payload}");
    match jsonwebtoken::crypto::verify(sig, message.as_bytes(), &key, alg) {
        Ok(true) => Ok(()),
        _ => Err(Error::BadSignature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsigned(text: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let p = URL_SAFE_NO_PAD.encode(
            serde_json::json!({ "AttestationPolicy": URL_SAFE_NO_PAD.encode(text) }).to_string(),
        );
        format!("{h}.{p}.")
    }

    #[test]
    fn shapes() {
        assert!(looks_like_jws(&unsigned("min_svn: 1")));
        assert!(looks_like_jws(&format!("\"{}\"\n", unsigned(""))));
        assert!(!looks_like_jws("min_svn: 1"));
        assert!(!looks_like_jws("{\"min_svn\": 1}"));
        assert!(!looks_like_jws("a.b"));
        assert!(!looks_like_jws(""));
    }

    #[test]
    fn plain_and_unsigned_without_signers() {
        let none = PolicySigners::none();
        let d = decode(b"min_svn: 1\n", &none).unwrap();
        assert_eq!((d.text.as_str(), d.form), ("min_svn: 1\n", Form::Plain));
        let d = decode(unsigned("min_svn: 2").as_bytes(), &none).unwrap();
        assert_eq!((d.text.as_str(), d.form), ("min_svn: 2", Form::Unsigned));
        // A JSON-quoted JWS, as some clients send with Content-Type application/json.
        let quoted = format!("\"{}\"", unsigned("min_svn: 3"));
        assert_eq!(decode(quoted.as_bytes(), &none).unwrap().text, "min_svn: 3");
    }

    #[test]
    fn malformed() {
        let none = PolicySigners::none();
        for bad in ["e30.e30.", "Zm9v.e30.", "eyJhbGciOiJub25lIn0.e30."] {
            assert!(
                matches!(decode(bad.as_bytes(), &none), Err(Error::Malformed(_))),
                "{bad}"
            );
        }
        let mut sig = unsigned("x");
        sig.push_str("AAAA");
        assert!(matches!(
            decode(sig.as_bytes(), &none),
            Err(Error::Malformed(_))
        ));
        let hs = format!(
            "{}.{}.AAAA",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#),
            unsigned("x").split('.').nth(1).unwrap()
        );
        assert!(matches!(
            decode(hs.as_bytes(), &none),
            Err(Error::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(decode(&[0xff, 0xfe], &none), Err(Error::NotUtf8)));
    }

    #[test]
    fn signer_set_operations() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["signer".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let mut s = PolicySigners::none();
        s.add_pem(cert.pem().as_bytes()).unwrap();
        s.add_pem(cert.pem().as_bytes()).unwrap();
        assert_eq!(s.len(), 1, "a certificate appears once");
        assert!(!s.insert(cert.der().to_vec()));
        let jwks = s.jwks();
        assert_eq!(jwks["keys"][0]["kty"], "EC");
        assert_eq!(jwks["keys"][0]["x5c"][0], STANDARD.encode(cert.der()));
        assert_eq!(sha1_thumbprint(cert.der()).len(), 40);
        assert!(s.remove(cert.der()));
        assert!(!s.remove(cert.der()));
        assert!(s.is_empty());
        // Nobody is trusted by an empty set.
        assert!(matches!(
            decode_certificate_request(b"e30.e30.AAAA", &s),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn signer_file_without_certificate() {
        let mut s = PolicySigners::none();
        assert!(s.add_pem(b"not a pem").is_err());
        assert!(s.is_empty());
    }
}
