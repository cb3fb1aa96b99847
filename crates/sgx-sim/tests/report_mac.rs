//! The SDK simulation-mode REPORT MAC (`sgx_sim::report_mac`).
//!
//! No REPORT produced by a real Intel SDK simulation enclave was found to use as a test
//! vector, so these tests check the implementation against the SDK *source* (via an
//! independent re-spelling of `dd_report_key_t` and aws-lc-rs's CMAC), not against SDK
//! *output*.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

use std::sync::LazyLock;

use aws_lc_rs::cmac;
use sgx_quote::{Attributes, CpuSvn, MrEnclave, MrSigner, ReportBody, ReportData, TargetInfo};
use sgx_sim::Simulation;
use sgx_sim::report_mac::{
    BASE_REPORT_KEY, ReportMac, SDK_SIM_KEY_ID, check, report_key, sdk_sim_report,
};
use time::OffsetDateTime;

/// Our simulated QE's TARGETINFO, as the quote helper hands it out.
static QE_TARGET: LazyLock<[u8; 512]> = LazyLock::new(|| {
    Simulation::generate(OffsetDateTime::now_utc())
        .unwrap()
        .qe
        .target_info()
});

/// `DEFAULT_CPUSVN` of the SDK simulation (`cpusvn_util.h`): what `_EREPORT` puts in the body.
const SDK_DEFAULT_CPUSVN: [u8; 16] = [
    0x48, 0x20, 0xf3, 0x37, 0x6a, 0xe6, 0xb2, 0xf2, 0x03, 0x4d, 0x3b, 0x7a, 0x4b, 0x48, 0xa7, 0x78,
];

/// A body as the SDK's `_EREPORT` fills it: CPUSVN, ISVPRODID, ISVSVN, ATTRIBUTES,
/// REPORTDATA, MRENCLAVE, MRSIGNER; everything else zero.
fn app_body() -> [u8; 384] {
    let mut rd = [0u8; 64];
    rd[..11].copy_from_slice(b"report data");
    ReportBody {
        cpu_svn: CpuSvn(SDK_DEFAULT_CPUSVN),
        attributes: Attributes {
            flags: Attributes::INIT | Attributes::DEBUG | Attributes::MODE64BIT,
            xfrm: 0x3,
        },
        mr_enclave: MrEnclave([0x11; 32]),
        mr_signer: MrSigner([0x22; 32]),
        isv_prod_id: 3,
        isv_svn: 4,
        report_data: ReportData(rd),
        ..ReportBody::default()
    }
    .to_bytes()
}

fn aws_cmac(key: &[u8], data: &[u8]) -> [u8; 16] {
    let key = cmac::Key::new(cmac::AES_128, key).unwrap();
    cmac::sign(&key, data).unwrap().as_ref().try_into().unwrap()
}

#[test]
fn sdk_sim_report_verifies_for_our_qe() {
    let report = sdk_sim_report(&app_body(), &QE_TARGET);
    assert_eq!(&report[..384], &app_body()[..]);
    assert_eq!(&report[384..400], &BASE_REPORT_KEY[..]);
    assert_eq!(&report[400..416], &[0u8; 16][..]);
    assert_eq!(check(&report, &QE_TARGET), ReportMac::SdkSimValid);
    assert_eq!(check(&report, &QE_TARGET).label(), "sdk-sim-valid");
}

/// An independent spelling of `_EREPORT` from `t_instructions.cpp` / `deriv.h`, written
/// byte by byte here rather than through the module's helpers: the derivation data is the
/// x86-64 layout of `dd_report_key_t` (u16 key name, 6 padding bytes before the 8-aligned
/// attributes).
#[test]
fn matches_an_independent_spelling_of_the_sdk_source() {
    let ti = &*QE_TARGET;
    let body = app_body();
    let mut dd = Vec::new();
    dd.extend_from_slice(&3u16.to_le_bytes()); // SGX_KEYSELECT_REPORT
    dd.extend_from_slice(&[0; 6]); // alignment padding, memset to 0
    dd.extend_from_slice(&ti[32..48]); // ti->attributes
    dd.extend_from_slice(b"THISISOWNEREPOCH"); // SIMU_OWNER_EPOCH_MSR
    dd.extend_from_slice(&ti[..32]); // ti->mr_enclave
    dd.extend_from_slice(&SDK_DEFAULT_CPUSVN); // g_global_data_sim.cpusvn_sim
    dd.extend_from_slice(&[0xff, 0x00].repeat(8)); // key_id = BASE_REPORT_KEY ...
    dd.extend_from_slice(&[0; 16]); // ... || 0^16
    assert_eq!(dd.len(), 120); // sizeof(dd_report_key_t)
    let key = aws_cmac(&[0xff, 0x00].repeat(8), &dd);
    assert_eq!(key, report_key(ti, &SDK_DEFAULT_CPUSVN, &SDK_SIM_KEY_ID));
    let report = sdk_sim_report(&body, ti);
    assert_eq!(report[416..], aws_cmac(&key, &body));
}

