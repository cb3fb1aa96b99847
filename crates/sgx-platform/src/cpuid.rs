//! Pure decoding of the SGX CPUID leaves (no IO).
//!
//! Layout (Intel SDM Vol. 2A, CPUID, leaf 07H and leaf 12H; the same layout is read by the
//! kernel's `sgx_page_cache_init` and by klauspost/cpuid `hasSGX`):
//!
//! | leaf.sub-leaf | register | bits | meaning |
//! |---|---|---|---|
//! | 0x0.0 | EAX | 31:0 | highest basic leaf |
//! | 0x7.0 | EBX | 2 | SGX supported |
//! | 0x7.0 | ECX | 30 | SGX launch control (flexible launch control, FLC) |
//! | 0x12.0 | EAX | 0 / 1 | SGX1 / SGX2 leaf functions |
//! | 0x12.0 | EBX | 31:0 | MISCSELECT bits that may be set |
//! | 0x12.0 | EDX | 7:0 / 15:8 | log2 of the maximum enclave size outside / inside 64-bit mode |
//! | 0x12.n (n ≥ 2) | EAX | 3:0 | sub-leaf type: 0 = no more sections, 1 = EPC section |
//! | 0x12.n | EAX, EBX | 31:12, 19:0 | section base, bits 31:12 and 51:32 |
//! | 0x12.n | ECX, EDX | 31:12, 19:0 | section size, bits 31:12 and 51:32 |
//! | 0x12.n | ECX | 3:0 | section property: 1 = confidentiality and integrity, 2 = confidentiality only |

use crate::{Error, Result};

/// First sub-leaf of leaf 0x12 that describes an EPC section.
pub const FIRST_EPC_SUBLEAF: u32 = 2;

/// Most EPC sections read. The kernel stops at the same bound (`SGX_MAX_EPC_SECTIONS` = 8 in
/// `arch/x86/kernel/cpu/sgx/sgx.h`); every known part has at most one section per socket.
pub const MAX_EPC_SECTIONS: u32 = 8;

/// Leaf 0x07: structured extended feature flags.
pub const LEAF_EXTENDED_FEATURES: u32 = 0x07;
/// Leaf 0x12: Intel SGX enumeration.
pub const LEAF_SGX: u32 = 0x12;

/// The four output registers of one `cpuid` execution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuidRegs {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

impl CpuidRegs {
    /// Registers from their values in EAX, EBX, ECX, EDX order (the order `cpuid -r` prints).
    #[must_use]
    pub const fn new(eax: u32, ebx: u32, ecx: u32, edx: u32) -> Self {
        Self { eax, ebx, ecx, edx }
    }
}

/// Something that answers `cpuid(leaf, sub-leaf)`: the CPU, or a table of recorded values.
pub trait CpuidSource {
    /// The registers for `leaf` / `subleaf`; all zero for leaves the source does not know.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs;
}

/// A recorded CPUID dump: `(leaf, sub-leaf, registers)`; missing entries read as zero (what a
/// CPU returns for sub-leaves past the end of a leaf).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuidTable {
    entries: Vec<(u32, u32, CpuidRegs)>,
}

impl CpuidTable {
    /// A table from entries.
    #[must_use]
    pub fn new(entries: Vec<(u32, u32, CpuidRegs)>) -> Self {
        Self { entries }
    }
}

impl CpuidSource for CpuidTable {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidRegs {
        self.entries
            .iter()
            .find(|(l, s, _)| *l == leaf && *s == subleaf)
            .map(|(_, _, r)| *r)
            .unwrap_or_default()
    }
}

/// Protection of one EPC section (leaf 0x12 sub-leaf n ≥ 2, `ECX[3:0]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EpcProtection {
    /// 0001b: confidentiality and integrity protection (MEE-based client and E3 parts).
    ConfidentialityIntegrity,
    /// 0010b: confidentiality protection only (TME-MK based Xeon Scalable parts).
    ConfidentialityOnly,
    /// Any other (reserved) encoding, kept as read.
    Reserved(u8),
}

impl EpcProtection {
    fn from_nibble(v: u32) -> Self {
        match v & 0xf {
            1 => Self::ConfidentialityIntegrity,
            2 => Self::ConfidentialityOnly,
            other => Self::Reserved(u8::try_from(other).unwrap_or(u8::MAX)),
        }
    }
}

/// One EPC section as enumerated by CPUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EpcSection {
    /// Physical base address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
    /// Section property.
    pub protection: EpcProtection,
}

