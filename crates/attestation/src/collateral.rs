//! The collateral model shared by the PCCS, the collateral client and the attestation
//! server: one bundle in dcap-qvl's JSON form, plus conversions to and from Intel PCS
//! response bodies and the dates that decide when each piece must be refreshed.

use serde::{Deserialize, Serialize};

/// Header carrying the TCB info signing chain (PCS API v4).
pub const TCB_INFO_ISSUER_CHAIN: &str = "TCB-Info-Issuer-Chain";
/// Header carrying the TCB info signing chain (PCS API v3; still accepted).
pub const SGX_TCB_INFO_ISSUER_CHAIN: &str = "SGX-TCB-Info-Issuer-Chain";
/// Header carrying the enclave identity signing chain.
pub const ENCLAVE_IDENTITY_ISSUER_CHAIN: &str = "SGX-Enclave-Identity-Issuer-Chain";
/// Header carrying the PCK CRL signing chain.
pub const PCK_CRL_ISSUER_CHAIN: &str = "SGX-PCK-CRL-Issuer-Chain";
/// Header carrying the PCK certificate's issuer chain.
pub const PCK_CERT_ISSUER_CHAIN: &str = "SGX-PCK-Certificate-Issuer-Chain";

/// Errors of the collateral model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A JSON document did not have the expected shape.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which document.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A CRL could not be decoded (DER, PEM or hex expected).
    #[error("malformed {which} CRL")]
    Crl {
        /// Which CRL.
        which: &'static str,
    },
    /// A date in the collateral could not be parsed.
    #[error("bad date in {what}: {value}")]
    Date {
        /// Which document.
        what: &'static str,
        /// The text.
        value: String,
    },
}

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which PCK CA issued a platform's PCK certificate (`ca=` of `pckcrl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaType {
    /// Intel SGX PCK Processor CA.
    Processor,
    /// Intel SGX PCK Platform CA.
    Platform,
}

impl CaType {
    /// The `ca=` query value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processor => "processor",
            Self::Platform => "platform",
        }
    }

    /// Parses a `ca=` value (case-insensitive).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("processor") {
            Some(Self::Processor)
        } else if s.eq_ignore_ascii_case("platform") {
            Some(Self::Platform)
        } else {
            None
        }
    }

    /// From an issuer common name such as "Intel SGX PCK Platform CA".
    #[must_use]
    pub fn from_issuer_cn(cn: &str) -> Option<Self> {
        if cn.contains("Processor") {
            Some(Self::Processor)
        } else if cn.contains("Platform") {
            Some(Self::Platform)
        } else {
            None
        }
    }
}

/// All collateral needed to verify one SGX quote, in dcap-qvl's JSON form
/// (`tcb_info`/`qe_identity` are the exact signed texts; signatures and CRLs are hex):
/// `dcap-verify`'s model, with the PCCS helpers of [`CollateralExt`].
pub type CollateralBundle = dcap_verify::Collateral;

/// Maps a `dcap-verify` collateral error into this module's error.
fn malformed(what: &'static str) -> impl Fn(dcap_verify::VerifyError) -> Error {
    move |e| Error::Malformed {
        what,
        reason: e.to_string(),
    }
}

/// Maps a `dcap-verify` error about one document into this module's error, keeping just
/// the reason of a malformed document (the parser's message).
fn malformed_reason(what: &'static str) -> impl Fn(dcap_verify::VerifyError) -> Error {
    move |e| match e {
        dcap_verify::VerifyError::MalformedCollateral { reason, .. } => {
            Error::Malformed { what, reason }
        }
        e => malformed(what)(e),
    }
}

/// Parses dcap-qvl's JSON form.
pub fn from_json(bytes: &[u8]) -> Result<CollateralBundle> {
    // The reason is the JSON parser's message: the same text as before the merge.
    CollateralBundle::from_json(bytes).map_err(malformed_reason("collateral JSON"))
}

