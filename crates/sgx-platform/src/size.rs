//! Byte sizes as people write them (`64Mi`, `8GiB`, `1024`).

use crate::{Error, Result};

/// Parses a byte size: a decimal number with an optional binary (`Ki`, `Mi`, `Gi`, `Ti`, with
/// or without a trailing `B`) or decimal (`k`, `M`, `G`, `T`) unit, as in Kubernetes
/// quantities.
///
/// # Errors
/// [`Error::InvalidSize`] when the text is not such a size or overflows 64 bits.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || Error::InvalidSize(text.to_owned());
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        "Ti" | "TiB" => 1 << 40,
        "k" | "K" | "kB" | "KB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "T" | "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Formats bytes with the largest binary unit that keeps one decimal (`93.5 MiB`).
#[must_use]
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, unit) in UNITS {
        if bytes >= unit {
            // `unit` is a non-zero constant: neither division can fail.
            let whole = bytes.checked_div(unit).unwrap_or(0);
            let tenth = bytes
                .checked_rem(unit)
                .unwrap_or(0)
                .saturating_mul(10)
                .checked_div(unit)
                .unwrap_or(0);
            return if tenth == 0 {
                format!("{whole} {name}")
            } else {
                format!("{whole}.{tenth} {name}")
            };
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("64Mi").unwrap(), 64 << 20);
        assert_eq!(parse_size("8GiB").unwrap(), 8 << 30);
        assert_eq!(parse_size("256Gi").unwrap(), 256 << 30);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("2M").unwrap(), 2_000_000);
        assert!(parse_size("").is_err());
        assert!(parse_size("Mi").is_err());
        assert!(parse_size("12Qi").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999Ti").is_err());
    }

    #[test]
    fn sizes_format_with_one_decimal() {
        assert_eq!(format_size(98_041_856), "93.5 MiB");
        assert_eq!(format_size(256 << 30), "256 GiB");
        assert_eq!(format_size(0), "0 B");
    }
}
