//! Fuzzing entry points (not a stable API).

use crate::{Collateral, Policy, TrustAnchors, UnixTime, Verifier};

/// Separates the quote from the collateral JSON in a fuzz input.
pub const MARK: &[u8] = &[0xff, 0xfe, 0xfd, 0xfc];

/// The fixed verification time of fuzz inputs (expiry is a flag there).
pub const TIME: UnixTime = UnixTime(1_750_000_000);

/// A fuzz input: `quote ‖ MARK ‖ collateral JSON`.
pub fn input(quote: &[u8], collateral_json: &[u8]) -> Vec<u8> {
    [quote, MARK, collateral_json].concat()
}

/// Splits `data` into (quote, collateral JSON) at the first [`MARK`], then verifies twice (cold, then through the
/// cache) with a permissive policy at [`TIME`]. With the `dangerous-fuzzing` feature every signature is accepted so
/// the fuzzer reaches TCB evaluation; without it this only must not panic. Returns whether verification succeeded.
pub fn verify(data: &[u8]) -> bool {
    let split = data.windows(MARK.len()).position(|w| w == MARK);
    let (quote, json) = match split {
        Some(i) => (
            data.get(..i).unwrap_or_default(),
            data.get(i.saturating_add(MARK.len())..).unwrap_or_default(),
        ),
        None => (data, &[][..]),
    };
    let Ok(collateral) = Collateral::from_json(json) else {
        return false;
    };
    #[cfg(feature = "dangerous-fuzzing")]
    let v = Verifier::dangerous_accept_all_signatures(TrustAnchors::intel());
    #[cfg(not(feature = "dangerous-fuzzing"))]
    let v = Verifier::new(TrustAnchors::intel());
    let policy = Policy::default()
        .allow_expired_collateral(true)
        .allow_missing_crls(true)
        .allow_debug(true)
        .accept_any_status();
    let first = v.verify(quote, &collateral, TIME, &policy);
    // The second call goes through the cache and must agree.
    let second = v.verify(quote, &collateral, TIME, &policy);
    match (first, second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "cached verdict differs");
            true
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string(), "cached error differs");
            false
        }
        (a, b) => {
            assert!(
                a.is_ok() == b.is_ok(),
                "cache changed the outcome: {a:?} vs {b:?}"
            );
            false
        }
    }
}
