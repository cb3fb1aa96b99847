//! Collateral: the signed TCB info and QE identity, their issuer chains, and the CRLs.

use serde::{Deserialize, Serialize};

use crate::error::VerifyError;

/// Everything besides the quote that verification needs, in dcap-qvl's `QuoteCollateralV3` form.
///
/// JSON form (`from_json` / `to_json`): the field names below; `tcb_info` and `qe_identity` are the exact signed JSON
/// texts, signatures are hex r‖s (64 bytes), CRLs are hex DER, chains are PEM. An empty CRL means "not supplied"
/// (see [`crate::Policy::allow_missing_crls`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collateral {
    /// PEM chain of the PCK CRL issuer (PCK CA, root).
    #[serde(default)]
    pub pck_crl_issuer_chain: String,
    /// Root CA CRL, DER.
    #[serde(with = "hex_bytes", default)]
    pub root_ca_crl: Vec<u8>,
    /// PCK CRL (Processor or Platform CA), DER.
    #[serde(with = "hex_bytes", default)]
    pub pck_crl: Vec<u8>,
    /// PEM chain of the TCB info signer (TCB Signing, root).
    pub tcb_info_issuer_chain: String,
    /// The exact signed TCB info JSON text (the inner `tcbInfo` object).
    pub tcb_info: String,
    /// Signature over `tcb_info`, raw r‖s.
    #[serde(with = "hex_bytes")]
    pub tcb_info_signature: Vec<u8>,
    /// PEM chain of the QE identity signer.
    pub qe_identity_issuer_chain: String,
    /// The exact signed QE identity JSON text (the inner `enclaveIdentity` object).
    pub qe_identity: String,
    /// Signature over `qe_identity`, raw r‖s.
    #[serde(with = "hex_bytes")]
    pub qe_identity_signature: Vec<u8>,
    /// PCK certificate chain (PEM, leaf first or in any order), for quotes whose certification data does not carry it
    /// (types 1–4). Ignored when the quote carries a chain (type 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pck_certificate_chain: Option<String>,
}

impl Collateral {
    /// Parses dcap-qvl's JSON collateral object.
    pub fn from_json(json: &[u8]) -> Result<Collateral, VerifyError> {
        serde_json::from_slice(json).map_err(|e| VerifyError::MalformedCollateral {
            field: "JSON object",
            reason: e.to_string(),
        })
    }

    /// Serialises to dcap-qvl's JSON collateral object.
    pub fn to_json(&self) -> String {
        // Serialising plain strings and byte vectors cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Builds collateral from Intel PCS API v4 responses (bodies and issuer-chain headers).
    pub fn from_pcs(r: PcsResponses<'_>) -> Result<Collateral, VerifyError> {
        let (tcb_info, tcb_info_signature) = split_signed_body(r.tcb_info, "tcbInfo", "tcb_info")?;
        let (qe_identity, qe_identity_signature) =
            split_signed_body(r.qe_identity, "enclaveIdentity", "qe_identity")?;
        Ok(Collateral {
            pck_crl_issuer_chain: header_pem(r.pck_crl_issuer_chain, "pck_crl_issuer_chain")?,
            root_ca_crl: match r.root_ca_crl {
                Some(b) => crl_der(b, "root_ca_crl")?,
                None => Vec::new(),
            },
            pck_crl: match r.pck_crl {
                Some(b) => crl_der(b, "pck_crl")?,
                None => Vec::new(),
            },
            tcb_info_issuer_chain: header_pem(r.tcb_info_issuer_chain, "tcb_info_issuer_chain")?,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain: header_pem(
                r.qe_identity_issuer_chain,
                "qe_identity_issuer_chain",
            )?,
            qe_identity,
            qe_identity_signature,
            pck_certificate_chain: match r.pck_certificate_chain {
                Some(c) => Some(header_pem(c, "pck_certificate_chain")?),
                None => None,
            },
        })
    }
}

/// Intel PCS API v4 responses, as fetched (pure: the caller reads them from the network or disk).
///
/// The `confcom verify --collateral-dir DIR` reader maps these files:
/// `tcb_info.json` (body of `GET /sgx/certification/v4/tcb`), `tcb_info_issuer_chain.pem` (`TCB-Info-Issuer-Chain`
/// header), `qe_identity.json` (`GET /sgx/certification/v4/qe/identity`), `qe_identity_issuer_chain.pem`
/// (`SGX-Enclave-Identity-Issuer-Chain`), `pck_crl.der` (`GET /sgx/certification/v4/pckcrl`, DER or PEM),
/// `pck_crl_issuer_chain.pem` (`SGX-PCK-CRL-Issuer-Chain`), `root_ca_crl.der` (DER, PEM, or PCCS's hex form), and
/// optionally `pck_cert_chain.pem`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PcsResponses<'a> {
    /// Body of the TCB info response: `{"tcbInfo":{…},"signature":"<hex>"}`.
    pub tcb_info: &'a [u8],
    /// `TCB-Info-Issuer-Chain` header value (PEM, URL-encoded or not).
    pub tcb_info_issuer_chain: &'a [u8],
    /// Body of the QE identity response: `{"enclaveIdentity":{…},"signature":"<hex>"}`.
    pub qe_identity: &'a [u8],
    /// `SGX-Enclave-Identity-Issuer-Chain` header value.
    pub qe_identity_issuer_chain: &'a [u8],
    /// Body of the PCK CRL response (DER, PEM or hex of DER), if fetched.
    pub pck_crl: Option<&'a [u8]>,
    /// `SGX-PCK-CRL-Issuer-Chain` header value (may be empty).
    pub pck_crl_issuer_chain: &'a [u8],
    /// The Root CA CRL (DER, PEM or hex of DER), if fetched.
    pub root_ca_crl: Option<&'a [u8]>,
    /// The PCK certificate chain, for quotes that do not carry it.
    pub pck_certificate_chain: Option<&'a [u8]>,
}