#[test]
fn every_single_bit_flip_fails() {
    let report = sdk_sim_report(&app_body(), &QE_TARGET);
    // Body (MACed, and CPUSVN also feeds the key), KEYID (feeds the key) and MAC.
    for byte in 0..432 {
        for bit in 0..8 {
            let mut r = report;
            r[byte] ^= 1 << bit;
            assert_eq!(
                check(&r, &QE_TARGET),
                ReportMac::NotSdkSim,
                "flip of bit {bit} of byte {byte} was accepted"
            );
        }
    }
}

#[test]
fn report_for_another_target_fails() {
    let ours = TargetInfo::parse(&QE_TARGET[..]).unwrap();
    // The SDK's own simulated QE target (quoting_sim.cpp): MRENCLAVE 0xEE.., INIT, legacy XFRM.
    let sdk_qe = TargetInfo {
        mr_enclave: MrEnclave([0xee; 32]),
        attributes: Attributes {
            flags: Attributes::INIT,
            xfrm: 0x3,
        },
        ..ours
    };
    let other_attrs = TargetInfo {
        attributes: Attributes {
            flags: ours.attributes.flags ^ Attributes::DEBUG,
            ..ours.attributes
        },
        ..ours
    };
    for target in [sdk_qe, other_attrs] {
        let report = sdk_sim_report(&app_body(), &target.to_bytes());
        assert_eq!(check(&report, &target.to_bytes()), ReportMac::SdkSimValid);
        assert_eq!(check(&report, &QE_TARGET), ReportMac::NotSdkSim);
    }
}

#[test]
fn target_fields_outside_the_sdk_derivation_do_not_matter() {
    // The simulated derivation uses only MRENCLAVE and ATTRIBUTES of the target.
    let ours = TargetInfo::parse(&QE_TARGET[..]).unwrap();
    let other = TargetInfo {
        config_svn: 7,
        config_id: [0x5a; 64],
        ..ours
    };
    let report = sdk_sim_report(&app_body(), &QE_TARGET);
    assert_eq!(check(&report, &other.to_bytes()), ReportMac::SdkSimValid);
}

#[test]
fn key_id_is_taken_from_the_report() {
    // Like Intel's simulated QE report (random KEYID): a target's EGETKEY uses the
    // REPORT's KEYID, so any KEYID verifies if the MAC was made with it.
    let body = app_body();
    let key_id = [0x42; 32];
    let key = report_key(&QE_TARGET, &SDK_DEFAULT_CPUSVN, &key_id);
    let mut report = [0u8; 432];
    report[..384].copy_from_slice(&body);
    report[384..416].copy_from_slice(&key_id);
    report[416..].copy_from_slice(&aws_cmac(&key, &body));
    assert_eq!(check(&report, &QE_TARGET), ReportMac::SdkSimValid);
}

#[test]
fn zero_or_foreign_mac_is_not_sdk_sim() {
    let body = app_body();
    let mut report = [0u8; 432];
    report[..384].copy_from_slice(&body);
    assert_eq!(check(&report, &QE_TARGET), ReportMac::NotSdkSim);
    assert_eq!(check(&report, &QE_TARGET).label(), "not-sdk-sim");
    // A MAC under some other key (as a hardware CPU's report key would be).
    report[384..416].copy_from_slice(&SDK_SIM_KEY_ID);
    report[416..].copy_from_slice(&aws_cmac(&[0x33; 16], &body));
    assert_eq!(check(&report, &QE_TARGET), ReportMac::NotSdkSim);
}
