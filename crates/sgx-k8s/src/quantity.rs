//! Exact parsing and formatting of Kubernetes resource quantities.
//!
//! Grammar (k8s.io/apimachinery `resource.Quantity`):
//! `[+-]digits[.digits]suffix`, with `suffix` one of the binary SI suffixes
//! `Ki Mi Gi Ti Pi Ei`, the decimal SI suffixes `m "" k M G T P E`, or a decimal exponent
//! `e<int>` / `E<int>`. Either side of the decimal point may be empty, not both.
//!
//! Values are computed exactly in integer arithmetic: `1.5Gi` is 1610612736, `100m` is not an
//! integer, and anything that does not fit a `u64` is [`Error::TooLarge`].

use std::fmt::Write as _;

/// Why a quantity string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The string does not follow the quantity grammar.
    #[error("not a quantity (expected digits with an optional suffix such as Mi, k or e3)")]
    Syntax,
    /// The suffix is not one Kubernetes knows.
    #[error("unknown suffix {0:?} (binary: Ki Mi Gi Ti Pi Ei; decimal: m k M G T P E)")]
    UnknownSuffix(String),
    /// The value is below zero.
    #[error("negative quantity")]
    Negative,
    /// The value has a fractional part (for example `100m` of a counted resource).
    #[error("not a whole number")]
    NotInteger,
    /// The value does not fit in 64 bits.
    #[error("quantity too large")]
    TooLarge,
}

/// Longest accepted quantity string; the API server's own limit is far below this.
const MAX_LEN: usize = 128;

/// Largest power of ten that fits in a `u128` (10^38).
const MAX_POW10: u32 = 38;

/// Parses a quantity that must be a non-negative whole number (bytes, a device count, MiB).
///
/// ```
/// use sgx_k8s::quantity::{parse_whole, Error};
/// assert_eq!(parse_whole("1.5Gi"), Ok(1_610_612_736));
/// assert_eq!(parse_whole("12Mi"), Ok(12 << 20));
/// assert_eq!(parse_whole("1e3"), Ok(1000));
/// assert_eq!(parse_whole("0"), Ok(0));
/// assert_eq!(parse_whole("100m"), Err(Error::NotInteger));
/// ```
pub fn parse_whole(s: &str) -> Result<u64, Error> {
    if s.is_empty() || s.len() > MAX_LEN {
        return Err(Error::Syntax);
    }
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..).unwrap_or_default()),
        Some(b'+') => (false, s.get(1..).unwrap_or_default()),
        _ => (false, s),
    };
    let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (int_part, rest) = rest.split_at_checked(int_len).ok_or(Error::Syntax)?;
    let (frac_part, suffix) = match rest.strip_prefix('.') {
        Some(after) => {
            let n = after.bytes().take_while(u8::is_ascii_digit).count();
            after.split_at_checked(n).ok_or(Error::Syntax)?
        }
        None => ("", rest),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(Error::Syntax);
    }
    let (binary_shift, decimal_exp) = parse_suffix(suffix)?;

    // Mantissa over all digits; trailing fraction zeros and leading zeros carry no value.
    let frac_part = frac_part.trim_end_matches('0');
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0); // "0", "-0", "0.000Gi", "0e99"
    }
    if negative {
        return Err(Error::Negative);
    }
    if digits.len() > usize::try_from(MAX_POW10).map_err(|_| Error::TooLarge)? {
        return Err(Error::TooLarge);
    }
    let mantissa: u128 = digits.parse().map_err(|_| Error::Syntax)?;
    let frac_digits = i64::try_from(frac_part.len()).map_err(|_| Error::Syntax)?;
    let exp10 = i64::from(decimal_exp)
        .checked_sub(frac_digits)
        .ok_or(Error::TooLarge)?;

    let value = mantissa
        .checked_mul(1u128.checked_shl(binary_shift).ok_or(Error::TooLarge)?)
        .ok_or(Error::TooLarge)?;
    let value = if exp10 >= 0 {
        let e = u32::try_from(exp10).map_err(|_| Error::TooLarge)?;
        if e > MAX_POW10 {
            return Err(Error::TooLarge);
        }
        value
            .checked_mul(10u128.checked_pow(e).ok_or(Error::TooLarge)?)
            .ok_or(Error::TooLarge)?
    } else {
        let e = u32::try_from(exp10.unsigned_abs()).map_err(|_| Error::NotInteger)?;
        // The value is non-zero and below 2^128, so a divisor beyond 10^38 leaves a fraction.
        let divisor = 10u128.checked_pow(e).ok_or(Error::NotInteger)?;
        if value.checked_rem(divisor) != Some(0) {
            return Err(Error::NotInteger);
        }
        value.checked_div(divisor).ok_or(Error::NotInteger)?
    };
    u64::try_from(value).map_err(|_| Error::TooLarge)
}

/// Returns (binary shift, decimal exponent) of a suffix.
fn parse_suffix(suffix: &str) -> Result<(u32, i32), Error> {
    Ok(match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => {
            let exp = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .filter(|e| {
                    let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                })
                .ok_or_else(|| Error::UnknownSuffix(suffix.to_owned()))?;
            // Exponents beyond ±10^4 put any non-zero mantissa out of range either way.
            let exp: i32 = exp.parse().unwrap_or(if exp.starts_with('-') {
                i32::MIN
            } else {
                i32::MAX
            });
            (0, exp.clamp(-10_000, 10_000))
        }
    })
}