/// Builds a bundle from PCS responses (bodies and issuer chains); both CRLs are required
/// and must decode to DER.
pub fn from_pcs(r: dcap_verify::PcsResponses<'_>) -> Result<CollateralBundle> {
    let b = CollateralBundle::from_pcs(r).map_err(malformed("PCS responses"))?;
    if b.root_ca_crl.first() != Some(&0x30) {
        return Err(Error::Crl { which: "root CA" });
    }
    if b.pck_crl.first() != Some(&0x30) {
        return Err(Error::Crl { which: "PCK" });
    }
    Ok(b)
}

/// What the PCCS and the attestation server read from a bundle besides verifying with it.
pub trait CollateralExt {
    /// The PCS body of `GET /tcb` (`{"tcbInfo":…,"signature":"…"}`).
    fn tcb_info_body(&self) -> String;
    /// The PCS body of `GET /qe/identity`.
    fn qe_identity_body(&self) -> String;
    /// The FMSPC of the TCB info (upper-case hex).
    fn fmspc(&self) -> Result<String>;
    /// Which PCK CA issued the PCK CRL.
    fn ca_type(&self) -> Result<CaType>;
    /// The earliest `nextUpdate` of all four pieces (UNIX seconds).
    fn next_update(&self) -> Result<i64>;
    /// The latest `issueDate`/`thisUpdate` of all pieces (UNIX seconds): the bundle is not
    /// usable before it.
    fn issued(&self) -> Result<i64>;
}

impl CollateralExt for CollateralBundle {
    fn tcb_info_body(&self) -> String {
        dcap_verify::signed_body("tcbInfo", &self.tcb_info, &self.tcb_info_signature)
    }

    fn qe_identity_body(&self) -> String {
        dcap_verify::signed_body(
            "enclaveIdentity",
            &self.qe_identity,
            &self.qe_identity_signature,
        )
    }

    fn fmspc(&self) -> Result<String> {
        Ok(signed_info(&self.tcb_info, "TCB info")?
            .fmspc
            .to_ascii_uppercase())
    }

    fn ca_type(&self) -> Result<CaType> {
        let info = crl_info(&self.pck_crl).ok_or(Error::Crl { which: "PCK" })?;
        CaType::from_issuer_cn(&info.issuer_cn).ok_or(Error::Crl { which: "PCK" })
    }

    fn next_update(&self) -> Result<i64> {
        let tcb = signed_info(&self.tcb_info, "TCB info")?.next_update()?;
        let qe = signed_info(&self.qe_identity, "QE identity")?.next_update()?;
        let pck = crl_info(&self.pck_crl)
            .ok_or(Error::Crl { which: "PCK" })?
            .next_update
            .unwrap_or(i64::MAX);
        let root = crl_info(&self.root_ca_crl)
            .ok_or(Error::Crl { which: "root CA" })?
            .next_update
            .unwrap_or(i64::MAX);
        Ok(tcb.min(qe).min(pck).min(root))
    }

    fn issued(&self) -> Result<i64> {
        let tcb = signed_info(&self.tcb_info, "TCB info")?.issue_date()?;
        let qe = signed_info(&self.qe_identity, "QE identity")?.issue_date()?;
        Ok(tcb.max(qe))
    }
}

/// A bundle with what every attestation derives from it computed once: the verifier's
/// collateral value, MAA's `x-ms-sgx-collateral` hashes and the expiry.
#[derive(Debug, Clone)]
pub struct PreparedCollateral {
    /// The bundle, as `dcap-verify` takes it.
    pub bundle: CollateralBundle,
    /// `x-ms-sgx-collateral` without `quotehash` (hex SHA-256 of each input).
    pub hashes: serde_json::Map<String, serde_json::Value>,
    /// Earliest `nextUpdate` (UNIX seconds), if the dates parse.
    pub next_update: Option<i64>,
    /// FMSPC of the TCB info (upper-case hex), if it parses.
    pub fmspc: Option<String>,
    /// CA of the PCK CRL, if it parses.
    pub ca: Option<CaType>,
}

