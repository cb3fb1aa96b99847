//! Decoding tests on register dumps of real CPUs.

use super::*;
use proptest::prelude::*;

/// Intel Core i5-8350U (Kaby Lake R, Dell XPS 13 9370): `cpuid -1 --raw` posted by Paul Menzel
/// to linux-kernel on 2022-08-23 (Message-ID
/// `<63a60042-4a4a-3bc3-5fa1-4495d80cc06c@molgen.mpg.de>`, thread "WARNING: CPU: 1 PID: 83 at
/// arch/x86/kernel/cpu/sgx/main.c:446"). The kernel of that machine logged
/// `sgx: EPC section 0x40200000-0x45f7ffff`. Same client MEE generation as the Coffee Lake
/// Xeon E-2288G of Azure DCsv2.
fn kaby_lake_r_i5_8350u() -> CpuidTable {
    CpuidTable::new(vec![
        (
            0x0,
            0,
            CpuidRegs::new(0x0000_0016, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
        ),
        (
            0x7,
            0,
            CpuidRegs::new(0x0000_0000, 0x029c_67af, 0x0000_0000, 0xbc00_2e00),
        ),
        (
            0x12,
            0,
            CpuidRegs::new(0x0000_0001, 0x0000_0000, 0x0000_0000, 0x0000_241f),
        ),
        (
            0x12,
            1,
            CpuidRegs::new(0x0000_0036, 0x0000_0000, 0x0000_001f, 0x0000_0000),
        ),
        (
            0x12,
            2,
            CpuidRegs::new(0x4020_0001, 0x0000_0000, 0x05d8_0001, 0x0000_0000),
        ),
        (
            0x12,
            3,
            CpuidRegs::new(0x0000_0000, 0x0000_0000, 0x0000_0000, 0x0000_0000),
        ),
    ])
}

/// Two-socket Xeon Ice Lake-SP (the generation of Azure DCsv3). The EPC sections are the two
/// ranges its kernel logged, posted by Tony Luck on 2021-09-21 (Message-ID
/// `<YUpvVK1C4y66Cj2Q@agluck-desk2.amr.corp.intel.com>`): `0x8000c00000-0x807f7fffff` and
/// `0x10000c00000-0x1007fffffff`. Their sub-leaf registers are written down from those ranges
/// with the SDM layout (module docs); leaf 0, leaf 7 and leaf 0x12.0 are SDM-semantics values
/// for an SGX2 + FLC part (highest leaf 0x1b, max enclave 2^31 / 2^56), not a dump, and the
/// section property (confidentiality only) is the documented one for TME-MK based parts.
fn ice_lake_sp_two_sockets() -> CpuidTable {
    CpuidTable::new(vec![
        (
            0x0,
            0,
            CpuidRegs::new(0x0000_001b, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
        ),
        (
            0x7,
            0,
            CpuidRegs::new(0x0000_0000, 0x0000_0004, 0x4000_0000, 0x0000_0000),
        ),
        (
            0x12,
            0,
            CpuidRegs::new(0x0000_0003, 0x0000_0000, 0x0000_0000, 0x0000_381f),
        ),
        (
            0x12,
            2,
            CpuidRegs::new(0x00c0_0001, 0x0000_0080, 0x7ec0_0002, 0x0000_0000),
        ),
        (
            0x12,
            3,
            CpuidRegs::new(0x00c0_0001, 0x0000_0100, 0x7f40_0002, 0x0000_0000),
        ),
    ])
}

/// AMD EPYC (the CI machine of this project, read with `__cpuid_count`): no SGX.
fn amd_epyc() -> CpuidTable {
    CpuidTable::new(vec![
        (
            0x0,
            0,
            CpuidRegs::new(0x0000_001c, 0x6874_7541, 0x444d_4163, 0x6974_6e65),
        ),
        (
            0x7,
            0,
            CpuidRegs::new(0x0000_0001, 0xf1bf_07ab, 0x0040_5fc6, 0x0000_0110),
        ),
    ])
}

#[test]
fn kaby_lake_r_has_sgx1_without_flc_and_one_93_5_mib_section() {
    let info = decode(&kaby_lake_r_i5_8350u()).unwrap();
    assert!(info.sgx);
    assert!(!info.sgx_lc, "this laptop has no flexible launch control");
    assert!(info.sgx1);
    assert!(!info.sgx2);
    assert_eq!(info.max_enclave_size_32, Some(1 << 31));
    assert_eq!(info.max_enclave_size_64, Some(1 << 36));
    assert_eq!(
        info.epc_sections,
        vec![EpcSection {
            base: 0x4020_0000,
            size: 0x05d8_0000,
            protection: EpcProtection::ConfidentialityIntegrity,
        }]
    );
    // The kernel printed the inclusive range 0x40200000-0x45f7ffff.
    let s = info.epc_sections[0];
    assert_eq!(s.base + s.size - 1, 0x45f7_ffff);
    assert_eq!(info.epc_total_bytes(), 98_041_856); // 93.5 MiB
}

#[test]
fn ice_lake_sp_sums_two_sections_above_4_gib_boundaries() {
    let info = decode(&ice_lake_sp_two_sockets()).unwrap();
    assert!(info.sgx && info.sgx_lc && info.sgx1 && info.sgx2);
    assert_eq!(info.max_enclave_size_64, Some(1 << 56));
    let ranges: Vec<_> = info
        .epc_sections
        .iter()
        .map(|s| (s.base, s.base + s.size - 1))
        .collect();
    assert_eq!(
        ranges,
        vec![
            (0x80_00c0_0000, 0x80_7f7f_ffff),
            (0x100_00c0_0000, 0x100_7fff_ffff)
        ]
    );
    assert_eq!(info.epc_total_bytes(), 0x7ec0_0000 + 0x7f40_0000);
    assert!(
        info.epc_sections
            .iter()
            .all(|s| s.protection == EpcProtection::ConfidentialityOnly)
    );
}

#[test]
fn amd_epyc_has_no_sgx_and_leaf_0x12_is_not_read() {
    // A table that would answer leaf 0x12 with garbage: it must not be consulted.
    let mut t = amd_epyc();
    t = CpuidTable::new({
        let mut e = t.entries.clone();
        e.push((0x12, 2, CpuidRegs::new(0xffff_ffff, 0, 0, 0)));
        e
    });
    let info = decode(&t).unwrap();
    assert_eq!(info, SgxCpuInfo::default());
    assert_eq!(info.epc_total_bytes(), 0);
}

#[test]
fn low_max_leaf_stops_before_leaf_7() {
    let t = CpuidTable::new(vec![
        (0x0, 0, CpuidRegs::new(0x5, 0, 0, 0)),
        (0x7, 0, CpuidRegs::new(0, 0x4, 0, 0)),
    ]);
    assert!(!decode(&t).unwrap().sgx);
}

#[test]
fn reserved_subleaf_type_is_an_error() {
    let t = CpuidTable::new(vec![
        (0x0, 0, CpuidRegs::new(0x12, 0, 0, 0)),
        (0x7, 0, CpuidRegs::new(0, 0x4, 0, 0)),
        (0x12, 0, CpuidRegs::new(1, 0, 0, 0x241f)),
        (0x12, 2, CpuidRegs::new(0x4020_0007, 0, 0x05d8_0001, 0)),
    ]);
    assert!(matches!(
        decode(&t),
        Err(Error::UnknownEpcSubleafType {
            subleaf: 2,
            kind: 7
        })
    ));
}

#[test]
fn sections_stop_at_the_kernel_bound() {
    let mut e = vec![
        (0x0, 0, CpuidRegs::new(0x12, 0, 0, 0)),
        (0x7, 0, CpuidRegs::new(0, 0x4, 0, 0)),
        (0x12, 0, CpuidRegs::new(1, 0, 0, 0)),
    ];
    for sub in 2..20 {
        e.push((0x12, sub, CpuidRegs::new(0x1, 0, 0x0010_0001, 0)));
    }
    let info = decode(&CpuidTable::new(e)).unwrap();
    assert_eq!(
        info.epc_sections.len(),
        usize::try_from(MAX_EPC_SECTIONS).unwrap()
    );
    assert_eq!(info.epc_total_bytes(), 8 << 20);
    assert_eq!(info.max_enclave_size_32, None);
}

proptest! {
    #[test]
    fn encode_section_round_trips(base in 0u64..(1 << 52), size in 1u64..(1 << 52), prop in 1u8..3) {
        let s = EpcSection {
            base: base & !0xfff,
            size: (size & !0xfff).max(0x1000),
            protection: EpcProtection::from_nibble(u32::from(prop)),
        };
        let t = CpuidTable::new(vec![
            (0x0, 0, CpuidRegs::new(0x12, 0, 0, 0)),
            (0x7, 0, CpuidRegs::new(0, 0x4, 0, 0)),
            (0x12, 0, CpuidRegs::new(1, 0, 0, 0)),
            (0x12, 2, encode_section(&s)),
        ]);
        prop_assert_eq!(decode(&t).unwrap().epc_sections, vec![s]);
    }
}