/// The SGX capabilities a CPU enumerates.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SgxCpuInfo {
    /// Leaf 7 `EBX[2]`: the CPU implements SGX (it may still be disabled in firmware; then leaf
    /// 0x12 enumerates no EPC).
    pub sgx: bool,
    /// Leaf 7 `ECX[30]`: SGX launch control (FLC), required by the in-kernel driver and DCAP.
    pub sgx_lc: bool,
    /// Leaf 0x12.0 `EAX[0]`: SGX1 leaf functions.
    pub sgx1: bool,
    /// Leaf 0x12.0 `EAX[1]`: SGX2 leaf functions (enclave dynamic memory management).
    pub sgx2: bool,
    /// Leaf 0x12.0 EBX: MISCSELECT bits that may be set.
    pub miscselect: u32,
    /// Maximum enclave size outside 64-bit mode in bytes (from `EDX[7:0]`).
    pub max_enclave_size_32: Option<u64>,
    /// Maximum enclave size in 64-bit mode in bytes (from `EDX[15:8]`).
    pub max_enclave_size_64: Option<u64>,
    /// EPC sections, in sub-leaf order.
    pub epc_sections: Vec<EpcSection>,
}

impl SgxCpuInfo {
    /// Sum of all EPC section sizes in bytes.
    #[must_use]
    pub fn epc_total_bytes(&self) -> u64 {
        // `decode` rejects sums that overflow, so this cannot saturate for decoded values.
        self.epc_sections
            .iter()
            .fold(0u64, |acc, s| acc.saturating_add(s.size))
    }
}

/// Combines the low part (bits 31:12 of `lo`) and the high part (bits 19:0 of `hi`, as
/// address bits 51:32) of a leaf 0x12 base or size.
fn metric(lo: u32, hi: u32) -> u64 {
    u64::from(lo & 0xffff_f000) | (u64::from(hi & 0x000f_ffff) << 32)
}

fn log2_size(v: u32) -> Option<u64> {
    let exp = v & 0xff;
    if exp == 0 {
        return None;
    }
    1u64.checked_shl(exp)
}

/// Decodes leaves 0x0, 0x7 and 0x12 from `src`.
///
/// # Errors
/// [`Error::UnknownEpcSubleafType`] for a reserved sub-leaf type, [`Error::EpcOverflow`] when
/// the section sizes overflow.
pub fn decode(src: &(impl CpuidSource + ?Sized)) -> Result<SgxCpuInfo> {
    let max_leaf = src.cpuid(0, 0).eax;
    let mut info = SgxCpuInfo::default();
    if max_leaf < LEAF_EXTENDED_FEATURES {
        return Ok(info);
    }
    let l7 = src.cpuid(LEAF_EXTENDED_FEATURES, 0);
    info.sgx = l7.ebx & (1 << 2) != 0;
    info.sgx_lc = l7.ecx & (1 << 30) != 0;
    if !info.sgx || max_leaf < LEAF_SGX {
        return Ok(info);
    }
    let l12 = src.cpuid(LEAF_SGX, 0);
    info.sgx1 = l12.eax & 1 != 0;
    info.sgx2 = l12.eax & (1 << 1) != 0;
    info.miscselect = l12.ebx;
    info.max_enclave_size_32 = log2_size(l12.edx);
    info.max_enclave_size_64 = log2_size(l12.edx >> 8);
    let mut total = 0u64;
    for subleaf in FIRST_EPC_SUBLEAF..FIRST_EPC_SUBLEAF.saturating_add(MAX_EPC_SECTIONS) {
        let r = src.cpuid(LEAF_SGX, subleaf);
        match r.eax & 0xf {
            0 => break,
            1 => {
                let section = EpcSection {
                    base: metric(r.eax, r.ebx),
                    size: metric(r.ecx, r.edx),
                    protection: EpcProtection::from_nibble(r.ecx),
                };
                total = total.checked_add(section.size).ok_or(Error::EpcOverflow)?;
                info.epc_sections.push(section);
            }
            kind => return Err(Error::UnknownEpcSubleafType { subleaf, kind }),
        }
    }
    Ok(info)
}

/// Encodes EPC sections back into leaf 0x12 sub-leaf registers (the inverse of [`decode`]'s
/// section step); the simulation uses it so that simulated nodes go through the same decoder.
#[must_use]
pub fn encode_section(section: &EpcSection) -> CpuidRegs {
    let prop = match section.protection {
        EpcProtection::ConfidentialityIntegrity => 1,
        EpcProtection::ConfidentialityOnly => 2,
        EpcProtection::Reserved(v) => u32::from(v & 0xf),
    };
    let lo = |v: u64| u32::try_from(v & 0xffff_f000).unwrap_or(0);
    let hi = |v: u64| u32::try_from((v >> 32) & 0x000f_ffff).unwrap_or(0);
    CpuidRegs::new(
        lo(section.base) | 1,
        hi(section.base),
        lo(section.size) | prop,
        hi(section.size),
    )
}

#[cfg(test)]
mod tests;
