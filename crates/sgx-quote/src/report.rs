//! SGX `REPORT` (432 B), `REPORT` body (384 B) and `TARGETINFO` (512 B), with typed fields.
//!
//! Layouts follow the Intel SDK headers (`sgx_report.h`: `sgx_report_body_t`,
//! `sgx_report_t`, `sgx_target_info_t`) and the "Enclave Report Body" table of the Intel SGX
//! ECDSA Quote Library API (DCAP quote format, Appendix A). Integers are little-endian.
//! Reserved bytes must be zero: the parsers reject anything else so encoding is canonical.

use crate::{QuoteError, Reader};

/// Size of an SGX report body (`sgx_report_body_t`).
pub const REPORT_BODY_LEN: usize = 384;
/// Size of an SGX `REPORT` (`sgx_report_t`): body, key id, MAC.
pub const REPORT_LEN: usize = 432;
/// Size of an SGX `TARGETINFO` (`sgx_target_info_t`).
pub const TARGET_INFO_LEN: usize = 512;

/// `CPUSVN` (16 bytes): the opaque security version of the CPU microcode and firmware.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuSvn(pub [u8; 16]);

/// `MISCSELECT`: extended SSA frame features the enclave selected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MiscSelect(pub u32);

/// `MRENCLAVE`: SHA-256 measurement of the enclave's contents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MrEnclave(pub [u8; 32]);

/// `MRSIGNER`: SHA-256 of the enclave signer's RSA modulus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MrSigner(pub [u8; 32]);

/// `REPORTDATA`: 64 bytes chosen by the enclave (often a hash binding a key or nonce).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReportData(pub [u8; 64]);

impl Default for ReportData {
    fn default() -> Self {
        Self([0; 64])
    }
}

/// `ATTRIBUTES` (`sgx_attributes_t`): 64-bit flags followed by the 64-bit XFRM mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// `FLAGS` (bits below).
    pub flags: u64,
    /// `XFRM`: the XSAVE feature request mask.
    pub xfrm: u64,
}

impl Attributes {
    /// `INIT` (bit 0): the enclave has been initialised by EINIT.
    pub const INIT: u64 = 1 << 0;
    /// `DEBUG` (bit 1): the enclave is a debug enclave; its memory can be read by the host.
    pub const DEBUG: u64 = 1 << 1;
    /// `MODE64BIT` (bit 2): the enclave runs in 64-bit mode.
    pub const MODE64BIT: u64 = 1 << 2;
    /// `PROVISIONKEY` (bit 4): the enclave may derive the provisioning key.
    pub const PROVISIONKEY: u64 = 1 << 4;
    /// `EINITTOKEN_KEY` (bit 5): the enclave may derive the launch (EINIT token) key.
    pub const EINITTOKEN_KEY: u64 = 1 << 5;
    /// `KSS` (bit 7): Key Separation and Sharing is enabled.
    pub const KSS: u64 = 1 << 7;
    /// `AEXNOTIFY` (bit 10): the enclave may be notified of asynchronous exits.
    pub const AEXNOTIFY: u64 = 1 << 10;

    /// Whether `DEBUG` is set.
    pub fn is_debug(&self) -> bool {
        self.flags & Self::DEBUG != 0
    }
    /// Whether `MODE64BIT` is set.
    pub fn is_mode64bit(&self) -> bool {
        self.flags & Self::MODE64BIT != 0
    }
    /// Whether `PROVISIONKEY` is set.
    pub fn has_provision_key(&self) -> bool {
        self.flags & Self::PROVISIONKEY != 0
    }
    /// Whether `KSS` is set.
    pub fn has_kss(&self) -> bool {
        self.flags & Self::KSS != 0
    }

    /// The 16 wire bytes (flags then XFRM, little-endian).
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0; 16];
        let (f, x) = out.split_at_mut(8);
        f.copy_from_slice(&self.flags.to_le_bytes());
        x.copy_from_slice(&self.xfrm.to_le_bytes());
        out
    }

    fn read(r: &mut Reader<'_>, field: &'static str) -> Result<Self, QuoteError> {
        Ok(Self {
            flags: r.u64_le(field)?,
            xfrm: r.u64_le(field)?,
        })
    }
}

