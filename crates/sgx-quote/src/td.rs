//! TDX TD report bodies of DCAP quotes v4/v5: TD report 1.0 (584 B) and 1.5 (648 B).
//!
//! Layout: Intel TDX DCAP Quoting Library API, "TD Quote Body" (v4) and "TD Quote Body
//! Descriptor" / "TD Quote Body v1.5" (v5). Integers are little-endian.

use crate::{QuoteError, Reader, ReportData};

/// Size of a TD report 1.0 quote body.
pub const TD_REPORT10_LEN: usize = 584;
/// Size of a TD report 1.5 quote body.
pub const TD_REPORT15_LEN: usize = 648;

/// A 48-byte SHA-384 measurement (MRTD, RTMRs, MRSEAM, ...).
pub type Measurement384 = [u8; 48];

/// TD quote body 1.0 (584 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TdReport10 {
    /// `TEE_TCB_SVN` at 0: TDX module and SEAM loader SVNs.
    pub tee_tcb_svn: [u8; 16],
    /// `MRSEAM` at 16: measurement of the TDX module.
    pub mr_seam: Measurement384,
    /// `MRSIGNERSEAM` at 64: signer of the TDX module (zero for Intel's).
    pub mr_signer_seam: Measurement384,
    /// `SEAMATTRIBUTES` at 112.
    pub seam_attributes: u64,
    /// `TDATTRIBUTES` at 120 (bit 0 = DEBUG).
    pub td_attributes: u64,
    /// `XFAM` at 128.
    pub xfam: u64,
    /// `MRTD` at 136: measurement of the initial TD contents.
    pub mr_td: Measurement384,
    /// `MRCONFIGID` at 184.
    pub mr_config_id: Measurement384,
    /// `MROWNER` at 232.
    pub mr_owner: Measurement384,
    /// `MROWNERCONFIG` at 280.
    pub mr_owner_config: Measurement384,
    /// `RTMR0..3` at 328, 376, 424, 472.
    pub rtmr: [Measurement384; 4],
    /// `REPORTDATA` at 520.
    pub report_data: ReportData,
}

impl TdReport10 {
    /// `TDATTRIBUTES` bit 0: the TD is in debug mode.
    pub const TD_ATTRIBUTES_DEBUG: u64 = 1;

    /// Whether the TD is a debug TD.
    pub fn is_debug(&self) -> bool {
        self.td_attributes & Self::TD_ATTRIBUTES_DEBUG != 0
    }

    /// Reads a TD report 1.0 from `r`.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, QuoteError> {
        Ok(Self {
            tee_tcb_svn: r.take_array("td_report.tee_tcb_svn")?,
            mr_seam: r.take_array("td_report.mr_seam")?,
            mr_signer_seam: r.take_array("td_report.mr_signer_seam")?,
            seam_attributes: r.u64_le("td_report.seam_attributes")?,
            td_attributes: r.u64_le("td_report.td_attributes")?,
            xfam: r.u64_le("td_report.xfam")?,
            mr_td: r.take_array("td_report.mr_td")?,
            mr_config_id: r.take_array("td_report.mr_config_id")?,
            mr_owner: r.take_array("td_report.mr_owner")?,
            mr_owner_config: r.take_array("td_report.mr_owner_config")?,
            rtmr: [
                r.take_array("td_report.rtmr0")?,
                r.take_array("td_report.rtmr1")?,
                r.take_array("td_report.rtmr2")?,
                r.take_array("td_report.rtmr3")?,
            ],
            report_data: ReportData(r.take_array("td_report.report_data")?),
        })
    }

    /// Appends the 584 wire bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tee_tcb_svn);
        out.extend_from_slice(&self.mr_seam);
        out.extend_from_slice(&self.mr_signer_seam);
        out.extend_from_slice(&self.seam_attributes.to_le_bytes());
        out.extend_from_slice(&self.td_attributes.to_le_bytes());
        out.extend_from_slice(&self.xfam.to_le_bytes());
        out.extend_from_slice(&self.mr_td);
        out.extend_from_slice(&self.mr_config_id);
        out.extend_from_slice(&self.mr_owner);
        out.extend_from_slice(&self.mr_owner_config);
        for m in &self.rtmr {
            out.extend_from_slice(m);
        }
        out.extend_from_slice(&self.report_data.0);
    }
}

/// TD quote body 1.5 (648 bytes): TD report 1.0 followed by two TDX 1.5 fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TdReport15 {
    /// The TD report 1.0 part (offsets 0..584).
    pub base: TdReport10,
    /// `TEE_TCB_SVN2` at 584.
    pub tee_tcb_svn2: [u8; 16],
    /// `MRSERVICETD` at 600: measurement of the bound service TDs.
    pub mr_service_td: Measurement384,
}

impl TdReport15 {
    /// Reads a TD report 1.5 from `r`.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, QuoteError> {
        Ok(Self {
            base: TdReport10::read(r)?,
            tee_tcb_svn2: r.take_array("td_report.tee_tcb_svn2")?,
            mr_service_td: r.take_array("td_report.mr_service_td")?,
        })
    }

    /// Appends the 648 wire bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.base.write(out);
        out.extend_from_slice(&self.tee_tcb_svn2);
        out.extend_from_slice(&self.mr_service_td);
    }
}
