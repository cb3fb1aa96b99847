//! A test PKI generated at test time with rcgen: root, PCK CA, PCK leaf with the SGX extension, TCB signing
//! certificate, CRLs, signed TCB info / QE identity, and a v3 quote signed through it.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use dcap_verify::{Collateral, TrustAnchors, UnixTime};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension, DnType,
    IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, RevokedCertParams,
    SerialNumber,
};
use sgx_quote::pck::{PckTcb, SgxExtension, SgxType};
use sgx_quote::{Attributes, MiscSelect, MrSigner, ReportBody, ReportData};
use time::OffsetDateTime;

/// Fixed "now" of the test PKI (2030-01-01T00:00:00Z); everything is valid for a year around it.
pub const NOW: u64 = 1_893_456_000;
const DAY: i64 = 86_400;

pub const FMSPC: [u8; 6] = [0x00, 0x90, 0x6e, 0xa1, 0x00, 0x00];
pub const QE_MRSIGNER: [u8; 32] = [0x8c; 32];

fn at(offset_days: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(i64::try_from(NOW).unwrap() + offset_days * DAY).unwrap()
}

fn iso(offset_days: i64) -> String {
    at(offset_days)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn ca_params(cn: &str, serial: u64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "Test Corporation");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = at(-365);
    p.not_after = at(365);
    p.serial_number = Some(SerialNumber::from(serial));
    p
}

fn leaf_params(cn: &str, serial: u64) -> CertificateParams {
    let mut p = ca_params(cn, serial);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p
}

fn raw_signer(kp: &KeyPair) -> EcdsaKeyPair {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &kp.serialize_der()).unwrap()
}