/// The SGX report body (`sgx_report_body_t`, 384 bytes): what `EREPORT` says about an
/// enclave. Also the layout of the QE report inside a quote's signature data.
///
/// | off | size | field |
/// |---|---|---|
/// | 0 | 16 | `CPUSVN` |
/// | 16 | 4 | `MISCSELECT` |
/// | 20 | 12 | reserved |
/// | 32 | 16 | `ISVEXTPRODID` |
/// | 48 | 16 | `ATTRIBUTES` |
/// | 64 | 32 | `MRENCLAVE` |
/// | 96 | 32 | reserved |
/// | 128 | 32 | `MRSIGNER` |
/// | 160 | 32 | reserved |
/// | 192 | 64 | `CONFIGID` |
/// | 256 | 2 | `ISVPRODID` |
/// | 258 | 2 | `ISVSVN` |
/// | 260 | 2 | `CONFIGSVN` |
/// | 262 | 42 | reserved |
/// | 304 | 16 | `ISVFAMILYID` |
/// | 320 | 64 | `REPORTDATA` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReportBody {
    /// `CPUSVN` at offset 0.
    pub cpu_svn: CpuSvn,
    /// `MISCSELECT` at offset 16.
    pub misc_select: MiscSelect,
    /// `ISVEXTPRODID` at offset 32 (KSS extended product id).
    pub isv_ext_prod_id: [u8; 16],
    /// `ATTRIBUTES` at offset 48.
    pub attributes: Attributes,
    /// `MRENCLAVE` at offset 64.
    pub mr_enclave: MrEnclave,
    /// `MRSIGNER` at offset 128.
    pub mr_signer: MrSigner,
    /// `CONFIGID` at offset 192 (KSS).
    pub config_id: [u8; 64],
    /// `ISVPRODID` at offset 256.
    pub isv_prod_id: u16,
    /// `ISVSVN` at offset 258.
    pub isv_svn: u16,
    /// `CONFIGSVN` at offset 260 (KSS).
    pub config_svn: u16,
    /// `ISVFAMILYID` at offset 304 (KSS).
    pub isv_family_id: [u8; 16],
    /// `REPORTDATA` at offset 320.
    pub report_data: ReportData,
}

impl Default for ReportBody {
    fn default() -> Self {
        Self {
            cpu_svn: CpuSvn::default(),
            misc_select: MiscSelect::default(),
            isv_ext_prod_id: [0; 16],
            attributes: Attributes::default(),
            mr_enclave: MrEnclave::default(),
            mr_signer: MrSigner::default(),
            config_id: [0; 64],
            isv_prod_id: 0,
            isv_svn: 0,
            config_svn: 0,
            isv_family_id: [0; 16],
            report_data: ReportData::default(),
        }
    }
}

impl ReportBody {
    /// Parses exactly [`REPORT_BODY_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, QuoteError> {
        check_len("report body", REPORT_BODY_LEN, bytes)?;
        Reader::read_all(bytes, Self::read)
    }

    /// Reads a report body from `r`.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, QuoteError> {
        let cpu_svn = CpuSvn(r.take_array("report_body.cpu_svn")?);
        let misc_select = MiscSelect(r.u32_le("report_body.misc_select")?);
        r.reserved::<12>("report_body.reserved1")?;
        let isv_ext_prod_id = r.take_array("report_body.isv_ext_prod_id")?;
        let attributes = Attributes::read(r, "report_body.attributes")?;
        let mr_enclave = MrEnclave(r.take_array("report_body.mr_enclave")?);
        r.reserved::<32>("report_body.reserved2")?;
        let mr_signer = MrSigner(r.take_array("report_body.mr_signer")?);
        r.reserved::<32>("report_body.reserved3")?;
        let config_id = r.take_array("report_body.config_id")?;
        let isv_prod_id = r.u16_le("report_body.isv_prod_id")?;
        let isv_svn = r.u16_le("report_body.isv_svn")?;
        let config_svn = r.u16_le("report_body.config_svn")?;
        r.reserved::<42>("report_body.reserved4")?;
        let isv_family_id = r.take_array("report_body.isv_family_id")?;
        let report_data = ReportData(r.take_array("report_body.report_data")?);
        Ok(Self {
            cpu_svn,
            misc_select,
            isv_ext_prod_id,
            attributes,
            mr_enclave,
            mr_signer,
            config_id,
            isv_prod_id,
            isv_svn,
            config_svn,
            isv_family_id,
            report_data,
        })
    }

    /// Appends the 384 wire bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cpu_svn.0);
        out.extend_from_slice(&self.misc_select.0.to_le_bytes());
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&self.isv_ext_prod_id);
        out.extend_from_slice(&self.attributes.to_bytes());
        out.extend_from_slice(&self.mr_enclave.0);
        out.extend_from_slice(&[0; 32]);
        out.extend_from_slice(&self.mr_signer.0);
        out.extend_from_slice(&[0; 32]);
        out.extend_from_slice(&self.config_id);
        out.extend_from_slice(&self.isv_prod_id.to_le_bytes());
        out.extend_from_slice(&self.isv_svn.to_le_bytes());
        out.extend_from_slice(&self.config_svn.to_le_bytes());
        out.extend_from_slice(&[0; 42]);
        out.extend_from_slice(&self.isv_family_id);
        out.extend_from_slice(&self.report_data.0);
    }

    /// The 384 wire bytes.
    pub fn to_bytes(&self) -> [u8; REPORT_BODY_LEN] {
        let mut v = Vec::with_capacity(REPORT_BODY_LEN);
        self.write(&mut v);
        to_array(&v)
    }
}

