//! Trust anchors: pinned root CA public keys.

use crate::error::{Item, VerifyError};

/// The Intel SGX Root CA public key (uncompressed P-256 point). Both issued Root CA certificates (valid to 2033 and
/// to 2049) carry this key.
pub const INTEL_SGX_ROOT_CA_KEY: [u8; 65] = [
    0x04, 0x0b, 0xa9, 0xc4, 0xc0, 0xc0, 0xc8, 0x61, 0x93, 0xa3, 0xfe, 0x23, 0xd6, 0xb0, 0x2c, 0xda,
    0x10, 0xa8, 0xbb, 0xd4, 0xe8, 0x8e, 0x48, 0xb4, 0x45, 0x85, 0x61, 0xa3, 0x6e, 0x70, 0x55, 0x25,
    0xf5, 0x67, 0x91, 0x8e, 0x2e, 0xdc, 0x88, 0xe4, 0x0d, 0x86, 0x0b, 0xd0, 0xcc, 0x4e, 0xe2, 0x6a,
    0xac, 0xc9, 0x88, 0xe5, 0x05, 0xa9, 0x53, 0x55, 0x8c, 0x45, 0x3f, 0x6b, 0x09, 0x04, 0xae, 0x73,
    0x94,
];

/// SHA-256 of the DER of Intel's CA certificates below the root (PCK Processor CA ×2, PCK Platform CA, TCB Signing
/// 2018/2033, 2018/2025 and 2025/2032), each verified to be signed by [`INTEL_SGX_ROOT_CA_KEY`] (test
/// `anchors::tests::preverified_certificates_are_signed_by_the_intel_root`). A byte-identical certificate needs no
/// ECDSA check under [`TrustAnchors::intel`]; validity and revocation are still checked.
const INTEL_PREVERIFIED: [[u8; 32]; 6] = [
    // PCK Processor CA (2018-2033, 10:45): sha256 f65b249be2e8030b2e1682e7f7a1f2d48bf4c35eec930483a4ee200897081ffe
    [
        0xf6, 0x5b, 0x24, 0x9b, 0xe2, 0xe8, 0x03, 0x0b, 0x2e, 0x16, 0x82, 0xe7, 0xf7, 0xa1, 0xf2,
        0xd4, 0x8b, 0xf4, 0xc3, 0x5e, 0xec, 0x93, 0x04, 0x83, 0xa4, 0xee, 0x20, 0x08, 0x97, 0x08,
        0x1f, 0xfe,
    ],
    // PCK Processor CA (2018-2033, 10:50): sha256 13b2dccef8fc4ec977ee5249743b0f758ebd1e28d768b2e1e12bc348adaa09fb
    [
        0x13, 0xb2, 0xdc, 0xce, 0xf8, 0xfc, 0x4e, 0xc9, 0x77, 0xee, 0x52, 0x49, 0x74, 0x3b, 0x0f,
        0x75, 0x8e, 0xbd, 0x1e, 0x28, 0xd7, 0x68, 0xb2, 0xe1, 0xe1, 0x2b, 0xc3, 0x48, 0xad, 0xaa,
        0x09, 0xfb,
    ],
    // PCK Platform CA (2018-2033): sha256 22eb770dca215b607b5ccfc21a672b1da5cc660b1ad0365020567979edcaa0e1
    [
        0x22, 0xeb, 0x77, 0x0d, 0xca, 0x21, 0x5b, 0x60, 0x7b, 0x5c, 0xcf, 0xc2, 0x1a, 0x67, 0x2b,
        0x1d, 0xa5, 0xcc, 0x66, 0x0b, 0x1a, 0xd0, 0x36, 0x50, 0x20, 0x56, 0x79, 0x79, 0xed, 0xca,
        0xa0, 0xe1,
    ],
    // TCB Signing (2018-2033): sha256 bc224121b9593e98e6749dd7149f9a5cfc24536b1f9396128c35ed7ac7f1e93a
    [
        0xbc, 0x22, 0x41, 0x21, 0xb9, 0x59, 0x3e, 0x98, 0xe6, 0x74, 0x9d, 0xd7, 0x14, 0x9f, 0x9a,
        0x5c, 0xfc, 0x24, 0x53, 0x6b, 0x1f, 0x93, 0x96, 0x12, 0x8c, 0x35, 0xed, 0x7a, 0xc7, 0xf1,
        0xe9, 0x3a,
    ],
    // TCB Signing (2018-2025): sha256 ec37d98107bfb7dab6ff8de4d4dda6fde30a6f50b0d7b03eefb5652f1e652969
    [
        0xec, 0x37, 0xd9, 0x81, 0x07, 0xbf, 0xb7, 0xda, 0xb6, 0xff, 0x8d, 0xe4, 0xd4, 0xdd, 0xa6,
        0xfd, 0xe3, 0x0a, 0x6f, 0x50, 0xb0, 0xd7, 0xb0, 0x3e, 0xef, 0xb5, 0x65, 0x2f, 0x1e, 0x65,
        0x29, 0x69,
    ],
    // TCB Signing (2025-2032): sha256 c0575e76d0303b61d09cde8cbdb70db34a74f38318300d7c0e6ba8cf4bf45aea
    [
        0xc0, 0x57, 0x5e, 0x76, 0xd0, 0x30, 0x3b, 0x61, 0xd0, 0x9c, 0xde, 0x8c, 0xbd, 0xb7, 0x0d,
        0xb3, 0x4a, 0x74, 0xf3, 0x83, 0x18, 0x30, 0x0d, 0x7c, 0x0e, 0x6b, 0xa8, 0xcf, 0x4b, 0xf4,
        0x5a, 0xea,
    ],
];