fn raw_sign(kp: &KeyPair, msg: &[u8]) -> Vec<u8> {
    raw_signer(kp)
        .sign(&SystemRandom::new(), msg)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// What to put in the generated PKI and quote.
#[derive(Clone, Debug)]
pub struct Options {
    /// PCK leaf validity, in days around NOW.
    pub pck_validity: (i64, i64),
    /// Serials listed in the PCK CRL.
    pub pck_crl_revoked: Vec<u64>,
    /// Serials listed in the root CRL.
    pub root_crl_revoked: Vec<u64>,
    /// Sign the PCK CRL with another key (same issuer name).
    pub pck_crl_wrong_key: bool,
    /// The enclave is a debug enclave.
    pub debug: bool,
    /// PCK TCB component SVNs and PCESVN.
    pub comp_svn: [u8; 16],
    pub pce_svn: u16,
    /// QE ISVSVN.
    pub qe_isv_svn: u16,
    /// TCB info levels: (component SVNs, PCESVN, status, advisories).
    pub tcb_levels: Vec<([u8; 16], u16, &'static str, Vec<&'static str>)>,
    /// QE identity levels: (isvsvn, status, advisories).
    pub qe_levels: Vec<(u16, &'static str, Vec<&'static str>)>,
    /// TCB info format version (2 or 3).
    pub tcb_info_version: u32,
}

pub const PCK_SERIAL: u64 = 0x1003;
pub const PCK_CA_SERIAL: u64 = 0x1002;

impl Default for Options {
    fn default() -> Self {
        Options {
            pck_validity: (-30, 300),
            pck_crl_revoked: vec![0x77],
            root_crl_revoked: vec![],
            pck_crl_wrong_key: false,
            debug: false,
            comp_svn: [5; 16],
            pce_svn: 13,
            qe_isv_svn: 8,
            tcb_levels: vec![
                ([5; 16], 13, "UpToDate", vec![]),
                ([4; 16], 13, "SWHardeningNeeded", vec!["INTEL-SA-00615"]),
                ([4; 16], 11, "ConfigurationNeeded", vec!["INTEL-SA-00289"]),
                ([1; 16], 5, "OutOfDate", vec!["INTEL-SA-00001"]),
            ],
            qe_levels: vec![
                (8, "UpToDate", vec![]),
                (6, "OutOfDate", vec!["INTEL-SA-00615", "INTEL-SA-00999"]),
                (4, "Revoked", vec![]),
            ],
            tcb_info_version: 3,
        }
    }
}

/// A generated quote with its collateral and trust anchor.
pub struct Generated {
    pub quote: Vec<u8>,
    pub collateral: Collateral,
    pub anchors: TrustAnchors,
    pub root_pem: String,
    pub now: UnixTime,
}

fn tcb_info_json(o: &Options) -> String {
    let levels: Vec<serde_json::Value> = o
        .tcb_levels
        .iter()
        .map(|(c, pce, status, adv)| {
            let tcb = if o.tcb_info_version == 3 {
                serde_json::json!({
                    "sgxtcbcomponents": c.iter().map(|s| serde_json::json!({"svn": s})).collect::<Vec<_>>(),
                    "pcesvn": pce,
                })
            } else {
                let mut m = serde_json::Map::new();
                for (i, s) in c.iter().enumerate() {
                    m.insert(format!("sgxtcbcomp{:02}svn", i + 1), serde_json::json!(s));
                }
                m.insert("pcesvn".into(), serde_json::json!(pce));
                serde_json::Value::Object(m)
            };
            let mut l = serde_json::json!({"tcb": tcb, "tcbDate": iso(-400), "tcbStatus": status});
            if o.tcb_info_version == 3 {
                l["advisoryIDs"] = serde_json::json!(adv);
            }
            l
        })
        .collect();
    let mut v = serde_json::json!({
        "version": o.tcb_info_version,
        "issueDate": iso(-10),
        "nextUpdate": iso(20),
        "fmspc": hex::encode_upper(FMSPC),
        "pceId": "0000",
        "tcbType": 0,
        "tcbEvaluationDataNumber": 17,
        "tcbLevels": levels,
    });
    if o.tcb_info_version == 3 {
        v["id"] = serde_json::json!("SGX");
    }
    v.to_string()
}

fn qe_identity_json(o: &Options) -> String {
    let levels: Vec<serde_json::Value> = o
        .qe_levels
        .iter()
        .map(|(svn, status, adv)| {
            serde_json::json!({"tcb": {"isvsvn": svn}, "tcbDate": iso(-400), "tcbStatus": status, "advisoryIDs": adv})
        })
        .collect();
    serde_json::json!({
        "id": "QE",
        "version": 2,
        "issueDate": iso(-9),
        "nextUpdate": iso(21),
        "tcbEvaluationDataNumber": 17,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000",
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": hex::encode_upper(QE_MRSIGNER),
        "isvprodid": 1,
        "tcbLevels": levels,
    })
    .to_string()
}

fn crl(issuer: &Issuer<'_, &KeyPair>, revoked: &[u64]) -> Vec<u8> {
    CertificateRevocationListParams {
        this_update: at(-5),
        next_update: at(25),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: at(-6),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .der()
    .to_vec()
}

/// Generates a PKI, collateral and a quote according to `o`.
pub fn generate(o: &Options) -> Generated {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let root_params = ca_params("Test SGX Root CA", 0x1001);
    let root_cert = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::from_params(&root_params, &root_key);

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let ca_params_ = ca_params("Test SGX PCK Processor CA", PCK_CA_SERIAL);
    let ca_cert = ca_params_.signed_by(&ca_key, &root_issuer).unwrap();
    let ca_issuer = Issuer::from_params(&ca_params_, &ca_key);

    let tcb_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let tcb_cert = leaf_params("Test SGX TCB Signing", 0x1004)
        .signed_by(&tcb_key, &root_issuer)
        .unwrap();

    let pck_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut pck_params = leaf_params("Test SGX PCK Certificate", PCK_SERIAL);
    pck_params.not_before = at(o.pck_validity.0);
    pck_params.not_after = at(o.pck_validity.1);
    let ext = SgxExtension {
        ppid: [0x11; 16],
        tcb: PckTcb {
            comp_svn: o.comp_svn,
            pce_svn: o.pce_svn,
            cpu_svn: o.comp_svn,
        },
        pce_id: [0, 0],
        fmspc: FMSPC,
        sgx_type: SgxType::Standard,
        platform_instance_id: None,
    };
    pck_params.custom_extensions = vec![CustomExtension::from_oid_content(
        &[1, 2, 840, 113_741, 1, 13, 1],
        ext.to_der(),
    )];
    let pck_cert = pck_params.signed_by(&pck_key, &ca_issuer).unwrap();

    let pck_crl = if o.pck_crl_wrong_key {
        let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        crl(
            &Issuer::from_params(&ca_params_, &other),
            &o.pck_crl_revoked,
        )
    } else {
        crl(&ca_issuer, &o.pck_crl_revoked)
    };
    let root_crl = crl(&root_issuer, &o.root_crl_revoked);

    let tcb_info = tcb_info_json(o);
    let qe_identity = qe_identity_json(o);
    let signing_chain = format!("{}{}", tcb_cert.pem(), root_cert.pem());
    let pck_chain = format!("{}{}{}", pck_cert.pem(), ca_cert.pem(), root_cert.pem());

    // The quote.
    let att = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let att_pub = att.public_key().as_ref()[1..].to_vec();
    let auth_data: Vec<u8> = (0u8..32).collect();
    let mut binding = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &[att_pub.as_slice(), &auth_data].concat(),
    )
    .as_ref()
    .to_vec();
    binding.resize(64, 0);
    let qe_report = ReportBody {
        misc_select: MiscSelect(0),
        attributes: Attributes {
            flags: 0x15,
            xfrm: 0xe7,
        },
        mr_signer: MrSigner(QE_MRSIGNER),
        isv_prod_id: 1,
        isv_svn: o.qe_isv_svn,
        report_data: ReportData(binding.try_into().unwrap()),
        ..ReportBody::default()
    };
    let app_report = ReportBody {
        attributes: Attributes {
            flags: if o.debug { 0x07 } else { 0x05 },
            xfrm: 0xe7,
        },
        mr_enclave: sgx_quote::MrEnclave([0xe1; 32]),
        mr_signer: MrSigner([0x51; 32]),
        isv_prod_id: 7,
        isv_svn: 3,
        report_data: ReportData([0xda; 64]),
        ..ReportBody::default()
    };
    let mut header = Vec::new();
    header.extend_from_slice(&3u16.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&8u16.to_le_bytes());
    header.extend_from_slice(&13u16.to_le_bytes());
    header.extend_from_slice(&sgx_quote::quote::INTEL_QE_VENDOR_ID);
    header.extend_from_slice(&[0u8; 20]);
    let mut signed = header;
    signed.extend_from_slice(&app_report.to_bytes());
    let quote_sig = att.sign(&SystemRandom::new(), &signed).unwrap();
    let qe_raw = qe_report.to_bytes();
    let qe_sig = raw_sign(&pck_key, &qe_raw);
    let mut sig_data = Vec::new();
    sig_data.extend_from_slice(quote_sig.as_ref());
    sig_data.extend_from_slice(&att_pub);
    sig_data.extend_from_slice(&qe_raw);
    sig_data.extend_from_slice(&qe_sig);
    sig_data.extend_from_slice(&u16::try_from(auth_data.len()).unwrap().to_le_bytes());
    sig_data.extend_from_slice(&auth_data);
    sig_data.extend_from_slice(&5u16.to_le_bytes());
    sig_data.extend_from_slice(&u32::try_from(pck_chain.len()).unwrap().to_le_bytes());
    sig_data.extend_from_slice(pck_chain.as_bytes());
    let mut quote = signed;
    quote.extend_from_slice(&u32::try_from(sig_data.len()).unwrap().to_le_bytes());
    quote.extend_from_slice(&sig_data);

    let collateral = Collateral {
        pck_crl_issuer_chain: format!("{}{}", ca_cert.pem(), root_cert.pem()),
        root_ca_crl: root_crl,
        pck_crl,
        tcb_info_issuer_chain: signing_chain.clone(),
        tcb_info_signature: raw_sign(&tcb_key, tcb_info.as_bytes()),
        tcb_info,
        qe_identity_issuer_chain: signing_chain,
        qe_identity_signature: raw_sign(&tcb_key, qe_identity.as_bytes()),
        qe_identity,
        pck_certificate_chain: None,
    };
    Generated {
        quote,
        collateral,
        anchors: TrustAnchors::from_pem(root_cert.pem().as_bytes()).unwrap(),
        root_pem: root_cert.pem(),
        now: UnixTime(NOW),
    }
}