/// An SGX `REPORT` (`sgx_report_t`, 432 bytes): body, `KEYID` and the CMAC over the body
/// keyed with the target enclave's report key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Report {
    /// The report body (offset 0).
    pub body: ReportBody,
    /// `KEYID` (offset 384): value for key wear-out protection.
    pub key_id: [u8; 32],
    /// `MAC` (offset 416): AES-CMAC over the body.
    pub mac: [u8; 16],
}

impl Report {
    /// Parses exactly [`REPORT_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, QuoteError> {
        check_len("report", REPORT_LEN, bytes)?;
        Reader::read_all(bytes, |r| {
            Ok(Self {
                body: ReportBody::read(r)?,
                key_id: r.take_array("report.key_id")?,
                mac: r.take_array("report.mac")?,
            })
        })
    }

    /// The 432 wire bytes.
    pub fn to_bytes(&self) -> [u8; REPORT_LEN] {
        let mut v = Vec::with_capacity(REPORT_LEN);
        self.body.write(&mut v);
        v.extend_from_slice(&self.key_id);
        v.extend_from_slice(&self.mac);
        to_array(&v)
    }
}

/// An SGX `TARGETINFO` (`sgx_target_info_t`, 512 bytes): identifies the enclave a `REPORT`
/// is targeted at (here: the Quoting Enclave).
///
/// | off | size | field |
/// |---|---|---|
/// | 0 | 32 | `MRENCLAVE` |
/// | 32 | 16 | `ATTRIBUTES` |
/// | 48 | 2 | reserved |
/// | 50 | 2 | `CONFIGSVN` |
/// | 52 | 4 | `MISCSELECT` |
/// | 56 | 8 | reserved |
/// | 64 | 64 | `CONFIGID` |
/// | 128 | 384 | reserved |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TargetInfo {
    /// `MRENCLAVE` of the target enclave.
    pub mr_enclave: MrEnclave,
    /// `ATTRIBUTES` of the target enclave.
    pub attributes: Attributes,
    /// `CONFIGSVN` of the target enclave.
    pub config_svn: u16,
    /// `MISCSELECT` of the target enclave.
    pub misc_select: MiscSelect,
    /// `CONFIGID` of the target enclave.
    pub config_id: [u8; 64],
}

impl Default for TargetInfo {
    fn default() -> Self {
        Self {
            mr_enclave: MrEnclave::default(),
            attributes: Attributes::default(),
            config_svn: 0,
            misc_select: MiscSelect::default(),
            config_id: [0; 64],
        }
    }
}

impl TargetInfo {
    /// Parses exactly [`TARGET_INFO_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, QuoteError> {
        check_len("target info", TARGET_INFO_LEN, bytes)?;
        Reader::read_all(bytes, |r| {
            let mr_enclave = MrEnclave(r.take_array("target_info.mr_enclave")?);
            let attributes = Attributes::read(r, "target_info.attributes")?;
            r.reserved::<2>("target_info.reserved1")?;
            let config_svn = r.u16_le("target_info.config_svn")?;
            let misc_select = MiscSelect(r.u32_le("target_info.misc_select")?);
            r.reserved::<8>("target_info.reserved2")?;
            let config_id = r.take_array("target_info.config_id")?;
            r.reserved::<384>("target_info.reserved3")?;
            Ok(Self {
                mr_enclave,
                attributes,
                config_svn,
                misc_select,
                config_id,
            })
        })
    }

    /// The 512 wire bytes.
    pub fn to_bytes(&self) -> [u8; TARGET_INFO_LEN] {
        let mut v = Vec::with_capacity(TARGET_INFO_LEN);
        v.extend_from_slice(&self.mr_enclave.0);
        v.extend_from_slice(&self.attributes.to_bytes());
        v.extend_from_slice(&[0; 2]);
        v.extend_from_slice(&self.config_svn.to_le_bytes());
        v.extend_from_slice(&self.misc_select.0.to_le_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&self.config_id);
        v.extend_from_slice(&[0; 384]);
        to_array(&v)
    }
}

fn check_len(what: &'static str, expected: usize, bytes: &[u8]) -> Result<(), QuoteError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(QuoteError::InvalidLength {
            what,
            expected,
            actual: bytes.len(),
        })
    }
}

/// Copies `v` into an array; `v` always has length `N` at the call sites (zero-filled otherwise).
fn to_array<const N: usize>(v: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    for (o, b) in out.iter_mut().zip(v) {
        *o = *b;
    }
    out
}
