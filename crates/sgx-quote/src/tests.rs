//! Tests over the real quotes in `testdata/dcap` (see `testdata/dcap/INDEX.md`), truncation
//! and length-corruption sweeps, and round-trip property tests.

#![allow(
    clippy::arithmetic_side_effects,
    clippy::as_conversions,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;

use crate::pck::{self, PckCa, SgxExtension, SgxType};
use crate::quote::{
    HEADER_LEN, INTEL_QE_VENDOR_ID, MAX_CERT_DATA_LEN, MAX_QE_AUTH_DATA_LEN, MAX_SIGNATURE_DATA_LEN,
};
use crate::*;

/// One real quote and what `testdata/dcap/INDEX.md` says about it.
pub(crate) struct Real {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub version: u16,
    pub tee: TeeType,
    pub cert_type: CertDataType,
    /// What INDEX.md calls "QE isvsvn": the ISVSVN of the QE report.
    pub qe_isvsvn: u16,
    pub trailing: usize,
    /// FMSPC (hex) and PCK CA, for type-5 chains.
    pub pck: Option<(&'static str, PckCa)>,
}

fn hex_file(s: &[u8]) -> Vec<u8> {
    let text: String = std::str::from_utf8(s)
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    hex::decode(text.trim_start_matches("0x")).unwrap()
}

macro_rules! td {
    ($p:literal) => {
        include_bytes!(concat!("../../../testdata/dcap/", $p))
    };
}

pub(crate) fn real_quotes() -> Vec<Real> {
    use CertDataType::*;
    vec![
        Real {
            name: "dcap-qvl/sample/sgx_quote",
            bytes: td!("dcap-qvl/sample/sgx_quote").to_vec(),
            version: 3,
            tee: TeeType::Sgx,
            cert_type: PckCertChain,
            qe_isvsvn: 10,
            trailing: 0,
            pck: Some(("00a067110000", PckCa::Processor)),
        },
        Real {
            name: "dcap-qvl/sample/tdx_quote",
            bytes: td!("dcap-qvl/sample/tdx_quote").to_vec(),
            version: 4,
            tee: TeeType::Tdx,
            cert_type: PckCertChain,
            qe_isvsvn: 6,
            trailing: 70,
            pck: Some(("b0c06f000000", PckCa::Platform)),
        },
        Real {
            name: "oasis-core/quote_v3_ecdsa_p256_pck_chain.bin",
            bytes: td!("oasis-core/go/common/sgx/pcs/testdata/quote_v3_ecdsa_p256_pck_chain.bin")
                .to_vec(),
            version: 3,
            tee: TeeType::Sgx,
            cert_type: PckCertChain,
            qe_isvsvn: 9,
            trailing: 0,
            pck: Some(("00606a000000", PckCa::Platform)),
        },
        Real {
            name: "oasis-core/quote_v3_ecdsa_p256_eppid.bin",
            bytes: td!("oasis-core/go/common/sgx/pcs/testdata/quote_v3_ecdsa_p256_eppid.bin")
                .to_vec(),
            version: 3,
            tee: TeeType::Sgx,
            cert_type: PpidRsa3072Encrypted,
            qe_isvsvn: 7,
            trailing: 0,
            pck: None,
        },
        Real {
            name: "rust-sgx/pcs/quote.bin",
            bytes: td!("rust-sgx/intel-sgx/pcs/tests/data/quote.bin").to_vec(),
            version: 3,
            tee: TeeType::Sgx,
            cert_type: PckCertChain,
            qe_isvsvn: 5,
            trailing: 0,
            pck: Some(("00906ea10000", PckCa::Processor)),
        },
        Real {
            name: "rust-sgx/dcap-ql/quote_pck_cert_chain.bin",
            bytes: td!("rust-sgx/intel-sgx/dcap-ql/tests/quote_pck_cert_chain.bin").to_vec(),
            version: 3,
            tee: TeeType::Sgx,
            cert_type: PckCertChain,
            qe_isvsvn: 2,
            trailing: 0,
            pck: Some(("00906ea10000", PckCa::Processor)),
        },
        Real {
            name: "rust-sgx/dcap-ql/quote_pck_cert_chain_corrupted.bin",
            bytes: td!("rust-sgx/intel-sgx/dcap-ql/tests/quote_pck_cert_chain_corrupted.bin")
                .to_vec(),
            version: 3,
            tee: TeeType::Sgx,
            cert_type: PckCertChain,
            qe_isvsvn: 2,
            trailing: 0,
            pck: Some(("00906ea10000", PckCa::Processor)),
        },
        Real {
            name: "rust-sgx/dcap-ql/quote_raw_tcb.bin",
            bytes: td!("rust-sgx/intel-sgx/dcap-ql/tests/quote_raw_tcb.bin").to_vec(),
            version: 3,
            tee: TeeType::Sgx,
            cert_type: PpidRsa3072Encrypted,
            qe_isvsvn: 1,
            trailing: 0,
            pck: None,
        },
        Real {
            name: "automata/quotev3.hex",
            bytes: hex_file(td!(
                "automata-dcap-attestation/rust-crates/samples/quotev3.hex"
            )),
            version: 3,
            tee: TeeType::Sgx,
            cert_type: PckCertChain,
            qe_isvsvn: 9,
            trailing: 0,
            pck: Some(("00606a000000", PckCa::Platform)),
        },
        Real {
            name: "intel-qvl/sampleData/quote.dat (synthetic)",
            bytes: td!(
                "SGX-TDX-DCAP-QuoteVerificationLibrary/Src/AttestationApp/sampleData/quote.dat"
            )
            .to_vec(),
            version: 3,
            tee: TeeType::Sgx,
            cert_type: PpidCleartext,
            qe_isvsvn: 1,
            trailing: 0,
            pck: None,
        },
    ]
}

/// The quote bytes without trailing padding.
fn exact(r: &Real) -> &[u8] {
    &r.bytes[..r.bytes.len() - r.trailing]
}

#[test]
fn real_quotes_parse_with_index_values_and_round_trip() {
    for r in real_quotes() {
        let (q, trailing) =
            Quote::parse_tolerant(&r.bytes).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        assert_eq!(trailing, r.trailing, "{}", r.name);
        assert_eq!(q.header.version, r.version, "{}", r.name);
        assert_eq!(q.header.tee_type, r.tee, "{}", r.name);
        assert_eq!(q.header.att_key_type, AttestationKeyType::EcdsaP256);
        assert_eq!(q.header.qe_vendor_id, INTEL_QE_VENDOR_ID, "{}", r.name);
        assert_eq!(
            q.signature.qe.certification.cert_type, r.cert_type,
            "{}",
            r.name
        );
        assert_eq!(q.signature.qe.qe_report.isv_svn, r.qe_isvsvn, "{}", r.name);
        assert_eq!(
            q.signature.qe.qe_report_raw,
            &q.signature.qe.qe_report.to_bytes()[..]
        );
        assert_eq!(
            q.sgx_report_body().is_some(),
            r.tee == TeeType::Sgx,
            "{}",
            r.name
        );
        // The signed region is the header and body, right before the signature data length.
        let body_len = q.body.len();
        assert_eq!(
            q.signed_region,
            &r.bytes[..HEADER_LEN + body_len],
            "{}",
            r.name
        );
        // Canonical encoding.
        assert_eq!(q.encode(), exact(&r), "{}: encode(parse(q)) != q", r.name);
        assert_eq!(q.try_encode().unwrap(), exact(&r), "{}", r.name);
        // Strict parsing accepts exactly the quote and rejects the padding.
        assert_eq!(Quote::parse(exact(&r)).unwrap(), q, "{}", r.name);
        if r.trailing > 0 {
            assert_eq!(
                Quote::parse(&r.bytes).unwrap_err(),
                QuoteError::TrailingBytes {
                    offset: r.bytes.len() - r.trailing,
                    count: r.trailing
                },
                "{}",
                r.name
            );
        }
        // QE report binding: REPORTDATA[32..] is zero for Intel's QE.
        assert_eq!(
            q.signature.qe.qe_report.report_data.0[32..],
            [0; 32],
            "{}",
            r.name
        );
    }
}

#[test]
fn strict_parse_rejects_one_trailing_byte() {
    for r in real_quotes() {
        let mut b = exact(&r).to_vec();
        let len = b.len();
        b.push(0);
        let err = Quote::parse(&b).unwrap_err();
        assert_eq!(
            err,
            QuoteError::TrailingBytes {
                offset: len,
                count: 1
            },
            "{}",
            r.name
        );
        assert_eq!(err.offset(), Some(len));
        assert_eq!(Quote::parse_tolerant(&b).unwrap().1, 1);
    }
}

#[test]
fn real_pck_chains_give_index_fmspc_and_ca() {
    for r in real_quotes() {
        let q = Quote::parse_tolerant(&r.bytes).unwrap().0;
        let Some((fmspc, ca)) = r.pck else {
            assert!(q.pck_chain_pem().is_none(), "{}", r.name);
            continue;
        };
        let chain = pck::split_pem_chain(q.pck_chain_pem().unwrap()).unwrap();
        assert_eq!(chain.len(), 3, "{}", r.name);
        let (leaf, ext) = pck::find_pck_leaf(&chain).unwrap();
        assert_eq!(hex::encode(ext.fmspc), fmspc, "{}", r.name);
        assert_eq!(
            PckCa::from_cert_der(&chain[leaf]).unwrap(),
            ca,
            "{}",
            r.name
        );
        // Processor-CA platforms are single-package (Standard), Platform-CA ones Scalable.
        let ty = if ca == PckCa::Processor {
            SgxType::Standard
        } else {
            SgxType::Scalable
        };
        assert_eq!(ext.sgx_type, ty, "{}", r.name);
        assert_eq!(
            ext.platform_instance_id.is_some(),
            ca == PckCa::Platform,
            "{}",
            r.name
        );
        // The header's PCE SVN is not required to equal the certificate's, but the PCE-ID is 0.
        assert_eq!(ext.pce_id, [0, 0], "{}", r.name);
        // Encoding the extension reproduces Intel's DER byte for byte.
        let value = pck::extension_value(&chain[leaf]).unwrap();
        let config = pck::parse_configuration(&value).unwrap();
        assert_eq!(config.is_some(), ca == PckCa::Platform, "{}", r.name);
        assert_eq!(
            ext.to_der_with_configuration(config.as_ref()),
            value,
            "{}",
            r.name
        );
        assert_eq!(SgxExtension::parse(&ext.to_der()).unwrap(), ext);
        // The other certificates carry no SGX extension and are not issued by a PCK CA.
        for (i, c) in chain.iter().enumerate().filter(|(i, _)| *i != leaf) {
            assert!(
                matches!(
                    SgxExtension::from_cert_der(c),
                    Err(pck::PckError::MissingExtension)
                ),
                "{} cert {i}",
                r.name
            );
        }
    }
}

#[test]
fn encrypted_ppid_quotes_carry_a_pck_cert_id() {
    for r in real_quotes() {
        let q = Quote::parse_tolerant(&r.bytes).unwrap().0;
        let id = q.certification().pck_cert_id();
        match r.cert_type {
            CertDataType::PpidRsa3072Encrypted => {
                let id = id.unwrap();
                assert_eq!(id.ppid.len(), 384, "{}", r.name);
                // The QE writes the same PCE SVN into the header.
                assert_eq!(id.pce_svn, q.header.pce_svn, "{}", r.name);
                assert_eq!(id.pce_id, [0, 0], "{}", r.name);
            }
            CertDataType::PckCertChain => assert!(id.is_none()),
            // The Intel QVL sample (synthetic) carries 34 bytes, not the 36 type 1 defines.
            CertDataType::PpidCleartext => assert!(id.is_none(), "{}", r.name),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn out_of_order_chain_of_set_d_is_found() {
    let b = td!("rust-sgx/intel-sgx/dcap-ql/tests/quote_pck_cert_chain.bin");
    let q = Quote::parse(b).unwrap();
    let chain = pck::split_pem_chain(q.pck_chain_pem().unwrap()).unwrap();
    let (leaf, _) = pck::find_pck_leaf(&chain).unwrap();
    assert_eq!(leaf, 0);
    // INDEX.md: the chain is out of order for set D: leaf, root, intermediate.
    let subject = |der: &[u8]| {
        use der::Decode;
        x509_cert::Certificate::from_der(der)
            .unwrap()
            .tbs_certificate
            .subject
            .to_string()
    };
    assert!(
        subject(&chain[1]).contains("CN=Intel SGX Root CA"),
        "{}",
        subject(&chain[1])
    );
    assert!(subject(&chain[2]).contains("CN=Intel SGX PCK Processor CA"));
}

#[test]
fn every_truncation_of_every_real_quote_is_a_typed_error() {
    for (name, bytes) in real_and_v5_quotes() {
        let q = &bytes[..];
        for n in 0..q.len() {
            let err = Quote::parse(&q[..n]).unwrap_err();
            assert!(
                matches!(err, QuoteError::Truncated { .. }),
                "{name} truncated to {n}: {err:?}"
            );
            assert!(
                err.offset().unwrap() <= n,
                "{name} truncated to {n}: {err:?}"
            );
            assert!(err.field().is_some());
            assert_eq!(Quote::parse_tolerant(&q[..n]).unwrap_err(), err);
        }
    }
}

/// Offsets and widths of every length field of a parsed quote.
fn length_fields(q: &Quote<'_>, bytes: &[u8]) -> Vec<(&'static str, usize, usize)> {
    let base = q.signed_region.len();
    let mut out = vec![("signature_data.size", base, 4)];
    let mut qe_start = base + 4 + 128;
    if q.header.version != 3 {
        out.push(("qe_report_certification_data.size", qe_start + 2, 4));
        qe_start += 6;
    }
    let auth = qe_start + 384 + 64;
    out.push(("qe_auth_data.size", auth, 2));
    let cert = auth + 2 + q.signature.qe.qe_auth_data.len();
    out.push(("certification_data.size", cert + 2, 4));
    assert!(cert + 6 <= bytes.len());
    out
}

/// The real quotes (without padding) plus v5 re-encodings of the TDX and an SGX quote, one per
/// v5 body type.
fn real_and_v5_quotes() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = real_quotes()
        .iter()
        .map(|r| (r.name.to_owned(), exact(r).to_vec()))
        .collect();
    let t = real_quotes().into_iter().find(|r| r.version == 4).unwrap();
    let td = Quote::parse_tolerant(&t.bytes).unwrap().0;
    let sgx_bytes = real_quotes().remove(0).bytes;
    let sgx = Quote::parse(&sgx_bytes).unwrap();
    let QuoteBody::Td10(td10) = td.body else {
        panic!("not a td quote")
    };
    let td15 = QuoteBody::Td15(TdReport15 {
        base: td10,
        tee_tcb_svn2: [1; 16],
        mr_service_td: [2; 48],
    });
    for (name, tee, body) in [
        ("v5 sgx", TeeType::Sgx, sgx.body),
        ("v5 td10", TeeType::Tdx, td.body),
        ("v5 td15", TeeType::Tdx, td15),
    ] {
        let mut q = td;
        q.header.version = 5;
        q.header.tee_type = tee;
        q.body = body;
        out.push((name.to_owned(), q.try_encode().unwrap()));
    }
    out
}

#[test]
fn every_corruption_of_every_length_field_is_a_typed_error() {
    for (name, bytes) in real_and_v5_quotes() {
        let q_bytes = &bytes[..];
        let q = Quote::parse(q_bytes).unwrap();
        let mut fields = length_fields(&q, q_bytes);
        if q.header.version == 5 {
            fields.push(("body_descriptor.size", HEADER_LEN + 2, 4));
        }
        for (field, off, width) in fields {
            let orig = if width == 2 {
                u64::from(u16::from_le_bytes(
                    q_bytes[off..off + 2].try_into().unwrap(),
                ))
            } else {
                u64::from(u32::from_le_bytes(
                    q_bytes[off..off + 4].try_into().unwrap(),
                ))
            };
            let max = if width == 2 {
                u64::from(u16::MAX)
            } else {
                u64::from(u32::MAX)
            };
            let mut values = vec![
                0,
                1,
                orig.saturating_sub(1),
                orig + 1,
                orig * 2,
                max,
                max / 2,
            ];
            values.extend([
                MAX_SIGNATURE_DATA_LEN as u64 + 1,
                MAX_QE_AUTH_DATA_LEN as u64 + 1,
                MAX_CERT_DATA_LEN as u64,
            ]);
            for v in values.into_iter().filter(|v| *v != orig && *v <= max) {
                let mut b = q_bytes.to_vec();
                b[off..off + width].copy_from_slice(&v.to_le_bytes()[..width]);
                let err = Quote::parse(&b).err();
                assert!(err.is_some(), "{name} {field}={v} parsed");
                if field == "body_descriptor.size" {
                    assert!(
                        matches!(err, Some(QuoteError::BodyMismatch { .. })),
                        "{name} {field}={v}: {err:?}"
                    );
                }
                // The tolerant parser must not panic either.
                let _ = Quote::parse_tolerant(&b);
            }
            // Too large for the named bound: a LengthTooLarge naming the field and offset.
            let bound = match field {
                "body_descriptor.size" => continue,
                "qe_auth_data.size" => MAX_QE_AUTH_DATA_LEN,
                "signature_data.size" => MAX_SIGNATURE_DATA_LEN,
                _ => MAX_CERT_DATA_LEN,
            };
            let mut b = q_bytes.to_vec();
            b[off..off + width].copy_from_slice(&((bound + 1) as u64).to_le_bytes()[..width]);
            let err = Quote::parse(&b).unwrap_err();
            assert!(
                matches!(err, QuoteError::LengthTooLarge { offset, .. } if offset == off),
                "{name} {field}: {err:?}"
            );
            assert_eq!(err.offset(), Some(off));
            assert!(err.field().unwrap().ends_with(".size"), "{err:?}");
        }
    }
}

#[test]
fn unknown_version_key_tee_and_cert_types_are_typed_errors() {
    let r = &real_quotes()[0];
    let q = exact(r).to_vec();
    let patch = |off: usize, bytes: &[u8]| {
        let mut b = q.clone();
        b[off..off + bytes.len()].copy_from_slice(bytes);
        Quote::parse(&b).unwrap_err()
    };
    assert_eq!(patch(0, &[2, 0]), QuoteError::UnsupportedVersion(2));
    assert_eq!(patch(0, &[6, 0]), QuoteError::UnsupportedVersion(6));
    assert_eq!(patch(2, &[3, 0]), QuoteError::UnsupportedKeyType(3));
    assert_eq!(
        patch(4, &[0x82, 0, 0, 0]),
        QuoteError::UnsupportedTeeType(0x82)
    );
    assert_eq!(
        patch(4, &[0x81, 0, 0, 0]),
        QuoteError::TeeTypeNotAllowed {
            version: 3,
            tee_type: 0x81
        }
    );
    let parsed = Quote::parse(&q).unwrap();
    let cert_off = length_fields(&parsed, &q).last().unwrap().1 - 2;
    assert_eq!(
        patch(cert_off, &[8, 0]),
        QuoteError::UnsupportedCertDataType(8)
    );
    assert_eq!(
        patch(cert_off, &[0, 0]),
        QuoteError::UnsupportedCertDataType(0)
    );
    assert!(matches!(
        patch(cert_off, &[6, 0]),
        QuoteError::UnexpectedCertDataType { cert_type: 6, offset, .. } if offset == cert_off
    ));
    // A reserved byte of the report body.
    assert_eq!(
        patch(HEADER_LEN + 20, &[1]),
        QuoteError::NonZeroReserved {
            field: "report_body.reserved1",
            offset: HEADER_LEN + 20
        }
    );

    // v4: the outer certification data must be type 6.
    let t = real_quotes().into_iter().find(|r| r.version == 4).unwrap();
    let tq = Quote::parse_tolerant(&t.bytes).unwrap().0;
    let outer = tq.signed_region.len() + 4 + 128;
    let mut b = exact(&t).to_vec();
    b[outer..outer + 2].copy_from_slice(&[5, 0]);
    assert!(matches!(
        Quote::parse(&b).unwrap_err(),
        QuoteError::UnexpectedCertDataType { cert_type: 5, offset, .. } if offset == outer
    ));
}

#[test]
fn v5_quotes_round_trip_for_every_body_type() {
    let t = real_quotes().into_iter().find(|r| r.version == 4).unwrap();
    let td = Quote::parse_tolerant(&t.bytes).unwrap().0;
    let sgx_real = real_quotes().remove(0);
    let sgx = Quote::parse(&sgx_real.bytes).unwrap();
    let QuoteBody::Td10(td10) = td.body else {
        panic!("not td")
    };
    let bodies = [
        (TeeType::Sgx, sgx.body),
        (TeeType::Tdx, td.body),
        (
            TeeType::Tdx,
            QuoteBody::Td15(TdReport15 {
                base: td10,
                tee_tcb_svn2: [7; 16],
                mr_service_td: [9; 48],
            }),
        ),
    ];
    for (tee, body) in bodies {
        let mut q = td;
        q.header.version = 5;
        q.header.tee_type = tee;
        q.body = body;
        let bytes = q.try_encode().unwrap();
        let back = Quote::parse(&bytes).unwrap();
        assert_eq!(back.body, body);
        assert_eq!(back.header, q.header);
        assert_eq!(
            back.signed_region,
            Quote::signed_bytes(&q.header, &body).as_slice()
        );
        assert_eq!(back.signed_region.len(), HEADER_LEN + 6 + body.len());
        // Descriptor mismatches are typed errors.
        let mut bad = bytes.clone();
        bad[HEADER_LEN] = 4;
        assert_eq!(
            Quote::parse(&bad).unwrap_err(),
            QuoteError::UnsupportedBodyType(4)
        );
        let mut bad = bytes.clone();
        bad[HEADER_LEN + 2] ^= 1;
        assert!(matches!(
            Quote::parse(&bad).unwrap_err(),
            QuoteError::BodyMismatch { .. }
        ));
        for n in 0..bytes.len() {
            assert!(matches!(
                Quote::parse(&bytes[..n]).unwrap_err(),
                QuoteError::Truncated { .. }
            ));
        }
    }
}

#[test]
fn try_encode_rejects_inconsistent_hand_built_quotes() {
    let r = real_quotes().remove(0);
    let mut q = Quote::parse(&r.bytes).unwrap();
    // A v3 quote cannot carry a TD report.
    let t = real_quotes().into_iter().find(|r| r.version == 4).unwrap();
    q.body = Quote::parse_tolerant(&t.bytes).unwrap().0.body;
    assert!(q.try_encode().is_err());
    // An auth data longer than the u16 size field saturates and does not round-trip.
    let mut q = Quote::parse(&r.bytes).unwrap();
    let long = vec![0u8; 70_000];
    q.signature.qe.qe_auth_data = &long;
    assert!(q.try_encode().is_err());
    let _ = q.encode();
}

#[test]
fn fixed_size_structures_check_their_length_and_reserved_bytes() {
    assert_eq!(
        ReportBody::parse(&[0; 383]).unwrap_err(),
        QuoteError::InvalidLength {
            what: "report body",
            expected: 384,
            actual: 383
        }
    );
    assert!(matches!(
        Report::parse(&[0; 433]),
        Err(QuoteError::InvalidLength { .. })
    ));
    assert!(matches!(
        TargetInfo::parse(&[0; 511]),
        Err(QuoteError::InvalidLength { .. })
    ));
    let mut ti = [0u8; 512];
    ti[200] = 1;
    assert_eq!(
        TargetInfo::parse(&ti).unwrap_err(),
        QuoteError::NonZeroReserved {
            field: "target_info.reserved3",
            offset: 128
        }
    );
    let mut rb = [0u8; 384];
    rb[300] = 1;
    assert_eq!(
        ReportBody::parse(&rb).unwrap_err(),
        QuoteError::NonZeroReserved {
            field: "report_body.reserved4",
            offset: 262
        }
    );
}

#[test]
fn report_body_field_offsets_match_the_intel_table() {
    let mut b = [0u8; 384];
    b[0] = 0xc1; // cpu_svn
    b[16] = 0x5e; // misc_select
    b[32] = 0xe1; // isv_ext_prod_id
    b[48] = 0x07; // attributes.flags: INIT | DEBUG | MODE64BIT
    b[56] = 0x03; // attributes.xfrm
    b[64] = 0xaa; // mr_enclave
    b[128] = 0xbb; // mr_signer
    b[192] = 0xcf; // config_id
    b[256] = 0x34; // isv_prod_id
    b[258] = 0x12; // isv_svn
    b[260] = 0x56; // config_svn
    b[304] = 0xf1; // isv_family_id
    b[320] = 0xdd; // report_data
    let r = ReportBody::parse(&b).unwrap();
    assert_eq!(r.cpu_svn.0[0], 0xc1);
    assert_eq!(r.misc_select, MiscSelect(0x5e));
    assert_eq!(r.isv_ext_prod_id[0], 0xe1);
    assert!(r.attributes.is_debug() && r.attributes.is_mode64bit());
    assert!(!r.attributes.has_provision_key() && !r.attributes.has_kss());
    assert_eq!(r.attributes.xfrm, 3);
    assert_eq!(r.mr_enclave.0[0], 0xaa);
    assert_eq!(r.mr_signer.0[0], 0xbb);
    assert_eq!(r.config_id[0], 0xcf);
    assert_eq!((r.isv_prod_id, r.isv_svn, r.config_svn), (0x34, 0x12, 0x56));
    assert_eq!(r.isv_family_id[0], 0xf1);
    assert_eq!(r.report_data.0[0], 0xdd);
    assert_eq!(r.to_bytes(), b);

    let mut t = [0u8; 512];
    t[0] = 0xaa;
    t[32] = 0x10; // PROVISIONKEY
    t[50] = 0x02;
    t[52] = 0x03;
    t[64] = 0x04;
    let ti = TargetInfo::parse(&t).unwrap();
    assert_eq!(ti.mr_enclave.0[0], 0xaa);
    assert!(ti.attributes.has_provision_key());
    assert_eq!(
        (ti.config_svn, ti.misc_select.0, ti.config_id[0]),
        (2, 3, 4)
    );
    assert_eq!(ti.to_bytes(), t);
}

#[test]
fn pem_chain_edge_cases() {
    assert!(matches!(
        pck::split_pem_chain(b""),
        Err(pck::PckError::EmptyChain)
    ));
    assert!(matches!(
        pck::split_pem_chain(b"\0"),
        Err(pck::PckError::EmptyChain)
    ));
    let key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert!(matches!(
        pck::split_pem_chain(key),
        Err(pck::PckError::NotACertificate { index: 0 })
    ));
    let one = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let many: Vec<u8> = one.iter().copied().cycle().take(one.len() * 9).collect();
    assert!(matches!(
        pck::split_pem_chain(&many),
        Err(pck::PckError::ChainTooLarge {
            what: "certificates",
            ..
        })
    ));
    assert_eq!(
        PckCa::from_issuer_cn("Intel SGX PCK Platform CA"),
        Some(PckCa::Platform)
    );
    assert_eq!(PckCa::from_issuer_cn("Intel SGX Root CA"), None);
}

#[test]
fn sgx_extension_rejects_missing_duplicate_and_malformed_fields() {
    let ext = SgxExtension {
        ppid: [1; 16],
        tcb: pck::PckTcb {
            comp_svn: [200; 16],
            pce_svn: 13,
            cpu_svn: [2; 16],
        },
        pce_id: [0, 0],
        fmspc: [0, 0x60, 0x6a, 0, 0, 0],
        sgx_type: SgxType::Standard,
        platform_instance_id: None,
    };
    let der = ext.to_der();
    assert_eq!(SgxExtension::parse(&der).unwrap(), ext);
    // Every strict prefix is an error, never a panic.
    for n in 0..der.len() {
        assert!(SgxExtension::parse(&der[..n]).is_err());
    }
    assert!(matches!(
        SgxExtension::parse(&[0x30, 0]),
        Err(pck::PckError::MissingField("ppid"))
    ));
    assert!(SgxExtension::parse(&[0x04, 0]).is_err());
}

#[test]
fn fuzz_corpus_replays_without_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (target, f) in [
        ("quote_parse", fuzzing::parse_quote as fn(&[u8])),
        ("pck_extension", fuzzing::parse_pck_extension),
    ] {
        let dir = root.join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                f(&std::fs::read(&path).unwrap());
                n += 1;
            }
        }
        assert!(n > 0, "empty corpus {}", dir.display());
    }
}

