//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
#![allow(clippy::panic)]

use crate::Quote;

/// Parses `data` strictly and tolerantly; whatever parses must encode back to the exact bytes
/// it was parsed from and re-parse to an equal quote.
pub fn parse_quote(data: &[u8]) {
    let strict = Quote::parse(data);
    let tolerant = Quote::parse_tolerant(data);
    match (&strict, &tolerant) {
        (Ok(s), Ok((t, 0))) => assert_eq!(s, t, "strict and tolerant parses differ"),
        (Ok(_), Ok((_, n))) => panic!("strict parse accepted {n} trailing bytes"),
        (Err(_), Ok((_, 0))) => {
            panic!("strict parse failed where tolerant found no trailing bytes")
        }
        (Ok(_), Err(e)) => panic!("tolerant parse failed where strict succeeded: {e}"),
        (Err(_), _) => {}
    }
    if let Ok((quote, trailing)) = tolerant {
        let _ = quote.certification().pck_cert_id();
        if let Some(pem) = quote.pck_chain_pem() {
            let _ = crate::pck::split_pem_chain(pem);
        }
        let encoded = quote.encode();
        let consumed = data.len().saturating_sub(trailing);
        assert_eq!(
            Some(encoded.as_slice()),
            data.get(..consumed),
            "encoding is not canonical"
        );
        let again = Quote::parse(&encoded);
        assert_eq!(again.as_ref().ok(), Some(&quote), "re-parse differs");
    }
}

/// Parses `data` as an SGX extension value; whatever parses must encode and re-parse equal.
pub fn parse_pck_extension(data: &[u8]) {
    if let Ok(ext) = crate::pck::SgxExtension::parse(data) {
        let der = ext.to_der();
        let again = crate::pck::SgxExtension::parse(&der);
        assert_eq!(again.as_ref().ok(), Some(&ext), "re-parse differs");
    }
    let _ = crate::pck::split_pem_chain(data);
    let _ = crate::pck::SgxExtension::from_cert_der(data);
}
