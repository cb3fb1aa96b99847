//! TCB info (v2, v3) and QE identity (v2): parsing and evaluation as Intel's QVL specifies.

use serde::Deserialize;

use crate::error::{Item, VerifyError};
use crate::verdict::{TcbStatus, UnixTime};

/// Most TCB levels accepted in one document (real ones have ~10–30).
const MAX_TCB_LEVELS: usize = 512;

fn bad(item: Item, reason: impl Into<String>) -> VerifyError {
    VerifyError::MalformedJson {
        item,
        reason: reason.into(),
    }
}

pub(crate) fn parse_date(s: &str, item: Item) -> Result<UnixTime, VerifyError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| bad(item, format!("date {s:?}: {e}")))?;
    u64::try_from(t.unix_timestamp())
        .map(UnixTime)
        .map_err(|_| bad(item, format!("date {s:?} before 1970")))
}

fn hex_array<const N: usize>(s: &str, item: Item, field: &str) -> Result<[u8; N], VerifyError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|e| bad(item, format!("{field}: {e}")))?;
    Ok(out)
}

fn status(s: &str, item: Item) -> Result<TcbStatus, VerifyError> {
    TcbStatus::from_intel(s).ok_or_else(|| VerifyError::UnsupportedCollateral {
        item,
        reason: format!("TCB status {s:?}"),
    })
}

// ---- TCB info ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTcbInfo {
    #[serde(default)]
    id: Option<String>,
    version: u32,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    #[serde(default)]
    tcb_type: u32,
    #[serde(default)]
    tcb_evaluation_data_number: u32,
    tcb_levels: Vec<RawTcbLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTcbLevel {
    tcb: RawTcb,
    tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct RawComponent {
    svn: u8,
}

#[derive(Deserialize)]
struct RawTcb {
    // v3
    #[serde(default)]
    sgxtcbcomponents: Option<Vec<RawComponent>>,
    #[serde(default)]
    tdxtcbcomponents: Option<Vec<RawComponent>>,
    // v2
    sgxtcbcomp01svn: Option<u8>,
    sgxtcbcomp02svn: Option<u8>,
    sgxtcbcomp03svn: Option<u8>,
    sgxtcbcomp04svn: Option<u8>,
    sgxtcbcomp05svn: Option<u8>,
    sgxtcbcomp06svn: Option<u8>,
    sgxtcbcomp07svn: Option<u8>,
    sgxtcbcomp08svn: Option<u8>,
    sgxtcbcomp09svn: Option<u8>,
    sgxtcbcomp10svn: Option<u8>,
    sgxtcbcomp11svn: Option<u8>,
    sgxtcbcomp12svn: Option<u8>,
    sgxtcbcomp13svn: Option<u8>,
    sgxtcbcomp14svn: Option<u8>,
    sgxtcbcomp15svn: Option<u8>,
    sgxtcbcomp16svn: Option<u8>,
    pcesvn: u16,
}

/// Which TEE a TCB info describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcbId {
    Sgx,
    Tdx,
}

/// One TCB level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TcbLevel {
    pub(crate) sgx: [u8; 16],
    pub(crate) pcesvn: u16,
    /// TDX components (TCB info v3 with id TDX); unused for SGX quotes.
    pub(crate) tdx: Option<[u8; 16]>,
    pub(crate) status: TcbStatus,
    pub(crate) advisory_ids: Vec<String>,
}

/// A parsed TCB info.
#[derive(Clone, Debug)]
pub(crate) struct TcbInfo {
    pub(crate) id: TcbId,
    /// 2 or 3.
    #[allow(dead_code)]
    pub(crate) version: u32,
    pub(crate) issue_date: UnixTime,
    pub(crate) next_update: UnixTime,
    pub(crate) fmspc: [u8; 6],
    pub(crate) pce_id: [u8; 2],
    pub(crate) tcb_evaluation_data_number: u32,
    /// Sorted highest first, as Intel's QVL orders them.
    pub(crate) levels: Vec<TcbLevel>,
}