#[test]
fn seed_corpus_quotes_parse_and_cover_every_version_and_body() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/quote_parse");
    let mut seen = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        // Seeds are named for what they are; inputs added by the fuzzer are not.
        if !["sgx_", "tdx_", "synthetic_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let (q, _) = Quote::parse_tolerant(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        seen.insert((q.header.version, q.body.body_type()));
    }
    let want: std::collections::BTreeSet<_> = [(3, 1), (4, 1), (4, 2), (5, 1), (5, 2), (5, 3)]
        .into_iter()
        .collect();
    assert_eq!(seen, want);
}

fn arb_report_body() -> impl Strategy<Value = ReportBody> {
    (
        any::<[u8; 16]>(),
        any::<u32>(),
        any::<[u8; 16]>(),
        any::<(u64, u64)>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        prop::collection::vec(any::<u8>(), 64),
        any::<(u16, u16, u16)>(),
        any::<[u8; 16]>(),
        prop::collection::vec(any::<u8>(), 64),
    )
        .prop_map(
            |(cpu, misc, ext, (flags, xfrm), mre, mrs, cfg, (p, s, c), fam, rd)| ReportBody {
                cpu_svn: CpuSvn(cpu),
                misc_select: MiscSelect(misc),
                isv_ext_prod_id: ext,
                attributes: Attributes { flags, xfrm },
                mr_enclave: MrEnclave(mre),
                mr_signer: MrSigner(mrs),
                config_id: cfg.try_into().unwrap(),
                isv_prod_id: p,
                isv_svn: s,
                config_svn: c,
                isv_family_id: fam,
                report_data: ReportData(rd.try_into().unwrap()),
            },
        )
}

