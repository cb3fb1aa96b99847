//! Attestation key IDs (`sgx_att_key_id_ext_t`, 256 bytes; `sgx_quote_3.h`).
//!
//! The first 158 bytes are the `sgx_ql_att_key_id_t` base: id u16, version u16,
//! mrsigner_length u16, mrsigner\[48\], prod_id u32, extended_prod_id\[16\], config_id\[64\],
//! family_id\[16\], algorithm_id u32. Then spid\[16\], att_key_type u16 and 80 reserved bytes.

/// Size of `sgx_att_key_id_ext_t`.
pub const ATT_KEY_ID_SIZE: usize = 256;
/// Size of the `sgx_ql_att_key_id_t` base that aesmd compares byte for byte.
pub const ATT_KEY_ID_BASE_SIZE: usize = 158;
/// `SGX_QL_ALG_ECDSA_P256`.
pub const ALG_ECDSA_P256: u32 = 2;
/// MRSIGNER of Intel's production QE3 (the key ID aesmd and Gramine advertise).
pub const QE3_MRSIGNER: [u8; 32] = [
    0x8c, 0x4f, 0x57, 0x75, 0xd7, 0x96, 0x50, 0x3e, 0x96, 0x13, 0x7f, 0x77, 0xc6, 0x8a, 0x82, 0x9a,
    0x00, 0x56, 0xac, 0x8d, 0xed, 0x70, 0x14, 0x0b, 0x08, 0x1b, 0x09, 0x44, 0x90, 0xc5, 0x7b, 0xff,
];

/// The one key ID this service supports: ECDSA P-256 via the production QE3 (id 0,
/// version 0, mrsigner_length 32, prod_id 1, algorithm_id 2, all else zero), as returned by
/// DCAP's `sgx_ql_get_keyid`.
// Evaluated at compile time: an out-of-range index would fail the build, not panic.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
pub const ECDSA_P256_QE3_KEY_ID: [u8; ATT_KEY_ID_SIZE] = {
    let mut k = [0u8; ATT_KEY_ID_SIZE];
    // mrsigner_length = 32 at offset 4.
    k[4] = 32;
    let mut i = 0;
    while i < 32 {
        k[6 + i] = QE3_MRSIGNER[i];
        i += 1;
    }
    // prod_id = 1 at offset 54.
    k[54] = 1;
    // algorithm_id = 2 at offset 154.
    k[154] = 2;
    k
};

/// A key ID received from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttKeyId {
    /// The ECDSA P-256 QE3 key (the only one served).
    EcdsaP256,
    /// Anything else (EPID, P-384, another QE, or a malformed blob): answered with
    /// `AESM_UNSUPPORTED_ATT_KEY_ID`.
    Unsupported,
}

impl AttKeyId {
    /// Classifies a wire key ID the way aesmd does: at least 256 bytes whose 158-byte base
    /// equals the QE3 ECDSA P-256 base exactly. An absent key ID means the default key.
    #[must_use]
    pub fn classify(bytes: Option<&[u8]>) -> Self {
        match bytes {
            None => Self::EcdsaP256,
            Some(b) if b.len() >= ATT_KEY_ID_SIZE => {
                if b.get(..ATT_KEY_ID_BASE_SIZE)
                    == ECDSA_P256_QE3_KEY_ID.get(..ATT_KEY_ID_BASE_SIZE)
                {
                    Self::EcdsaP256
                } else {
                    Self::Unsupported
                }
            }
            Some(_) => Self::Unsupported,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_layout_and_classification() {
        let k = ECDSA_P256_QE3_KEY_ID;
        assert_eq!(u16::from_le_bytes([k[4], k[5]]), 32);
        assert_eq!(&k[6..38], &QE3_MRSIGNER);
        assert_eq!(u32::from_le_bytes(k[54..58].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(k[154..158].try_into().unwrap()),
            ALG_ECDSA_P256
        );
        assert_eq!(AttKeyId::classify(Some(&k)), AttKeyId::EcdsaP256);
        assert_eq!(AttKeyId::classify(None), AttKeyId::EcdsaP256);
        // The ext part (spid, att_key_type) is not compared; the base is.
        let mut ext = k;
        ext[200] = 7;
        assert_eq!(AttKeyId::classify(Some(&ext)), AttKeyId::EcdsaP256);
        let mut epid = k;
        epid[154] = 0;
        assert_eq!(AttKeyId::classify(Some(&epid)), AttKeyId::Unsupported);
        assert_eq!(AttKeyId::classify(Some(&k[..158])), AttKeyId::Unsupported);
    }
}
