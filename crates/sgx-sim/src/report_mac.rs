//! REPORT MACs of the Intel SGX SDK's simulation mode (`SGX_MODE=SIM`).
//!
//! In simulation mode the SDK emulates EREPORT in software, and every simulated enclave
//! derives its report key from the same fixed base key, so anyone (here: our simulated QE)
//! can check that a REPORT was produced by the SDK's simulated EREPORT for a given target.
//! It proves nothing about the app (the key is public), but it catches REPORTs built for
//! another target, corrupted in transit, or not made by an SDK-simulation enclave at all.
//!
//! # What the SDK does
//!
//! Read from Intel's `linux-sgx` sources (`sdk/simulation/tinst/t_instructions.cpp`
//! `_EREPORT`, `sdk/simulation/tinst/deriv.cpp` `derive_key`/`cmac`/`BASE_REPORT_KEY`,
//! `sdk/simulation/tinst/deriv.h` `dd_report_key_t`, `common/inc/sgx_key.h`,
//! `common/inc/sgx_attributes.h`; the same derivation is repeated in
//! `sdk/simulation/uae_service_sim/quoting_sim.cpp` `create_qe_report`):
//!
//! 1. The REPORT body is filled in; `KEYID` = `BASE_REPORT_KEY` ‖ 0^16 (the first half of
//!    the key ID is the base key itself).
//! 2. The report key is AES-128-CMAC(`BASE_REPORT_KEY`, derivation data), where the
//!    derivation data is the C struct `dd_report_key_t` at default x86-64 alignment
//!    (`deriv.h` is outside `arch.h`'s `#pragma pack(1)` region), zero-initialised
//!    (`memset`), 120 bytes:
//!
//!    | offset | size | field |
//!    |---|---|---|
//!    | 0 | 2 | key name `SGX_KEYSELECT_REPORT` = 3, little-endian |
//!    | 2 | 6 | padding (zero: `sgx_attributes_t` is 8-byte aligned) |
//!    | 8 | 16 | `ATTRIBUTES` of the **target** (TARGETINFO bytes 32..48, copied raw) |
//!    | 24 | 16 | owner epoch, ASCII `THISISOWNEREPOCH` |
//!    | 40 | 32 | `MRENCLAVE` of the **target** (TARGETINFO bytes 0..32) |
//!    | 72 | 16 | CPUSVN of the simulated CPU (the same value the body's `CPUSVN` gets) |
//!    | 88 | 32 | `KEYID` of the REPORT |
//!
//! 3. `MAC` = AES-128-CMAC(report key, the 384-byte body). `KEYID` and `MAC` are not MACed.
//!
//! TARGETINFO's CONFIGSVN, MISCSELECT and CONFIGID are not part of the simulated
//! derivation. The check below takes CPUSVN from the body and `KEYID` from the REPORT, as
//! a real target enclave's EGETKEY(REPORT) would, so it also accepts REPORTs whose key ID
//! differs from the SDK's fixed one.
//!
//! **Confidence**: this follows the SDK source only. No REPORT produced by a real
//! SDK-simulation enclave (with its TARGETINFO) was available as a test vector, so it is
//! not checked against SDK output; a mismatch with real SDK REPORTs would show up as
//! `not-sdk-sim` for every request. The independent Rust port in the Teaclave SGX SDK
//! (`apache/teaclave-sgx-sdk`, `sgx_trts/src/inst/sim/derive.rs`) lays `DerivReportKey` out
//! identically (6 padding bytes after the key name); its simulated EREPORT however derives
//! with the *reporting* enclave's MRENCLAVE instead of the target's, so REPORTs from
//! Teaclave simulation enclaves are expected to show as `not-sdk-sim`.

use aws_lc_rs::cmac;
use sgx_quote::report::{REPORT_BODY_LEN, REPORT_LEN, TARGET_INFO_LEN};

/// `BASE_REPORT_KEY` of the SDK's simulation mode (`deriv.cpp`).
pub const BASE_REPORT_KEY: [u8; 16] = [
    0xff, 0x00, 0xff, 0x00, 0xff, 0x00, 0xff, 0x00, 0xff, 0x00, 0xff, 0x00, 0xff, 0x00, 0xff, 0x00,
];

/// The hard-coded owner epoch of the SDK's simulation mode (`SIMU_OWNER_EPOCH_MSR`).
pub const SIM_OWNER_EPOCH: [u8; 16] = *b"THISISOWNEREPOCH";

/// `SGX_KEYSELECT_REPORT` (`sgx_key.h`).
pub const KEYSELECT_REPORT: u16 = 0x0003;

/// The `KEYID` the SDK's simulated EREPORT puts in every REPORT: `BASE_REPORT_KEY` ‖ 0^16.
pub const SDK_SIM_KEY_ID: [u8; 32] = {
    let mut id = [0u8; 32];
    let mut i = 0;
    while i < BASE_REPORT_KEY.len() {
        id[i] = BASE_REPORT_KEY[i];
        i += 1;
    }
    id
};