/// The root CA keys a chain must end at. Keys, not certificates, are pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustAnchors {
    keys: Vec<Vec<u8>>,
    /// Digests of CA certificates known to be signed by one of `keys`.
    preverified: Vec<[u8; 32]>,
}

impl TrustAnchors {
    /// The real Intel SGX Root CA key.
    pub fn intel() -> TrustAnchors {
        TrustAnchors {
            keys: vec![INTEL_SGX_ROOT_CA_KEY.to_vec()],
            preverified: INTEL_PREVERIFIED.to_vec(),
        }
    }

    /// Anchors taken from the public keys of the PEM certificate(s) given (replaces the Intel key), for test PKIs and
    /// simulation.
    pub fn from_pem(pem: &[u8]) -> Result<TrustAnchors, VerifyError> {
        let certs =
            crate::x509::pem_certs(pem).map_err(|reason| VerifyError::MalformedCertificate {
                item: Item::RootCaCertificate,
                reason,
            })?;
        let mut keys = Vec::new();
        for der in &certs {
            let c = crate::x509::Cert::parse(der, Item::RootCaCertificate)?;
            keys.push(c.public_key.clone());
        }
        if keys.is_empty() {
            return Err(VerifyError::MalformedCertificate {
                item: Item::RootCaCertificate,
                reason: "no certificate in PEM".into(),
            });
        }
        Ok(TrustAnchors {
            keys,
            preverified: Vec::new(),
        })
    }

    /// Anchors from raw uncompressed P-256 public keys (65 bytes, `04 ‖ x ‖ y`).
    pub fn from_keys(keys: impl IntoIterator<Item = Vec<u8>>) -> TrustAnchors {
        TrustAnchors {
            keys: keys.into_iter().collect(),
            preverified: Vec::new(),
        }
    }

    /// Whether `key` (uncompressed point) is a trusted root key.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.keys.iter().any(|k| k == key)
    }

    /// Whether `cert_der` is a CA certificate known to be signed by a pinned key.
    pub(crate) fn is_preverified(&self, cert_der: &[u8]) -> bool {
        !self.preverified.is_empty()
            && self
                .preverified
                .contains(&crate::crypto::sha256(&[cert_der]))
    }

    /// The pinned keys.
    pub fn keys(&self) -> &[Vec<u8>] {
        &self.keys
    }
}

impl Default for TrustAnchors {
    fn default() -> Self {
        TrustAnchors::intel()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Crypto, sha256};
    use crate::x509::{Cert, pem_certs};

    #[test]
    fn preverified_certificates_are_signed_by_the_intel_root() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/dcap/");
        let mut pem = Vec::new();
        for f in [
            "dcap-qvl/sample/sgx_quote",
            "dcap-qvl/sample/sgx_quote_collateral.json",
            "oasis-core/go/common/sgx/pcs/testdata/quote_v3_ecdsa_p256_pck_chain.bin",
            "oasis-core/go/common/sgx/pcs/testdata/tcb_info_v3_fmspc_00606A000000_certs.pem",
            "rust-sgx/intel-sgx/dcap-ql/tests/quote_pck_cert_chain.bin",
            "rust-sgx/intel-sgx/pcs/tests/data/quote.bin",
            "rust-sgx/intel-sgx/pcs/tests/data/00906ea10000.tcb",
        ] {
            let b = std::fs::read(format!("{root}{f}")).unwrap();
            pem.extend(String::from_utf8_lossy(&b).replace("\\n", "\n").bytes());
            pem.push(b'\n');
        }
        // Scan every PEM block (pem_certs caps the count per chain, so go block by block).
        let text = String::from_utf8_lossy(&pem).into_owned();
        let mut found = Vec::new();
        for block in text.split("-----BEGIN CERTIFICATE-----").skip(1) {
            let one = format!("-----BEGIN CERTIFICATE-----{block}");
            for der in pem_certs(one.as_bytes()).unwrap() {
                let digest = sha256(&[&der]);
                if INTEL_PREVERIFIED.contains(&digest) && !found.contains(&digest) {
                    let c = Cert::parse(&der, crate::Item::PckCaCertificate).unwrap();
                    c.verify_signed_by(
                        &INTEL_SGX_ROOT_CA_KEY,
                        &Crypto::default(),
                        crate::Item::PckCaCertificate,
                    )
                    .unwrap();
                    found.push(digest);
                }
            }
        }
        for d in INTEL_PREVERIFIED {
            assert!(
                found.contains(&d),
                "{} not found in testdata",
                hex::encode(d)
            );
            assert_ne!(d, [0; 32]);
        }
    }
}