fn components(v: &[RawComponent], item: Item) -> Result<[u8; 16], VerifyError> {
    let mut out = [0u8; 16];
    if v.len() != out.len() {
        return Err(bad(
            item,
            format!("{} TCB components, expected 16", v.len()),
        ));
    }
    for (o, c) in out.iter_mut().zip(v) {
        *o = c.svn;
    }
    Ok(out)
}

impl TcbInfo {
    pub(crate) fn parse(json: &str) -> Result<TcbInfo, VerifyError> {
        const I: Item = Item::TcbInfo;
        let raw: RawTcbInfo = serde_json::from_str(json).map_err(|e| bad(I, e.to_string()))?;
        let id = match (raw.version, raw.id.as_deref()) {
            (2, None | Some("SGX")) => TcbId::Sgx,
            (3, Some("SGX")) => TcbId::Sgx,
            (3, Some("TDX")) => TcbId::Tdx,
            (v, id) => {
                return Err(VerifyError::UnsupportedCollateral {
                    item: I,
                    reason: format!("version {v} id {id:?}"),
                });
            }
        };
        if raw.tcb_type != 0 {
            return Err(VerifyError::UnsupportedCollateral {
                item: I,
                reason: format!("tcbType {}", raw.tcb_type),
            });
        }
        if raw.tcb_levels.len() > MAX_TCB_LEVELS {
            return Err(bad(I, "too many TCB levels"));
        }
        let mut levels = Vec::with_capacity(raw.tcb_levels.len());
        for l in raw.tcb_levels {
            let t = &l.tcb;
            let sgx = if raw.version >= 3 {
                let c = t
                    .sgxtcbcomponents
                    .as_deref()
                    .ok_or_else(|| bad(I, "TCB level without sgxtcbcomponents"))?;
                components(c, I)?
            } else {
                let v2 = [
                    t.sgxtcbcomp01svn,
                    t.sgxtcbcomp02svn,
                    t.sgxtcbcomp03svn,
                    t.sgxtcbcomp04svn,
                    t.sgxtcbcomp05svn,
                    t.sgxtcbcomp06svn,
                    t.sgxtcbcomp07svn,
                    t.sgxtcbcomp08svn,
                    t.sgxtcbcomp09svn,
                    t.sgxtcbcomp10svn,
                    t.sgxtcbcomp11svn,
                    t.sgxtcbcomp12svn,
                    t.sgxtcbcomp13svn,
                    t.sgxtcbcomp14svn,
                    t.sgxtcbcomp15svn,
                    t.sgxtcbcomp16svn,
                ];
                let mut out = [0u8; 16];
                for (o, c) in out.iter_mut().zip(v2) {
                    *o = c.ok_or_else(|| bad(I, "TCB level misses an sgxtcbcompNNsvn"))?;
                }
                out
            };
            let tdx = match (&id, t.tdxtcbcomponents.as_deref()) {
                (TcbId::Tdx, Some(c)) => Some(components(c, I)?),
                (TcbId::Tdx, None) => return Err(bad(I, "TDX TCB level without tdxtcbcomponents")),
                _ => None,
            };
            levels.push(TcbLevel {
                sgx,
                pcesvn: t.pcesvn,
                tdx,
                status: status(&l.tcb_status, I)?,
                advisory_ids: l.advisory_ids,
            });
        }
        // QVL keeps levels in a set ordered from the highest TCB down: by the 16 SGX SVNs, then PCESVN, then TDX.
        levels.sort_by_key(|l| std::cmp::Reverse((l.sgx, l.pcesvn, l.tdx)));
        Ok(TcbInfo {
            id,
            version: raw.version,
            issue_date: parse_date(&raw.issue_date, I)?,
            next_update: parse_date(&raw.next_update, I)?,
            fmspc: hex_array(&raw.fmspc, I, "fmspc")?,
            pce_id: hex_array(&raw.pce_id, I, "pceId")?,
            tcb_evaluation_data_number: raw.tcb_evaluation_data_number,
            levels,
        })
    }

    /// The first (highest) level whose 16 SGX components and PCESVN are all ≤ the platform's.
    pub(crate) fn sgx_level(&self, comp_svn: &[u8; 16], pce_svn: u16) -> Option<&TcbLevel> {
        self.levels
            .iter()
            .find(|l| comp_svn.iter().zip(l.sgx.iter()).all(|(p, l)| p >= l) && pce_svn >= l.pcesvn)
    }
}

