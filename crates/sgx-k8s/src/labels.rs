//! The node label set that describes a node's SGX capabilities.

use std::collections::BTreeMap;

use crate::names;

/// SGX facts about one node, as the platform probe found them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeSgx {
    /// The CPU reports SGX1 (CPUID leaf 0x12, sub-leaf 0, EAX bit 0).
    pub sgx1: bool,
    /// The CPU reports SGX2 / EDMM (EAX bit 1).
    pub sgx2: bool,
    /// Flexible launch control (CPUID leaf 7, ECX bit 30).
    pub flc: bool,
    /// Total EPC in bytes (sum of the EPC sections).
    pub epc_bytes: u64,
}

impl NodeSgx {
    /// Whether pods can use SGX on this node: SGX1 and some EPC.
    #[must_use]
    pub fn capable(&self) -> bool {
        self.sgx1 && self.epc_bytes > 0
    }
}

/// Labels confcom manages on a node, every one always present with `"true"`/`"false"` or a
/// number, so that a label left over from an earlier state is overwritten rather than stale.
///
/// ```
/// use sgx_k8s::labels::{node_labels, NodeSgx};
/// use sgx_k8s::names;
/// let l = node_labels(&NodeSgx { sgx1: true, sgx2: true, flc: true, epc_bytes: 64 << 20 });
/// assert_eq!(l[names::LABEL_SGX_CAPABLE], "true");
/// assert_eq!(l[names::LABEL_EPC_MIB], "64");
/// ```
#[must_use]
pub fn node_labels(node: &NodeSgx) -> BTreeMap<&'static str, String> {
    let flag = |b: bool| if b { "true" } else { "false" }.to_owned();
    let mib = node.epc_bytes.checked_div(names::MIB).unwrap_or(0);
    BTreeMap::from([
        (names::LABEL_SGX_CAPABLE, flag(node.capable())),
        (names::LABEL_SGX2, flag(node.sgx1 && node.sgx2)),
        (names::LABEL_SGX_FLC, flag(node.flc)),
        (names::LABEL_EPC_MIB, mib.to_string()),
    ])
}

/// Every label key [`node_labels`] may set (for clean-up when confcom is removed).
pub const MANAGED_LABELS: [&str; 4] = [
    names::LABEL_SGX_CAPABLE,
    names::LABEL_SGX2,
    names::LABEL_SGX_FLC,
    names::LABEL_EPC_MIB,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_sgx_node_is_labelled_incapable() {
        let l = node_labels(&NodeSgx::default());
        assert_eq!(l[names::LABEL_SGX_CAPABLE], "false");
        assert_eq!(l[names::LABEL_EPC_MIB], "0");
        assert_eq!(l.len(), MANAGED_LABELS.len());
        assert!(MANAGED_LABELS.iter().all(|k| l.contains_key(k)));
        // SGX without EPC (disabled in BIOS) is not capable.
        let l = node_labels(&NodeSgx {
            sgx1: true,
            epc_bytes: 0,
            ..NodeSgx::default()
        });
        assert_eq!(l[names::LABEL_SGX_CAPABLE], "false");
    }
}