impl PreparedCollateral {
    /// Prepares a bundle.
    #[must_use]
    pub fn new(bundle: CollateralBundle) -> Self {
        let h = |d: &[u8]| {
            serde_json::Value::String(hex::encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                d,
            )))
        };
        let mut hashes = serde_json::Map::new();
        hashes.insert(
            "qeidcertshash".into(),
            h(bundle.qe_identity_issuer_chain.as_bytes()),
        );
        hashes.insert("qeidcrlhash".into(), h(&bundle.root_ca_crl));
        hashes.insert("qeidhash".into(), h(bundle.qe_identity.as_bytes()));
        hashes.insert(
            "tcbinfocertshash".into(),
            h(bundle.tcb_info_issuer_chain.as_bytes()),
        );
        hashes.insert("tcbinfocrlhash".into(), h(&bundle.pck_crl));
        hashes.insert("tcbinfohash".into(), h(bundle.tcb_info.as_bytes()));
        let next_update = bundle.next_update().ok();
        let fmspc = bundle.fmspc().ok();
        let ca = bundle.ca_type().ok();
        Self {
            bundle,
            hashes,
            next_update,
            fmspc,
            ca,
        }
    }
}

/// Splits one PCS signed body into the exact inner text and the signature bytes (to check
/// a single response; whole bundles are built by [`from_pcs`]): `dcap-verify`'s
/// [`split_signed_body`](dcap_verify::split_signed_body) with this module's error.
pub fn split_signed(body: &[u8], key: &'static str) -> Result<(String, Vec<u8>)> {
    let what = if key == "tcbInfo" {
        "TCB info body"
    } else {
        "enclave identity body"
    };
    dcap_verify::split_signed_body(body, key, what).map_err(malformed_reason(what))
}

/// The dates and FMSPC of a signed TCB info or enclave identity text.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedInfo {
    /// `issueDate` (RFC 3339).
    pub issue_date: String,
    /// `nextUpdate` (RFC 3339).
    pub next_update: String,
    /// `fmspc` (TCB info only).
    #[serde(default)]
    pub fmspc: String,
}

impl SignedInfo {
    /// `nextUpdate` in UNIX seconds.
    pub fn next_update(&self) -> Result<i64> {
        rfc3339(&self.next_update, "nextUpdate")
    }

    /// `issueDate` in UNIX seconds.
    pub fn issue_date(&self) -> Result<i64> {
        rfc3339(&self.issue_date, "issueDate")
    }
}

/// Parses the dates of a signed TCB info / identity text.
pub fn signed_info(text: &str, what: &'static str) -> Result<SignedInfo> {
    serde_json::from_str(text).map_err(|e| Error::Malformed {
        what,
        reason: e.to_string(),
    })
}

fn rfc3339(s: &str, what: &'static str) -> Result<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(time::OffsetDateTime::unix_timestamp)
        .map_err(|_| Error::Date {
            what,
            value: s.to_owned(),
        })
}

/// Facts read from a CRL.
#[derive(Debug, Clone)]
pub struct CrlInfo {
    /// Issuer common name.
    pub issuer_cn: String,
    /// `thisUpdate` (UNIX seconds).
    pub this_update: i64,
    /// `nextUpdate` (UNIX seconds), if present.
    pub next_update: Option<i64>,
}

/// Reads issuer and dates from a DER CRL.
#[must_use]
pub fn crl_info(der_bytes: &[u8]) -> Option<CrlInfo> {
    use der::Decode;
    let crl = x509_cert::crl::CertificateList::from_der(der_bytes).ok()?;
    let tbs = &crl.tbs_cert_list;
    let mut issuer_cn = String::new();
    for rdn in tbs.issuer.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == const_oid_cn() {
                if let Ok(s) = atv.value.decode_as::<der::asn1::Utf8StringRef<'_>>() {
                    issuer_cn = s.as_str().to_owned();
                } else if let Ok(s) = atv.value.decode_as::<der::asn1::PrintableStringRef<'_>>() {
                    issuer_cn = s.as_str().to_owned();
                }
            }
        }
    }
    let secs = |t: &x509_cert::time::Time| {
        i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
    };
    Some(CrlInfo {
        issuer_cn,
        this_update: secs(&tbs.this_update),
        next_update: tbs.next_update.as_ref().map(secs),
    })
}

