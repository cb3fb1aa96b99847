//! Simulated collateral, as `dcap-verify`'s [`Collateral`]: TCB info v3 and QE identity v2
//! JSON signed by the simulated TCB signing key, the PCK and root CRLs, and their issuer
//! chains; and the Intel PCS style files derived from it.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use dcap_verify::Collateral;
use time::{Duration, OffsetDateTime};

use crate::qe::{QE_ISV_SVN, QE_MRSIGNER};
use crate::{Error, Result, SimPki};

/// TCB evaluation data number of the simulated collateral.
pub const TCB_EVALUATION_DATA_NUMBER: u32 = 17;

fn ts(t: OffsetDateTime) -> Result<String> {
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .map_err(|_| Error::Malformed { what: "timestamp" })
}

fn sign(pkcs8: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(|_| {
        Error::Crypto {
            what: "tcb signing key",
        }
    })?;
    key.sign(&SystemRandom::new(), msg)
        .map(|s| s.as_ref().to_vec())
        .map_err(|_| Error::Crypto {
            what: "signing collateral",
        })
}

/// Builds collateral for `pki`: issued `now - 1 day`, next update `now + 30 days`.
///
/// # Errors
/// Signing failures.
pub fn build(pki: &SimPki, now: OffsetDateTime) -> Result<Collateral> {
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let issue = ts(now - Duration::days(1))?;
    let next = now + Duration::days(30);
    let next_s = ts(next)?;
    let tcb_date = ts(now - Duration::days(2))?;
    let p = &pki.platform;
    let comps: Vec<String> = p
        .comp_svn
        .iter()
        .map(|s| format!("{{\"svn\":{s}}}"))
        .collect();
    let lower: Vec<String> = p
        .comp_svn
        .iter()
        .map(|s| format!("{{\"svn\":{}}}", s.saturating_sub(1)))
        .collect();
    // Levels from highest to lowest, as PCS orders them.
    let tcb_info = format!(
        concat!(
            "{{\"id\":\"SGX\",\"version\":3,\"issueDate\":\"{issue}\",",
            "\"nextUpdate\":\"{next}\",\"fmspc\":\"{fmspc}\",\"pceId\":\"{pce}\",",
            "\"tcbType\":0,\"tcbEvaluationDataNumber\":{eval},\"tcbLevels\":[",
            "{{\"tcb\":{{\"sgxtcbcomponents\":[{comps}],\"pcesvn\":{pcesvn}}},",
            "\"tcbDate\":\"{date}\",\"tcbStatus\":\"UpToDate\"}},",
            "{{\"tcb\":{{\"sgxtcbcomponents\":[{lower}],\"pcesvn\":{lowpce}}},",
            "\"tcbDate\":\"{date}\",\"tcbStatus\":\"OutOfDate\",",
            "\"advisoryIDs\":[\"INTEL-SA-00000\"]}}]}}"
        ),
        issue = issue,
        next = next_s,
        fmspc = hex::encode(p.fmspc),
        pce = hex::encode(p.pce_id),
        eval = TCB_EVALUATION_DATA_NUMBER,
        comps = comps.join(","),
        pcesvn = p.pce_svn,
        date = tcb_date,
        lower = lower.join(","),
        lowpce = p.pce_svn.saturating_sub(1),
    );
    let qe_identity = format!(
        concat!(
            "{{\"id\":\"QE\",\"version\":2,\"issueDate\":\"{issue}\",",
            "\"nextUpdate\":\"{next}\",\"tcbEvaluationDataNumber\":{eval},",
            "\"miscselect\":\"00000000\",\"miscselectMask\":\"FFFFFFFF\",",
            "\"attributes\":\"11000000000000000000000000000000\",",
            "\"attributesMask\":\"FBFFFFFFFFFFFFFF0000000000000000\",",
            "\"mrsigner\":\"{mrsigner}\",\"isvprodid\":1,\"tcbLevels\":[",
            "{{\"tcb\":{{\"isvsvn\":{svn}}},\"tcbDate\":\"{date}\",\"tcbStatus\":\"UpToDate\"}},",
            "{{\"tcb\":{{\"isvsvn\":0}},\"tcbDate\":\"{date}\",\"tcbStatus\":\"OutOfDate\"}}]}}"
        ),
        issue = issue,
        next = next_s,
        eval = TCB_EVALUATION_DATA_NUMBER,
        mrsigner = hex::encode_upper(QE_MRSIGNER),
        svn = QE_ISV_SVN,
        date = tcb_date,
    );
    let key = pki.tcb_signing_pkcs8()?;
    Ok(Collateral {
        tcb_info_signature: sign(&key, tcb_info.as_bytes())?,
        qe_identity_signature: sign(&key, qe_identity.as_bytes())?,
        tcb_info,
        qe_identity,
        tcb_info_issuer_chain: pki.tcb_signing_chain_pem(),
        qe_identity_issuer_chain: pki.tcb_signing_chain_pem(),
        pck_crl: pki.crl(false, now)?,
        root_ca_crl: pki.crl(true, now)?,
        pck_crl_issuer_chain: pki.pck_crl_issuer_chain_pem(),
        pck_certificate_chain: None,
    })
}

/// The Intel PCS v4 style response bodies of `c`, as `(file name, bytes)`, named as
/// `confcom verify --collateral-dir` reads them (see [`dcap_verify::PcsResponses`]):
/// `tcb_info.json` (`{"tcbInfo":…,"signature":…}`), `qe_identity.json`
/// (`{"enclaveIdentity":…,"signature":…}`), both built by [`dcap_verify::signed_body`],
/// `pck_crl.der`, `root_ca_crl.der`, and the issuer-chain headers' contents as PEM
/// (`tcb_info_issuer_chain.pem`, `qe_identity_issuer_chain.pem`, `pck_crl_issuer_chain.pem`).
#[must_use]
pub fn pcs_files(c: &Collateral) -> Vec<(&'static str, Vec<u8>)> {
    let chain = |pem: &str| pem.as_bytes().to_vec();
    vec![
        (
            "tcb_info.json",
            dcap_verify::signed_body("tcbInfo", &c.tcb_info, &c.tcb_info_signature).into_bytes(),
        ),
        ("tcb_info_issuer_chain.pem", chain(&c.tcb_info_issuer_chain)),
        (
            "qe_identity.json",
            dcap_verify::signed_body("enclaveIdentity", &c.qe_identity, &c.qe_identity_signature)
                .into_bytes(),
        ),
        (
            "qe_identity_issuer_chain.pem",
            chain(&c.qe_identity_issuer_chain),
        ),
        ("pck_crl.der", c.pck_crl.clone()),
        ("pck_crl_issuer_chain.pem", chain(&c.pck_crl_issuer_chain)),
        ("root_ca_crl.der", c.root_ca_crl.clone()),
    ]
}
