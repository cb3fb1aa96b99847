//! The node registrar: publishes EPC capacity and SGX labels on this process's own Node, and
//! puts them back when the kubelet (which zeroes extended resources when its device-manager
//! checkpoint is missing) or anyone else resets them.
//!
//! RBAC it needs, nothing more: `get`, `watch`, `patch` on `nodes`, and `patch` on
//! `nodes/status` (see [`RBAC_RULES`]). It never lists nodes: it GETs its own Node and WATCHes
//! it with a `metadata.name` field selector from that resource version.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, WatchEvent, WatchParams};
use serde_json::json;
use sgx_k8s::labels::{NodeSgx, node_labels};
use sgx_k8s::names;
use sgx_platform::PlatformReport;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::{Error, Result};

/// Field manager of our patches.
pub const FIELD_MANAGER: &str = "confcom-device-plugin";

/// The RBAC rules the registrar needs, as `(apiGroup, resource, verbs)`.
pub const RBAC_RULES: [(&str, &str, &[&str]); 2] = [
    ("", "nodes", &["get", "watch", "patch"]),
    ("", "nodes/status", &["patch"]),
];

/// What the registrar keeps on the Node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// `status.capacity` entries (extended resources), values as quantity strings.
    pub capacity: BTreeMap<String, String>,
    /// `metadata.labels` entries (empty when labels go to an NFD feature file instead).
    pub labels: BTreeMap<String, String>,
}

impl Desired {
    /// The desired state for a node: `sgx.intel.com/epc` in bytes (when there is EPC), the
    /// Azure MiB resource when `publish_mib` (it does not fit in `ListAndWatch`), and the SGX
    /// labels when `with_labels`.
    #[must_use]
    pub fn for_report(report: &PlatformReport, publish_mib: bool, with_labels: bool) -> Self {
        let epc = report.epc_bytes();
        let mut capacity = BTreeMap::new();
        if epc > 0 {
            capacity.insert(names::EPC.to_owned(), epc.to_string());
            if publish_mib {
                capacity.insert(
                    names::AZURE_EPC_MIB.to_owned(),
                    (epc / names::MIB).to_string(),
                );
            }
        }
        let labels = if with_labels {
            label_set(report)
        } else {
            BTreeMap::new()
        };
        Self { capacity, labels }
    }

    /// Whether `node`'s status capacity lacks a desired entry (or has another value).
    #[must_use]
    pub fn capacity_differs(&self, node: &Node) -> bool {
        let cap = node.status.as_ref().and_then(|s| s.capacity.as_ref());
        !self
            .capacity
            .iter()
            .all(|(k, v)| cap.and_then(|c| c.get(k)).is_some_and(|q| q.0 == *v))
    }

    /// Whether `node` lacks a desired label (or has another value).
    #[must_use]
    pub fn labels_differ(&self, node: &Node) -> bool {
        let labels = node.metadata.labels.as_ref();
        !self
            .labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    }

    /// Whether `node` lacks anything desired.
    #[must_use]
    pub fn needs_apply(&self, node: &Node) -> bool {
        self.capacity_differs(node) || self.labels_differ(node)
    }

    /// The merge patch for the `nodes/status` subresource.
    #[must_use]
    pub fn status_patch(&self) -> serde_json::Value {
        json!({ "status": { "capacity": self.capacity } })
    }

    /// The merge patch for the node's labels.
    #[must_use]
    pub fn labels_patch(&self) -> serde_json::Value {
        json!({ "metadata": { "labels": self.labels } })
    }
}

/// The labels for a node: sgx-k8s's managed set plus NFD's `cpu-security.sgx.enabled` when
/// the node can run enclaves.
#[must_use]
pub fn label_set(report: &PlatformReport) -> BTreeMap<String, String> {
    let sgx = NodeSgx {
        sgx1: report.cpu.sgx1,
        sgx2: report.cpu.sgx2,
        flc: report.cpu.sgx_lc,
        epc_bytes: report.epc_bytes(),
    };
    let mut labels: BTreeMap<String, String> = node_labels(&sgx)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    if sgx.capable() {
        labels.insert(names::LABEL_NFD_SGX_ENABLED.to_owned(), "true".to_owned());
    }
    labels
}

/// Timings of the registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarTiming {
    /// Delay after an API failure.
    pub retry: Duration,
    /// Server-side timeout of one watch; the registrar re-GETs and re-watches after it.
    pub watch_timeout_secs: u32,
}

impl Default for RegistrarTiming {
    fn default() -> Self {
        Self {
            retry: Duration::from_secs(5),
            watch_timeout_secs: 290,
        }
    }
}