fn const_oid_cn() -> der::asn1::ObjectIdentifier {
    // id-at-commonName
    der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3")
}

/// Decodes a CRL served as DER, PEM or a hex string (PCCS's `rootcacrl`): `dcap-verify`'s
/// [`crl_der`](dcap_verify::crl_der), keeping only results that look like DER.
#[must_use]
pub fn decode_crl(body: &[u8]) -> Option<Vec<u8>> {
    dcap_verify::crl_der(body, "CRL")
        .ok()
        .filter(|der_bytes| der_bytes.first() == Some(&0x30))
}

/// URL-encodes a PEM chain as Intel PCS does in its issuer-chain headers.
#[must_use]
pub fn encode_chain_header(pem: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SET: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    utf8_percent_encode(pem, SET).to_string()
}

/// Decodes an issuer-chain header value.
#[must_use]
pub fn decode_chain_header(value: &str) -> Option<String> {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_a() -> CollateralBundle {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/dcap/dcap-qvl/sample/sgx_quote_collateral.json"
        );
        from_json(&std::fs::read(p).unwrap()).unwrap()
    }

    #[test]
    fn set_a_facts() {
        let b = set_a();
        assert_eq!(b.fmspc().unwrap(), "00A067110000");
        assert_eq!(b.ca_type().unwrap(), CaType::Processor);
        // QE identity expires first: 2025-07-19T10:01:18Z.
        assert_eq!(b.next_update().unwrap(), 1_752_919_278);
        assert!(b.issued().unwrap() < 1_751_624_924);
    }

    #[test]
    fn pcs_round_trip_keeps_exact_texts() {
        let b = set_a();
        let tcb = b.tcb_info_body();
        let qe = b.qe_identity_body();
        let root = hex::encode(&b.root_ca_crl);
        let back = from_pcs(dcap_verify::PcsResponses {
            tcb_info: tcb.as_bytes(),
            tcb_info_issuer_chain: b.tcb_info_issuer_chain.as_bytes(),
            qe_identity: qe.as_bytes(),
            qe_identity_issuer_chain: b.qe_identity_issuer_chain.as_bytes(),
            pck_crl: Some(&b.pck_crl),
            pck_crl_issuer_chain: b.pck_crl_issuer_chain.as_bytes(),
            root_ca_crl: Some(root.as_bytes()),
            pck_certificate_chain: None,
        })
        .unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn split_signed_slices_the_pcs_body() {
        let b = set_a();
        let (inner, sig) = split_signed(b.tcb_info_body().as_bytes(), "tcbInfo").unwrap();
        assert_eq!((&inner, &sig), (&b.tcb_info, &b.tcb_info_signature));
        let e = split_signed(b.qe_identity_body().as_bytes(), "tcbInfo").unwrap_err();
        assert!(
            matches!(
                e,
                Error::Malformed {
                    what: "TCB info body",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn chain_header_round_trip() {
        let b = set_a();
        let h = encode_chain_header(&b.tcb_info_issuer_chain);
        assert!(h.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{h}");
        assert_eq!(decode_chain_header(&h).unwrap(), b.tcb_info_issuer_chain);
    }

    #[test]
    fn crl_decoding_accepts_der_pem_hex() {
        let b = set_a();
        let pem_text = pem::encode(&pem::Pem::new("X509 CRL", b.pck_crl.clone()));
        assert_eq!(decode_crl(pem_text.as_bytes()).unwrap(), b.pck_crl);
        assert_eq!(
            decode_crl(hex::encode(&b.pck_crl).as_bytes()).unwrap(),
            b.pck_crl
        );
        assert_eq!(decode_crl(&b.pck_crl).unwrap(), b.pck_crl);
        assert!(decode_crl(b"not a crl").is_none());
    }
}