#[derive(Deserialize)]
struct SignedBody<'a> {
    #[serde(rename = "tcbInfo", borrow, default)]
    tcb_info: Option<&'a serde_json::value::RawValue>,
    #[serde(rename = "enclaveIdentity", borrow, default)]
    enclave_identity: Option<&'a serde_json::value::RawValue>,
    signature: String,
}

/// Splits an Intel PCS signed body (`{"tcbInfo":{…},"signature":"<hex>"}` or
/// `{"enclaveIdentity":{…},"signature":"<hex>"}`) into the exact inner signed text and the decoded signature.
///
/// `key` is `"tcbInfo"` or `"enclaveIdentity"` (any other key is reported missing). The inner text is sliced from
/// `body`, never re-serialised, so the signature still verifies over it. Errors are
/// [`VerifyError::MalformedCollateral`] naming `field`. The inverse is [`signed_body`].
pub fn split_signed_body(
    body: &[u8],
    key: &str,
    field: &'static str,
) -> Result<(String, Vec<u8>), VerifyError> {
    let err = |reason: String| VerifyError::MalformedCollateral { field, reason };
    let parsed: SignedBody<'_> = serde_json::from_slice(body).map_err(|e| err(e.to_string()))?;
    let inner = match key {
        "tcbInfo" => parsed.tcb_info,
        "enclaveIdentity" => parsed.enclave_identity,
        _ => None,
    };
    let inner = inner.ok_or_else(|| err(format!("no {key:?} object")))?;
    let sig = hex::decode(parsed.signature.trim()).map_err(|e| err(e.to_string()))?;
    Ok((inner.get().to_owned(), sig))
}

/// The Intel PCS body `{"<key>":<inner>,"signature":"<hex>"}` of a signed TCB info (`key` `"tcbInfo"`) or enclave
/// identity (`"enclaveIdentity"`), with `inner` copied verbatim: the inverse of [`split_signed_body`].
#[must_use]
pub fn signed_body(key: &str, inner: &str, signature: &[u8]) -> String {
    format!(
        "{{\"{key}\":{inner},\"signature\":\"{}\"}}",
        hex::encode(signature)
    )
}