async fn ensure(
    api: &Api<Node>,
    name: &str,
    node: &Node,
    desired: &Desired,
    metrics: &Metrics,
) -> Result<bool> {
    if !desired.needs_apply(node) {
        return Ok(false);
    }
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let result = async {
        if desired.capacity_differs(node) {
            api.patch_status(name, &pp, &Patch::Merge(desired.status_patch()))
                .await
                .map_err(Error::Kube)?;
        }
        if desired.labels_differ(node) {
            api.patch(name, &pp, &Patch::Merge(desired.labels_patch()))
                .await
                .map_err(Error::Kube)?;
        }
        Ok::<_, Error>(())
    }
    .await;
    metrics.node_patch(result.is_ok());
    result?;
    tracing::info!(
        node = name,
        capacity = ?desired.capacity,
        labels = desired.labels.len(),
        "node capacity and labels (re)applied"
    );
    Ok(true)
}

/// Runs `f` unless `shutdown` flips first (`None` then).
async fn or_stop<F: std::future::Future>(
    f: F,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<F::Output> {
    if *shutdown.borrow() {
        return None;
    }
    tokio::select! {
        out = f => Some(out),
        _ = shutdown.changed() => None,
    }
}

/// Keeps `desired` on the Node `name` until `shutdown` flips.
pub async fn run(
    api: Api<Node>,
    name: String,
    desired: Desired,
    metrics: Metrics,
    timing: RegistrarTiming,
    mut shutdown: watch::Receiver<bool>,
) {
    let sleep_or_stop = |d: Duration, mut s: watch::Receiver<bool>| async move {
        tokio::select! {
            () = tokio::time::sleep(d) => false,
            _ = s.changed() => true,
        }
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        // GET: apply if needed, and learn the resource version to watch from.
        let Some(got) = or_stop(api.get(&name), &mut shutdown).await else {
            return;
        };
        let node = match got {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(node = %name, error = %crate::error_chain(&e), "cannot get own node; retrying");
                if sleep_or_stop(timing.retry, shutdown.clone()).await {
                    return;
                }
                continue;
            }
        };
        let Some(applied) = or_stop(
            ensure(&api, &name, &node, &desired, &metrics),
            &mut shutdown,
        )
        .await
        else {
            return;
        };
        if let Err(e) = applied {
            tracing::warn!(node = %name, error = %crate::error_chain(&e), "cannot patch own node; retrying");
            if sleep_or_stop(timing.retry, shutdown.clone()).await {
                return;
            }
            continue;
        }
        let rv = node.metadata.resource_version.clone().unwrap_or_default();
        let wp = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(timing.watch_timeout_secs);
        let Some(watched) = or_stop(api.watch(&wp, &rv), &mut shutdown).await else {
            return;
        };
        let stream = match watched {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(node = %name, error = %crate::error_chain(&e), "cannot watch own node; retrying");
                if sleep_or_stop(timing.retry, shutdown.clone()).await {
                    return;
                }
                continue;
            }
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            let ev = tokio::select! {
                ev = stream.next() => ev,
                _ = shutdown.changed() => return,
            };
            match ev {
                Some(Ok(WatchEvent::Added(n) | WatchEvent::Modified(n))) => {
                    let Some(applied) =
                        or_stop(ensure(&api, &name, &n, &desired, &metrics), &mut shutdown).await
                    else {
                        return;
                    };
                    if let Err(e) = applied {
                        tracing::warn!(node = %name, error = %crate::error_chain(&e), "cannot patch own node");
                        break;
                    }
                }
                Some(Ok(WatchEvent::Bookmark(_))) => {}
                Some(Ok(WatchEvent::Deleted(_))) => {
                    tracing::info!(node = %name, "own node deleted; waiting for it to come back");
                    break;
                }
                Some(Ok(WatchEvent::Error(e))) => {
                    tracing::debug!(node = %name, code = e.code, "watch ended by the api server");
                    break;
                }
                Some(Err(e)) => {
                    tracing::debug!(node = %name, error = %crate::error_chain(&e), "watch failed");
                    break;
                }
                None => break,
            }
        }
        // Watch ended (timeout, error): a short pause keeps a flapping API server from spinning.
        if sleep_or_stop(
            Duration::from_millis(200).min(timing.retry),
            shutdown.clone(),
        )
        .await
        {
            return;
        }
    }
}

/// Writes the labels as an NFD local feature file (`<dir>/confcom-sgx`, one `key=value` per
/// line), atomically (temp file + rename).
///
/// # Errors
/// [`Error::Nfd`] when the file cannot be written.
pub fn write_nfd_features(dir: &std::path::Path, labels: &BTreeMap<String, String>) -> Result<()> {
    let path = dir.join("confcom-sgx");
    let tmp = dir.join(".confcom-sgx.tmp");
    let mut body = String::from("# written by confcom device-plugin; do not edit\n");
    for (k, v) in labels {
        body.push_str(k);
        body.push('=');
        body.push_str(v);
        body.push('\n');
    }
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| Error::Nfd { path, source })
}