// ---- QE identity ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawQeIdentity {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    #[serde(default)]
    tcb_evaluation_data_number: u32,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<RawQeLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawQeLevel {
    tcb: RawIsvSvn,
    tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct RawIsvSvn {
    isvsvn: u16,
}

/// A QE identity TCB level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QeLevel {
    pub(crate) isvsvn: u16,
    pub(crate) status: TcbStatus,
    pub(crate) advisory_ids: Vec<String>,
}

/// A parsed QE identity (v2).
#[derive(Clone, Debug)]
pub(crate) struct QeIdentity {
    pub(crate) id: String,
    pub(crate) issue_date: UnixTime,
    pub(crate) next_update: UnixTime,
    #[allow(dead_code)]
    pub(crate) tcb_evaluation_data_number: u32,
    /// Report byte order (little-endian u32 in memory).
    pub(crate) miscselect: [u8; 4],
    pub(crate) miscselect_mask: [u8; 4],
    pub(crate) attributes: [u8; 16],
    pub(crate) attributes_mask: [u8; 16],
    pub(crate) mrsigner: [u8; 32],
    pub(crate) isvprodid: u16,
    /// Sorted by ISVSVN, highest first.
    pub(crate) levels: Vec<QeLevel>,
}

impl QeIdentity {
    pub(crate) fn parse(json: &str) -> Result<QeIdentity, VerifyError> {
        const I: Item = Item::QeIdentity;
        let raw: RawQeIdentity = serde_json::from_str(json).map_err(|e| bad(I, e.to_string()))?;
        if raw.version != 2 {
            return Err(VerifyError::UnsupportedCollateral {
                item: I,
                reason: format!("version {}", raw.version),
            });
        }
        if raw.tcb_levels.len() > MAX_TCB_LEVELS {
            return Err(bad(I, "too many TCB levels"));
        }
        let mut levels = Vec::with_capacity(raw.tcb_levels.len());
        for l in raw.tcb_levels {
            levels.push(QeLevel {
                isvsvn: l.tcb.isvsvn,
                status: status(&l.tcb_status, I)?,
                advisory_ids: l.advisory_ids,
            });
        }
        levels.sort_by_key(|l| std::cmp::Reverse(l.isvsvn));
        Ok(QeIdentity {
            id: raw.id,
            issue_date: parse_date(&raw.issue_date, I)?,
            next_update: parse_date(&raw.next_update, I)?,
            tcb_evaluation_data_number: raw.tcb_evaluation_data_number,
            miscselect: hex_array(&raw.miscselect, I, "miscselect")?,
            miscselect_mask: hex_array(&raw.miscselect_mask, I, "miscselectMask")?,
            attributes: hex_array(&raw.attributes, I, "attributes")?,
            attributes_mask: hex_array(&raw.attributes_mask, I, "attributesMask")?,
            mrsigner: hex_array(&raw.mrsigner, I, "mrsigner")?,
            isvprodid: raw.isvprodid,
            levels,
        })
    }

    /// The first level (highest ISVSVN first) with isvsvn ≤ the QE's.
    pub(crate) fn level(&self, isv_svn: u16) -> Option<&QeLevel> {
        self.levels.iter().find(|l| l.isvsvn <= isv_svn)
    }
}

fn masked_eq(value: &[u8], expected: &[u8], mask: &[u8]) -> bool {
    value.len() == expected.len()
        && value.len() == mask.len()
        && value
            .iter()
            .zip(expected)
            .zip(mask)
            .all(|((v, e), m)| v & m == e & m)
}

/// The QE report fields the identity constrains.
pub(crate) struct QeReportFields<'a> {
    pub(crate) misc_select: [u8; 4],
    pub(crate) attributes: [u8; 16],
    pub(crate) mr_signer: &'a [u8; 32],
    pub(crate) isv_prod_id: u16,
}