/// Formats a byte count as Kubernetes formats a `BinarySI` quantity: the largest binary suffix
/// that divides it exactly (`12Mi`, `2Ki`), else plain digits (`1536`, `0`).
///
/// ```
/// use sgx_k8s::quantity::format_binary;
/// assert_eq!(format_binary(12 << 20), "12Mi");
/// assert_eq!(format_binary(1536), "1536");
/// assert_eq!(format_binary(0), "0");
/// ```
#[must_use]
pub fn format_binary(bytes: u64) -> String {
    const SUFFIXES: [(&str, u32); 6] = [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ];
    let mut out = String::new();
    if bytes != 0 {
        for (suffix, shift) in SUFFIXES {
            let unit = 1u64.checked_shl(shift).unwrap_or(u64::MAX);
            if bytes.checked_rem(unit) == Some(0) {
                let _ = write!(out, "{}{suffix}", bytes.checked_shr(shift).unwrap_or(0));
                return out;
            }
        }
    }
    let _ = write!(out, "{bytes}");
    out
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_quantity_grammar() {
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("-0", 0),
            ("+0", 0),
            ("0.0", 0),
            ("0Mi", 0),
            ("0e9999", 0),
            ("1", 1),
            ("+7", 7),
            ("1Ki", 1024),
            ("10Mi", 10 << 20),
            ("1.5Gi", 1_610_612_736),
            ("1.50Gi", 1_610_612_736),
            (".5Ki", 512),
            ("5.", 5),
            ("1k", 1000),
            ("1M", 1_000_000),
            ("2G", 2_000_000_000),
            ("1T", 1_000_000_000_000),
            ("1P", 1_000_000_000_000_000),
            ("1E", 1_000_000_000_000_000_000),
            ("15Ei", 15 << 60),
            ("1e3", 1000),
            ("1E3", 1000),
            ("1e+3", 1000),
            ("1000e-3", 1),
            ("2000m", 2),
            ("1048576", 1 << 20),
            ("00012", 12),
            ("18446744073709551615", u64::MAX),
        ];
        for (s, want) in ok {
            assert_eq!(parse_whole(s), Ok(*want), "{s}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_whole_quantity() {
        let bad: &[(&str, Error)] = &[
            ("", Error::Syntax),
            (".", Error::Syntax),
            ("-", Error::Syntax),
            ("Mi", Error::Syntax),
            ("abc", Error::Syntax),
            (" 1", Error::Syntax),
            ("1 ", Error::UnknownSuffix(" ".into())),
            ("1..5", Error::UnknownSuffix(".5".into())),
            ("1ki", Error::UnknownSuffix("ki".into())),
            ("1K", Error::UnknownSuffix("K".into())),
            ("1MiB", Error::UnknownSuffix("MiB".into())),
            ("1e", Error::UnknownSuffix("e".into())),
            ("1e-", Error::UnknownSuffix("e-".into())),
            ("1e3.5", Error::UnknownSuffix("e3.5".into())),
            ("-1", Error::Negative),
            ("-1Mi", Error::Negative),
            ("100m", Error::NotInteger),
            ("1.5", Error::NotInteger),
            ("1e-1", Error::NotInteger),
            ("1500e-3", Error::NotInteger),
            ("1e-99999999999", Error::NotInteger),
            ("1.0000000001Ki", Error::NotInteger),
            ("16Ei", Error::TooLarge),
            ("18446744073709551616", Error::TooLarge),
            ("1e20", Error::TooLarge),
            ("1e99999999999", Error::TooLarge),
            (
                "999999999999999999999999999999999999999999",
                Error::TooLarge,
            ),
        ];
        for (s, want) in bad {
            assert_eq!(parse_whole(s).as_ref(), Err(want), "{s}");
        }
        assert_eq!(parse_whole(&"1".repeat(200)), Err(Error::Syntax));
    }

    #[test]
    fn formats_like_binary_si() {
        for (n, s) in [
            (0, "0"),
            (1, "1"),
            (1000, "1000"),
            (1024, "1Ki"),
            (1536, "1536"),
            (3 << 19, "1536Ki"),
            (12 << 20, "12Mi"),
            (1 << 30, "1Gi"),
            (u64::MAX, "18446744073709551615"),
        ] {
            assert_eq!(format_binary(n), s);
            assert_eq!(parse_whole(s), Ok(n), "round trip {s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn format_then_parse_round_trips(n in proptest::prelude::any::<u64>()) {
            proptest::prop_assert_eq!(parse_whole(&format_binary(n)), Ok(n));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,40}") {
            let _ = parse_whole(&s);
        }

        #[test]
        fn scaled_integers_parse_exactly(n in 0u64..1_000_000, shift in 0usize..4) {
            let (suffix, mul) = [("", 1u64), ("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)][shift];
            proptest::prop_assert_eq!(parse_whole(&format!("{n}{suffix}")), Ok(n * mul));
            proptest::prop_assert_eq!(parse_whole(&format!("{n}000m")), Ok(n));
        }
    }
}