fn arb48() -> impl Strategy<Value = [u8; 48]> {
    prop::collection::vec(any::<u8>(), 48).prop_map(|v| v.try_into().unwrap())
}

fn arb_td10() -> impl Strategy<Value = TdReport10> {
    (
        any::<[u8; 16]>(),
        arb48(),
        arb48(),
        any::<(u64, u64, u64)>(),
        (arb48(), arb48(), arb48(), arb48()),
        (arb48(), arb48(), arb48(), arb48()),
        prop::collection::vec(any::<u8>(), 64),
    )
        .prop_map(
            |(svn, seam, sseam, (sa, ta, xfam), (td, cid, own, owncfg), r, rd)| TdReport10 {
                tee_tcb_svn: svn,
                mr_seam: seam,
                mr_signer_seam: sseam,
                seam_attributes: sa,
                td_attributes: ta,
                xfam,
                mr_td: td,
                mr_config_id: cid,
                mr_owner: own,
                mr_owner_config: owncfg,
                rtmr: [r.0, r.1, r.2, r.3],
                report_data: ReportData(rd.try_into().unwrap()),
            },
        )
}

fn arb_body() -> impl Strategy<Value = QuoteBody> {
    prop_oneof![
        arb_report_body().prop_map(QuoteBody::Sgx),
        arb_td10().prop_map(QuoteBody::Td10),
        (arb_td10(), any::<[u8; 16]>(), arb48()).prop_map(|(base, s2, m)| QuoteBody::Td15(
            TdReport15 {
                base,
                tee_tcb_svn2: s2,
                mr_service_td: m
            }
        )),
    ]
}