/// Checks a QE report against the identity (QVL order: MISCSELECT, ATTRIBUTES, MRSIGNER, ISVPRODID).
pub(crate) fn check_qe_identity(q: &QeIdentity, r: &QeReportFields<'_>) -> Result<(), VerifyError> {
    let mismatch = |field| Err(VerifyError::QeIdentityMismatch { field });
    if !masked_eq(&r.misc_select, &q.miscselect, &q.miscselect_mask) {
        return mismatch("MISCSELECT");
    }
    if !masked_eq(&r.attributes, &q.attributes, &q.attributes_mask) {
        return mismatch("ATTRIBUTES");
    }
    if r.mr_signer != &q.mrsigner {
        return mismatch("MRSIGNER");
    }
    if r.isv_prod_id != q.isvprodid {
        return mismatch("ISVPRODID");
    }
    Ok(())
}

/// Merges the platform status with the QE's (QVL convergence rules).
pub(crate) fn merge(platform: TcbStatus, qe: TcbStatus) -> TcbStatus {
    use TcbStatus::*;
    match qe {
        Revoked => Revoked,
        OutOfDate => match platform {
            UpToDate | SwHardeningNeeded => OutOfDate,
            ConfigurationNeeded | ConfigurationAndSwHardeningNeeded => OutOfDateConfigurationNeeded,
            other => other,
        },
        _ => platform,
    }
}

/// Platform advisories, then the QE's not already listed.
pub(crate) fn union(platform: &[String], qe: &[String]) -> Vec<String> {
    let mut out = platform.to_vec();
    for a in qe {
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcbStatus::*;

    #[test]
    fn merge_follows_qvl() {
        assert_eq!(merge(UpToDate, UpToDate), UpToDate);
        assert_eq!(merge(SwHardeningNeeded, OutOfDate), OutOfDate);
        assert_eq!(
            merge(ConfigurationNeeded, OutOfDate),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(
            merge(ConfigurationAndSwHardeningNeeded, OutOfDate),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(merge(OutOfDate, OutOfDate), OutOfDate);
        assert_eq!(merge(ConfigurationNeeded, Revoked), Revoked);
        assert_eq!(merge(Revoked, UpToDate), Revoked);
        assert_eq!(merge(ConfigurationNeeded, UpToDate), ConfigurationNeeded);
    }

    #[test]
    fn union_keeps_platform_order_and_dedups() {
        let p = vec!["A".to_owned(), "B".to_owned()];
        let q = vec!["B".to_owned(), "C".to_owned()];
        assert_eq!(union(&p, &q), vec!["A", "B", "C"]);
    }

    #[test]
    fn level_selection_requires_all_components_and_pcesvn() {
        let lvl = |c0: u8, pce: u16, s| TcbLevel {
            sgx: [c0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            pcesvn: pce,
            tdx: None,
            status: s,
            advisory_ids: vec![],
        };
        let info = TcbInfo {
            id: TcbId::Sgx,
            version: 3,
            issue_date: UnixTime(0),
            next_update: UnixTime(1),
            fmspc: [0; 6],
            pce_id: [0; 2],
            tcb_evaluation_data_number: 1,
            levels: vec![
                lvl(5, 10, UpToDate),
                lvl(3, 10, SwHardeningNeeded),
                lvl(3, 5, OutOfDate),
            ],
        };
        let mut c = [0u8; 16];
        c[0] = 5;
        c[1] = 1;
        assert_eq!(info.sgx_level(&c, 10).unwrap().status, UpToDate);
        assert_eq!(info.sgx_level(&c, 9).unwrap().status, OutOfDate);
        c[1] = 0; // component 2 below every level
        assert!(info.sgx_level(&c, 10).is_none());
        c[1] = 1;
        c[0] = 4;
        assert_eq!(info.sgx_level(&c, 10).unwrap().status, SwHardeningNeeded);
    }

    #[test]
    fn masks_apply_bytewise() {
        // Bit 2 (MODE64BIT) is masked out; bit 1 (DEBUG) is not.
        assert!(masked_eq(&[0x15, 0], &[0x11, 0], &[0xfb, 0xff]));
        assert!(!masked_eq(&[0x13, 0], &[0x11, 0], &[0xfb, 0xff]));
        assert!(!masked_eq(&[0x11, 1], &[0x11, 0], &[0xfb, 0xff]));
    }
}
