//! Device IDs and the exact size of a `ListAndWatchResponse` (pure).
//!
//! The kubelet reads `ListAndWatch` with grpc-go's default 4 MiB receive limit, and one device
//! per MiB of EPC reaches 262,144 devices at 256 GiB. Each device costs (protobuf):
//!
//! ```text
//! devices (field 1, LEN)   1 tag + 1 length             2
//! Device.ID (field 1)      1 tag + 1 length + len(ID)   2 + len(ID)
//! Device.health (field 2)  1 tag + 1 length + 7         9   ("Healthy")
//! ```
//!
//! i.e. `13 + len(ID)` bytes. Compact IDs use the 64-symbol alphabet [`ALPHABET`] and the
//! shortest length first (64 one-symbol IDs, then 4,096 two-symbol IDs, then three-symbol ones),
//! so 256 GiB encodes in 4,190,080 bytes. Decimal IDs would need 4.87 MB and `sgx-epc-N` IDs
//! 6.97 MB (research note, section 4).
//!
//! Unhealthy devices spell out `Unhealthy` (two bytes more each) when the whole message still
//! fits; when it would not, they leave `health` empty (proto3 default, zero bytes). The kubelet
//! counts every device whose health is not `Healthy` as unhealthy (devicemanager
//! `genericDeviceUpdateCallback`), so both encodings mean the same to it.

use kubelet_api::v1beta1::{Device, ListAndWatchResponse};
use kubelet_api::{HEALTHY, UNHEALTHY};

/// Symbols of compact IDs, in order: safe in JSON, file names, labels and logs.
pub const ALPHABET: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";

const BASE: u64 = 64;