/// Size of `dd_report_key_t` (x86-64 C layout, see the module docs).
pub const DERIVATION_DATA_LEN: usize = 120;

// Offsets in the REPORT (`sgx_report_t`).
const KEY_ID_AT: usize = REPORT_BODY_LEN;
const MAC_AT: usize = KEY_ID_AT + 32;

/// The result of [`check`], with the label the quote helper logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportMac {
    /// The MAC matches the SDK simulation report key for the given target.
    SdkSimValid,
    /// It does not: a hardware REPORT, another SDK, another target, or a modified REPORT.
    NotSdkSim,
}

impl ReportMac {
    /// `sdk-sim-valid` or `not-sdk-sim`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::SdkSimValid => "sdk-sim-valid",
            Self::NotSdkSim => "not-sdk-sim",
        }
    }
}

/// AES-128-CMAC of `data` under `key` (aws-lc-rs). A 16-byte key and any data length are valid
/// inputs, so the zero tag after an error is unreachable; it would fail every check, never pass one.
fn aes_cmac(key: &[u8; 16], data: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    if let Ok(tag) = cmac::Key::new(cmac::AES_128, key).and_then(|k| cmac::sign(&k, data))
        && let Ok(t) = <[u8; 16]>::try_from(tag.as_ref())
    {
        out = t;
    }
    out
}

/// The report-key derivation data (`dd_report_key_t`) for a REPORT targeted at
/// `target_info`, made on a simulated CPU with `cpu_svn`, with key ID `key_id`.
#[must_use]
pub fn derivation_data(
    target_info: &[u8; TARGET_INFO_LEN],
    cpu_svn: &[u8; 16],
    key_id: &[u8; 32],
) -> [u8; DERIVATION_DATA_LEN] {
    let mut dd = [0u8; DERIVATION_DATA_LEN];
    dd[0..2].copy_from_slice(&KEYSELECT_REPORT.to_le_bytes());
    // 2..8: padding, zero.
    dd[8..24].copy_from_slice(&target_info[32..48]);
    dd[24..40].copy_from_slice(&SIM_OWNER_EPOCH);
    dd[40..72].copy_from_slice(&target_info[0..32]);
    dd[72..88].copy_from_slice(cpu_svn);
    dd[88..120].copy_from_slice(key_id);
    dd
}

/// The SDK simulation report key for a REPORT targeted at `target_info`.
#[must_use]
pub fn report_key(
    target_info: &[u8; TARGET_INFO_LEN],
    cpu_svn: &[u8; 16],
    key_id: &[u8; 32],
) -> [u8; 16] {
    aes_cmac(
        &BASE_REPORT_KEY,
        &derivation_data(target_info, cpu_svn, key_id),
    )
}

fn body_cpu_svn(report: &[u8; REPORT_LEN]) -> [u8; 16] {
    let mut cpu_svn = [0u8; 16];
    cpu_svn.copy_from_slice(&report[0..16]);
    cpu_svn
}

fn key_id(report: &[u8; REPORT_LEN]) -> [u8; 32] {
    let mut id = [0u8; 32];
    id.copy_from_slice(&report[KEY_ID_AT..MAC_AT]);
    id
}

/// Whether `report`'s MAC is the one the SDK's simulated EREPORT computes for
/// `target_info` (our QE's, from `SoftQe::target_info`). Constant-time tag comparison.
#[must_use]
pub fn check(report: &[u8; REPORT_LEN], target_info: &[u8; TARGET_INFO_LEN]) -> ReportMac {
    let key = report_key(target_info, &body_cpu_svn(report), &key_id(report));
    let valid = cmac::Key::new(cmac::AES_128, &key)
        .and_then(|k| cmac::verify(&k, &report[..REPORT_BODY_LEN], &report[MAC_AT..]))
        .is_ok();
    if valid {
        ReportMac::SdkSimValid
    } else {
        ReportMac::NotSdkSim
    }
}

/// A REPORT as the SDK's simulated EREPORT would return it for `body` and `target_info`:
/// `KEYID` = [`SDK_SIM_KEY_ID`], MAC under the report key derived with the body's CPUSVN.
/// For tests and for clients that build REPORTs without an enclave.
#[must_use]
pub fn sdk_sim_report(
    body: &[u8; REPORT_BODY_LEN],
    target_info: &[u8; TARGET_INFO_LEN],
) -> [u8; REPORT_LEN] {
    let mut report = [0u8; REPORT_LEN];
    report[..REPORT_BODY_LEN].copy_from_slice(body);
    report[KEY_ID_AT..MAC_AT].copy_from_slice(&SDK_SIM_KEY_ID);
    let key = report_key(target_info, &body_cpu_svn(&report), &SDK_SIM_KEY_ID);
    report[MAC_AT..].copy_from_slice(&aes_cmac(&key, body));
    report
}