/// A PEM header value: URL-decoded when it is percent-encoded.
fn header_pem(v: &[u8], field: &'static str) -> Result<String, VerifyError> {
    let s = std::str::from_utf8(v).map_err(|e| VerifyError::MalformedCollateral {
        field,
        reason: e.to_string(),
    })?;
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    percent_decode(s).ok_or_else(|| VerifyError::MalformedCollateral {
        field,
        reason: "neither PEM nor URL-encoded PEM".into(),
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = b.iter();
    while let Some(&c) = i.next() {
        if c == b'%' {
            let h = [*i.next()?, *i.next()?];
            let v = hex::decode(h).ok()?;
            out.extend_from_slice(&v);
        } else {
            out.push(c);
        }
    }
    let out = String::from_utf8(out).ok()?;
    out.contains("-----BEGIN").then_some(out)
}

/// Decodes a CRL served as DER, PEM or a hex string of the DER (PCCS's `rootcacrl`) to DER.
///
/// Bytes starting with the DER `SEQUENCE` tag `0x30` (after leading white space) are DER and returned unchanged (trailing
/// bytes are kept: DER's last byte may be any value); anything else must be UTF-8 text, PEM when it holds a
/// `-----BEGIN` line, hex otherwise (surrounding white space ignored). It does not parse the CRL: hex text decoding to
/// anything (even nothing) is returned as is. Errors are [`VerifyError::MalformedCollateral`] naming `field`.
pub fn crl_der(v: &[u8], field: &'static str) -> Result<Vec<u8>, VerifyError> {
    let err = |reason: String| VerifyError::MalformedCollateral { field, reason };
    let v = v.trim_ascii_start();
    if v.first() == Some(&0x30) {
        return Ok(v.to_vec());
    }
    let s = std::str::from_utf8(v)
        .map_err(|e| err(e.to_string()))?
        .trim();
    if s.contains("-----BEGIN") {
        let p = pem::parse(s).map_err(|e| err(e.to_string()))?;
        return Ok(p.into_contents());
    }
    hex::decode(s).map_err(|e| err(e.to_string()))
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let s = s.trim();
        let s = s.strip_prefix("0x").unwrap_or(s);
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_of_the_dcap_qvl_sample() {
        let json = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/dcap/dcap-qvl/sample/sgx_quote_collateral.json"
        ))
        .unwrap();
        let c = Collateral::from_json(&json).unwrap();
        assert_eq!(c.tcb_info_signature.len(), 64);
        assert!(c.tcb_info.starts_with("{\"id\":\"SGX\""));
        let again = Collateral::from_json(c.to_json().as_bytes()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn pcs_body_is_sliced_not_reserialised() {
        let body = br#"{"tcbInfo":{"b": 1,  "a":2},"signature":"0a0b"}"#;
        let (inner, sig) = split_signed_body(body, "tcbInfo", "tcb_info").unwrap();
        assert_eq!(inner, r#"{"b": 1,  "a":2}"#);
        assert_eq!(sig, vec![0x0a, 0x0b]);
    }

    #[test]
    fn signed_body_is_the_inverse_of_split_signed_body() {
        let body = signed_body("enclaveIdentity", r#"{"id":"QE", "x":1}"#, &[0xab, 0x01]);
        assert_eq!(
            body,
            r#"{"enclaveIdentity":{"id":"QE", "x":1},"signature":"ab01"}"#
        );
        let (inner, sig) = split_signed_body(body.as_bytes(), "enclaveIdentity", "qe").unwrap();
        assert_eq!(inner, r#"{"id":"QE", "x":1}"#);
        assert_eq!(sig, vec![0xab, 0x01]);
        // The other key is missing, and so is any key that is neither.
        for key in ["tcbInfo", "signature"] {
            let e = split_signed_body(body.as_bytes(), key, "qe").unwrap_err();
            assert!(e.to_string().contains(&format!("no {key:?} object")), "{e}");
        }
    }

    #[test]
    fn crl_der_accepts_der_pem_and_hex() {
        let json = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/dcap/dcap-qvl/sample/sgx_quote_collateral.json"
        ))
        .unwrap();
        let der = Collateral::from_json(&json).unwrap().pck_crl;
        let pem_text = pem::encode(&pem::Pem::new("X509 CRL", der.clone()));
        assert_eq!(crl_der(pem_text.as_bytes(), "crl").unwrap(), der);
        let hex_text = format!(" {}\n", hex::encode(&der));
        assert_eq!(crl_der(hex_text.as_bytes(), "crl").unwrap(), der);
        assert_eq!(crl_der(&der, "crl").unwrap(), der);
        // DER is self-delimiting: a last byte that happens to be white space is kept.
        let mut odd = der.clone();
        odd.push(b'\n');
        assert_eq!(crl_der(&odd, "crl").unwrap(), odd);
        let e = crl_der(b"not a crl", "pck_crl").unwrap_err();
        assert!(e.to_string().contains("pck_crl"), "{e}");
    }

    #[test]
    fn url_encoded_issuer_chain_is_decoded() {
        let v = b"-----BEGIN%20CERTIFICATE-----%0AAAA%0A-----END%20CERTIFICATE-----%0A";
        let s = header_pem(v, "x").unwrap();
        assert_eq!(
            s,
            "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"
        );
    }
}