/// The compact ID of device number `index` (shortest IDs first).
#[must_use]
pub fn compact_id(index: u64) -> String {
    let (len, mut rem) = len_and_offset(index);
    let mut out = vec![b'0'; len];
    for slot in out.iter_mut().rev() {
        let digit = usize::try_from(rem % BASE).unwrap_or(0);
        *slot = ALPHABET.get(digit).copied().unwrap_or(b'0');
        rem /= BASE;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Length of the ID of device `index`, and its offset within the IDs of that length.
fn len_and_offset(index: u64) -> (usize, u64) {
    let mut len = 1usize;
    let mut block = BASE;
    let mut rem = index;
    while rem >= block {
        rem -= block;
        len += 1;
        block = block.saturating_mul(BASE);
    }
    (len, rem)
}

/// The device number of a compact ID, or `None` when it is not one (or is `>= count`).
#[must_use]
pub fn parse_compact_id(id: &str, count: u64) -> Option<u64> {
    let bytes = id.as_bytes();
    if bytes.is_empty() || bytes.len() > 10 {
        return None;
    }
    let mut value = 0u64;
    for b in bytes {
        let digit = ALPHABET.iter().position(|a| a == b)?;
        value = value * BASE + u64::try_from(digit).ok()?;
    }
    // Add the number of IDs of every shorter length.
    let mut first = 0u64;
    let mut block = BASE;
    for _ in 1..bytes.len() {
        first = first.checked_add(block)?;
        block = block.checked_mul(BASE)?;
    }
    let index = first.checked_add(value)?;
    (index < count).then_some(index)
}

/// Exact encoded size of a `ListAndWatchResponse` with `count` compact-ID devices, all with
/// the given `health` string (`""` for an omitted field).
#[must_use]
pub fn compact_list_len(count: u64, health: &str) -> u64 {
    let health_len = if health.is_empty() {
        0
    } else {
        2 + health.len() as u64
    };
    let mut total = 0u64;
    let mut left = count;
    let mut len = 1u64;
    let mut block = BASE;
    while left > 0 {
        let n = left.min(block);
        let device = 2 + len + health_len; // ID field + health field
        total += n * (1 + varint_len(device) + device);
        left -= n;
        len += 1;
        block = block.saturating_mul(BASE);
    }
    total
}

fn varint_len(v: u64) -> u64 {
    let bits = 64 - u64::from(v.max(1).leading_zeros());
    bits.div_ceil(7)
}

/// The health string to send for `count` compact-ID devices so that the message fits in
/// `limit` bytes: `Healthy` / `Unhealthy`, or `""` for unhealthy devices when the spelled-out
/// form would not fit. `None` when even that does not fit.
#[must_use]
pub fn health_encoding(count: u64, healthy: bool, limit: u64) -> Option<&'static str> {
    let candidates: &[&'static str] = if healthy {
        &[HEALTHY]
    } else {
        &[UNHEALTHY, ""]
    };
    candidates
        .iter()
        .copied()
        .find(|h| compact_list_len(count, h) <= limit)
}

/// Largest number of compact-ID devices whose `ListAndWatchResponse` fits in `limit` bytes
/// in both health states.
#[must_use]
pub fn max_compact_devices(limit: u64) -> u64 {
    // compact_list_len is monotonic in count: binary search.
    let (mut lo, mut hi) = (0u64, limit);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if health_encoding(mid, true, limit).is_some()
            && health_encoding(mid, false, limit).is_some()
        {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Builds the response for `count` compact-ID devices.
#[must_use]
pub fn compact_list(count: u64, health: &str) -> ListAndWatchResponse {
    ListAndWatchResponse {
        devices: (0..count)
            .map(|i| Device {
                id: compact_id(i),
                health: health.to_owned(),
                topology: None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn compact_ids_round_trip_and_are_shortest_first() {
        assert_eq!(compact_id(0), "0");
        assert_eq!(compact_id(63), "_");
        assert_eq!(compact_id(64), "00");
        assert_eq!(compact_id(64 + 4095), "__");
        assert_eq!(compact_id(64 + 4096), "000");
        let count = 300_000;
        let mut seen = std::collections::HashMap::new();
        for i in (0..count).step_by(7).chain([count - 1]) {
            let id = compact_id(i);
            assert!(id.len() <= 3 || i >= 64 + 4096 + 262_144);
            assert_eq!(parse_compact_id(&id, count), Some(i), "{id}");
            if let Some(prev) = seen.insert(id, i) {
                assert_eq!(prev, i, "two devices share an id");
            }
        }
        assert_eq!(parse_compact_id("0", 0), None);
        assert_eq!(parse_compact_id("", 10), None);
        assert_eq!(parse_compact_id("a b", 10), None);
        assert_eq!(parse_compact_id("sgx-epc-1", 10), None);
        assert_eq!(parse_compact_id("a", 10), None, "index 10 is out of range");
    }

    proptest::proptest! {
        #[test]
        fn compact_ids_round_trip(count in 1u64..5_000_000, pick in 0u64..u64::MAX) {
            let i = pick % count;
            let id = compact_id(i);
            proptest::prop_assert!(id.len() <= kubelet_api::MAX_DEVICE_ID_LEN);
            proptest::prop_assert_eq!(parse_compact_id(&id, count), Some(i));
        }

        #[test]
        fn arbitrary_ids_never_panic_and_parse_only_to_valid_indices(id in "[0-9a-zA-Z_-]{0,4}|\\PC{0,12}", count in 0u64..1_000_000) {
            if let Some(i) = parse_compact_id(&id, count) {
                proptest::prop_assert!(i < count);
                proptest::prop_assert_eq!(compact_id(i), id);
            }
        }
    }

    #[test]
    fn computed_length_matches_prost_encoding() {
        for count in [0u64, 1, 63, 64, 65, 4159, 4160, 4161, 10_000] {
            for h in [HEALTHY, UNHEALTHY, ""] {
                let msg = compact_list(count, h);
                assert_eq!(
                    compact_list_len(count, h),
                    msg.encoded_len() as u64,
                    "count {count} health {h:?}"
                );
            }
        }
    }

    #[test]
    fn two_hundred_fifty_six_gib_fits_in_both_health_states() {
        let limit = kubelet_api::KUBELET_MAX_RECV_MESSAGE_BYTES as u64;
        let count = 256 * 1024;
        let healthy = compact_list(count, HEALTHY).encoded_len() as u64;
        assert_eq!(healthy, 4_190_080);
        assert!(healthy <= limit);
        assert_eq!(health_encoding(count, true, limit), Some(HEALTHY));
        // Spelled-out Unhealthy would not fit; the empty health does.
        assert!(compact_list_len(count, UNHEALTHY) > limit);
        assert_eq!(health_encoding(count, false, limit), Some(""));
        let max = max_compact_devices(limit);
        assert!(max >= count, "{max}");
        assert!(max < count + 1024, "{max}");
        assert!(health_encoding(max + 1, true, limit).is_none());
    }
}