fn arb_cert_type() -> impl Strategy<Value = CertDataType> {
    prop_oneof![1u16..=5, Just(7u16)].prop_map(|t| CertDataType::from_u16(t).unwrap())
}

/// Owned parts of a quote; borrowed slices point into it.
#[derive(Debug, Clone)]
struct Parts {
    version: u16,
    header: QuoteHeader,
    body: QuoteBody,
    sig: [u8; 64],
    key: [u8; 64],
    qe_report: ReportBody,
    qe_sig: [u8; 64],
    auth: Vec<u8>,
    cert_type: CertDataType,
    cert: Vec<u8>,
}

fn arb_parts() -> impl Strategy<Value = Parts> {
    (
        arb_body(),
        3u16..=5,
        any::<(u16, u16, [u8; 16], [u8; 20])>(),
        prop::collection::vec(any::<u8>(), 64 * 3),
        arb_report_body(),
        prop::collection::vec(any::<u8>(), 0..64),
        arb_cert_type(),
        prop::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(
            |(body, v, (qe_svn, pce_svn, vendor, user), sigs, qe_report, auth, ct, cert)| {
                // Pick a version that can carry the body.
                let version = match body {
                    QuoteBody::Sgx(_) => v,
                    QuoteBody::Td10(_) => v.max(4),
                    QuoteBody::Td15(_) => 5,
                };
                Parts {
                    version,
                    header: QuoteHeader {
                        version,
                        att_key_type: AttestationKeyType::EcdsaP256,
                        tee_type: body.tee_type(),
                        qe_svn,
                        pce_svn,
                        qe_vendor_id: vendor,
                        user_data: user,
                    },
                    body,
                    sig: sigs[..64].try_into().unwrap(),
                    key: sigs[64..128].try_into().unwrap(),
                    qe_report,
                    qe_sig: sigs[128..].try_into().unwrap(),
                    auth,
                    cert_type: ct,
                    cert,
                }
            },
        )
}

proptest! {
    #[test]
    fn report_structures_round_trip(body in arb_report_body(), key_id in any::<[u8; 32]>(), mac in any::<[u8; 16]>()) {
        prop_assert_eq!(ReportBody::parse(&body.to_bytes()).unwrap(), body);
        let report = Report { body, key_id, mac };
        prop_assert_eq!(Report::parse(&report.to_bytes()).unwrap(), report);
        let ti = TargetInfo {
            mr_enclave: body.mr_enclave,
            attributes: body.attributes,
            config_svn: body.config_svn,
            misc_select: body.misc_select,
            config_id: body.config_id,
        };
        prop_assert_eq!(TargetInfo::parse(&ti.to_bytes()).unwrap(), ti);
    }

    #[test]
    fn generated_quotes_round_trip(p in arb_parts()) {
        let qe_raw = p.qe_report.to_bytes();
        let signed = Quote::signed_bytes(&p.header, &p.body);
        let q = Quote {
            header: p.header,
            body: p.body,
            signed_region: &signed,
            signature: QuoteSignature {
                quote_signature: p.sig,
                attestation_key: p.key,
                qe: QeReportCertData {
                    qe_report: p.qe_report,
                    qe_report_raw: &qe_raw,
                    qe_report_signature: p.qe_sig,
                    qe_auth_data: &p.auth,
                    certification: CertificationData { cert_type: p.cert_type, data: &p.cert },
                },
            },
        };
        let bytes = q.try_encode().unwrap();
        let back = Quote::parse(&bytes).unwrap();
        prop_assert_eq!(back, q);
        prop_assert_eq!(back.header.version, p.version);
        prop_assert_eq!(back.encode(), bytes.clone());
        fuzzing::parse_quote(&bytes);
    }

    #[test]
    fn generated_sgx_extensions_round_trip(
        ppid in any::<[u8; 16]>(),
        comp in any::<[u8; 16]>(),
        pce_svn in any::<u16>(),
        cpu in any::<[u8; 16]>(),
        pce_id in any::<[u8; 2]>(),
        fmspc in any::<[u8; 6]>(),
        ty in 0u8..3,
        pid in any::<Option<[u8; 16]>>(),
        cfg in any::<(Option<bool>, Option<bool>, Option<bool>)>(),
    ) {
        let ext = SgxExtension {
            ppid,
            tcb: pck::PckTcb { comp_svn: comp, pce_svn, cpu_svn: cpu },
            pce_id,
            fmspc,
            sgx_type: [SgxType::Standard, SgxType::Scalable, SgxType::ScalableWithIntegrity][usize::from(ty)],
            platform_instance_id: pid,
        };
        let config = pck::PckConfiguration { dynamic_platform: cfg.0, cached_keys: cfg.1, smt_enabled: cfg.2 };
        let der = ext.to_der_with_configuration(Some(&config));
        prop_assert_eq!(SgxExtension::parse(&der).unwrap(), ext);
        prop_assert_eq!(pck::parse_configuration(&der).unwrap(), Some(config));
        prop_assert_eq!(pck::parse_configuration(&ext.to_der()).unwrap(), None);
        fuzzing::parse_pck_extension(&der);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        fuzzing::parse_quote(&data);
        fuzzing::parse_pck_extension(&data);
    }
}
