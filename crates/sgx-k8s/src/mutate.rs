//! The admission rules of the mutating webhook, as pure functions over kube-core types.
//!
//! For a pod being created:
//!
//! 1. Every container and init container that requests EPC ([`names::EPC`] in bytes or
//!    [`names::AZURE_EPC_MIB`] in MiB) gets `sgx.intel.com/enclave: 1` in its requests and
//!    limits, unless already present. EPC requests must equal limits (EPC cannot be
//!    overcommitted); otherwise the pod is denied with a message that says so. A container
//!    whose EPC is zero requests no SGX.
//! 2. Quote wiring is opted in per pod by `sgx.intel.com/quote-provider: aesmd` (Intel's name)
//!    or `confcom.io/quote-helper: "true"`: the EPC containers mount the node's
//!    `/var/run/aesmd` (hostPath, `DirectoryOrCreate`) at `/var/run/aesmd` and get
//!    `SGX_AESM_ADDR=1`. When `sgx.intel.com/quote-provider` names a container of the pod,
//!    that container alone also gets `sgx.intel.com/provision: 1` (it runs its own quoting
//!    service). A warning (never a denial) is returned when the named container does not
//!    exist or requests no EPC, and when a container named `aesmd` runs beside other EPC
//!    containers: Intel's webhook would give that "sidecar" a pod-local emptyDir, confcom
//!    always mounts the node's directory.
//! 3. The pod is annotated with its total EPC (`sgx.intel.com/epc`, a binary quantity such as
//!    `12Mi`): the pod's *effective* EPC request as the scheduler computes it (regular
//!    containers and sidecars add up; a regular init container counts at its peak).
//! 4. Pods that request no EPC pass unchanged and are never denied, whatever their other
//!    resources or annotations hold.
//! 5. The rules are idempotent: applying the patch and running them again yields no patch, so
//!    `reinvocationPolicy: IfNeeded` is safe.
//!
//! JSON Patch paths create missing parents (`resources`, `requests`, `limits`, `env`,
//! `volumeMounts`, `volumes`, `annotations`) and escape `/` in keys as `~1`.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements, Volume};
use kube_core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde_json::{Map, Value, json};

use crate::names;
use crate::quantity;

/// Why a pod is denied. The Display text is what the user sees from `kubectl`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An EPC request differs from its limit.
    #[error(
        "container {container:?}: {resource} request ({request}) must equal its limit ({limit}); SGX EPC cannot be overcommitted"
    )]
    RequestLimitMismatch {
        /// Container name.
        container: String,
        /// Resource name.
        resource: &'static str,
        /// The request as written.
        request: String,
        /// The limit as written.
        limit: String,
    },
    /// An EPC request has no limit.
    #[error(
        "container {container:?}: {resource} request ({request}) has no limit; EPC requests must equal limits"
    )]
    MissingLimit {
        /// Container name.
        container: String,
        /// Resource name.
        resource: &'static str,
        /// The request as written.
        request: String,
    },
    /// An EPC quantity could not be read as a whole number.
    #[error("container {container:?}: {resource} {field} {value:?} is invalid: {reason}")]
    InvalidQuantity {
        /// Container name.
        container: String,
        /// Resource name.
        resource: &'static str,
        /// `request` or `limit`.
        field: &'static str,
        /// The quantity as written.
        value: String,
        /// What is wrong with it.
        reason: quantity::Error,
    },
    /// The pod's EPC adds up beyond 64 bits.
    #[error("the pod's total EPC does not fit in 64 bits")]
    TotalTooLarge,
}

/// Result of the admission rules.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the webhook answers for an admitted pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mutation {
    /// The JSON Patch to apply, or `None` when the pod stays as it is.
    pub patch: Option<Patch>,
    /// Warnings for the user (`kubectl` prints them), e.g. a quote provider that names no
    /// container of the pod.
    pub warnings: Vec<String>,
}

const INIT_CONTAINERS: &str = "initContainers";
const CONTAINERS: &str = "containers";
const ONE: &str = "1";

/// One container of the pod with its EPC.
struct Slot<'a> {
    list: &'static str,
    index: usize,
    container: &'a Container,
    epc: u64,
    sidecar: bool,
}

/// Runs the rules on an admission request: only `CREATE` of an object mutates.
pub fn mutate(req: &AdmissionRequest<Pod>) -> Result<Mutation> {
    match (&req.operation, &req.object) {
        (Operation::Create, Some(pod)) => mutate_pod(pod),
        _ => Ok(Mutation::default()),
    }
}

/// Builds the admission response for a request: allowed with a patch (and warnings), allowed
/// unchanged, or denied with the reason.
#[must_use]
pub fn review(req: &AdmissionRequest<Pod>) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    match mutate(req) {
        Err(deny) => {
            let message = deny.to_string();
            let mut response = response.deny(&message);
            // 403 Forbidden, as the API server reports webhook denials by default.
            response.result = kube_core::Status::failure(&message, "Forbidden").with_code(403);
            response
        }
        Ok(Mutation { patch, warnings }) => {
            let mut response = response;
            if !warnings.is_empty() {
                response.warnings = Some(warnings);
            }
            match patch {
                None => response,
                Some(patch) => match response.clone().with_patch(patch) {
                    Ok(patched) => patched,
                    // Serialising a patch of plain JSON values cannot fail; if it ever did,
                    // admitting the pod unchanged is what failurePolicy Ignore would do.
                    Err(_) => response,
                },
            }
        }
    }
}

/// Runs the rules on a pod.
pub fn mutate_pod(pod: &Pod) -> Result<Mutation> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(Mutation::default());
    };
    let mut slots = Vec::new();
    for (list, containers) in [
        (
            INIT_CONTAINERS,
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        (CONTAINERS, spec.containers.as_slice()),
    ] {
        for (index, container) in containers.iter().enumerate() {
            slots.push(Slot {
                list,
                index,
                container,
                epc: container_epc(container)?,
                sidecar: list == INIT_CONTAINERS
                    && container.restart_policy.as_deref() == Some("Always"),
            });
        }
    }
    if slots.iter().all(|s| s.epc == 0) {
        return Ok(Mutation::default());
    }

    let annotations = pod.metadata.annotations.as_ref();
    let provider = annotations
        .and_then(|a| a.get(names::QUOTE_PROVIDER_ANNOTATION))
        .map(String::as_str)
        .filter(|p| !p.is_empty());
    let helper = annotations
        .and_then(|a| a.get(names::QUOTE_HELPER_ANNOTATION))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let wire_aesmd = helper || provider == Some(names::QUOTE_PROVIDER_AESMD);

    let mut warnings = Vec::new();
    if let Some(name) = provider {
        match slots.iter().find(|s| s.container.name == name) {
            None if name != names::QUOTE_PROVIDER_AESMD => warnings.push(format!(
                "{}={name:?} names no container of this pod; no container gets {}",
                names::QUOTE_PROVIDER_ANNOTATION,
                names::PROVISION
            )),
            Some(s) if s.epc == 0 => warnings.push(format!(
                "{} names container {name:?}, which requests no EPC; it gets no SGX devices",
                names::QUOTE_PROVIDER_ANNOTATION
            )),
            // (the named container requests EPC here: the arm above took the other case)
            Some(_)
                if name == names::QUOTE_PROVIDER_AESMD
                    && slots.iter().filter(|s| s.epc > 0).count() > 1 =>
            {
                // Intel's webhook switches to an in-pod emptyDir ("aesmd sidecar") here; confcom
                // always mounts the node's directory, so the sidecar's socket lands on the node.
                warnings.push(format!(
                    "container \"{name}\" looks like an aesmd sidecar; confcom mounts the node's {} (hostPath), not a pod-local emptyDir",
                    names::AESMD_SOCKET_DIR
                ));
            }
            _ => {}
        }
    }

    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let existing_volume = volumes.iter().find(|v| {
        v.host_path
            .as_ref()
            .is_some_and(|h| same_dir(&h.path, names::AESMD_SOCKET_DIR))
    });
    let volume_name = match existing_volume {
        Some(v) => v.name.clone(),
        None => free_volume_name(volumes),
    };

    let mut ops = Vec::new();
    let mut mount_added = false;
    for slot in slots.iter().filter(|s| s.epc > 0) {
        let mut base = PointerBuf::from_tokens(["spec", slot.list]);
        base.push_back(slot.index);
        let c = slot.container;

        let mut needed = vec![names::ENCLAVE];
        if provider == Some(c.name.as_str()) {
            needed.push(names::PROVISION);
        }
        resource_ops(&mut ops, &base, c.resources.as_ref(), &needed);

        if wire_aesmd {
            let mounted = c.volume_mounts.as_ref().is_some_and(|ms| {
                ms.iter()
                    .any(|m| same_dir(&m.mount_path, names::AESMD_SOCKET_DIR))
            });
            if !mounted {
                append(
                    &mut ops,
                    child(&base, &["volumeMounts"]),
                    c.volume_mounts.is_some(),
                    json!({ "name": volume_name, "mountPath": names::AESMD_SOCKET_DIR }),
                );
                mount_added = true;
            }
            let has_env = c
                .env
                .as_ref()
                .is_some_and(|es| es.iter().any(|e| e.name == names::SGX_AESM_ADDR_ENV));
            if !has_env {
                append(
                    &mut ops,
                    child(&base, &["env"]),
                    c.env.is_some(),
                    json!({ "name": names::SGX_AESM_ADDR_ENV, "value": names::SGX_AESM_ADDR_VALUE }),
                );
            }
        }
    }
    if mount_added && existing_volume.is_none() {
        append(
            &mut ops,
            PointerBuf::from_tokens(["spec", "volumes"]),
            spec.volumes.is_some(),
            json!({
                "name": volume_name,
                "hostPath": { "path": names::AESMD_SOCKET_DIR, "type": "DirectoryOrCreate" },
            }),
        );
    }

    let total = quantity::format_binary(effective_epc(&slots)?);
    match annotations {
        None => add(
            &mut ops,
            PointerBuf::from_tokens(["metadata", "annotations"]),
            json!({ names::EPC_ANNOTATION: total }),
        ),
        Some(a) => {
            let path = PointerBuf::from_tokens(["metadata", "annotations", names::EPC_ANNOTATION]);
            match a.get(names::EPC_ANNOTATION) {
                Some(v) if *v == total => {}
                Some(_) => ops.push(PatchOperation::Replace(ReplaceOperation {
                    path,
                    value: Value::String(total),
                })),
                None => add(&mut ops, path, Value::String(total)),
            }
        }
    }

    Ok(Mutation {
        patch: (!ops.is_empty()).then_some(Patch(ops)),
        warnings,
    })
}

/// The container's EPC in bytes (both EPC resources added up), checking request == limit.
fn container_epc(c: &Container) -> Result<u64> {
    let resources = c.resources.as_ref();
    let requests = resources.and_then(|r| r.requests.as_ref());
    let limits = resources.and_then(|r| r.limits.as_ref());
    let parse = |resource: &'static str, field: &'static str, value: &str| {
        quantity::parse_whole(value).map_err(|reason| Error::InvalidQuantity {
            container: c.name.clone(),
            resource,
            field,
            value: value.to_owned(),
            reason,
        })
    };
    let mut total: u64 = 0;
    for resource in names::EPC_RESOURCES {
        let request = requests.and_then(|m| m.get(resource)).map(|q| q.0.as_str());
        let limit = limits.and_then(|m| m.get(resource)).map(|q| q.0.as_str());
        let amount = match (request, limit) {
            (None, None) => continue,
            (Some(r), None) => {
                if parse(resource, "request", r)? == 0 {
                    continue;
                }
                return Err(Error::MissingLimit {
                    container: c.name.clone(),
                    resource,
                    request: r.to_owned(),
                });
            }
            // The API server defaults a missing request to the limit before admission.
            (None, Some(l)) => parse(resource, "limit", l)?,
            (Some(r), Some(l)) => {
                let (rv, lv) = (parse(resource, "request", r)?, parse(resource, "limit", l)?);
                if rv != lv {
                    return Err(Error::RequestLimitMismatch {
                        container: c.name.clone(),
                        resource,
                        request: r.to_owned(),
                        limit: l.to_owned(),
                    });
                }
                lv
            }
        };
        let bytes = if resource == names::AZURE_EPC_MIB {
            amount.checked_mul(names::MIB).ok_or(Error::TotalTooLarge)?
        } else {
            amount
        };
        total = total.checked_add(bytes).ok_or(Error::TotalTooLarge)?;
    }
    Ok(total)
}

/// The pod's effective EPC request, as the scheduler sums resources: regular containers and
/// sidecar init containers (`restartPolicy: Always`) add up; a regular init container runs
/// alone with the sidecars started before it.
fn effective_epc(slots: &[Slot<'_>]) -> Result<u64> {
    let (mut regular, mut sidecars, mut init_peak) = (0u64, 0u64, 0u64);
    for s in slots {
        if s.list == CONTAINERS {
            regular = regular.checked_add(s.epc).ok_or(Error::TotalTooLarge)?;
        } else if s.sidecar {
            sidecars = sidecars.checked_add(s.epc).ok_or(Error::TotalTooLarge)?;
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(sidecars.checked_add(s.epc).ok_or(Error::TotalTooLarge)?);
        }
    }
    Ok(regular
        .checked_add(sidecars)
        .ok_or(Error::TotalTooLarge)?
        .max(init_peak))
}

/// Adds `value: "1"` for each needed resource missing from requests and from limits, creating
/// `resources`, `requests` and `limits` when absent.
fn resource_ops(
    ops: &mut Vec<PatchOperation>,
    base: &PointerBuf,
    resources: Option<&ResourceRequirements>,
    needed: &[&'static str],
) {
    let missing = |map: Option<&std::collections::BTreeMap<String, _>>| -> Map<String, Value> {
        needed
            .iter()
            .filter(|k| !map.is_some_and(|m| m.contains_key(**k)))
            .map(|k| ((*k).to_owned(), Value::String(ONE.to_owned())))
            .collect()
    };
    let requests = missing(resources.and_then(|r| r.requests.as_ref()));
    let limits = missing(resources.and_then(|r| r.limits.as_ref()));
    let Some(resources) = resources else {
        let mut whole = Map::new();
        for (field, map) in [("requests", requests), ("limits", limits)] {
            if !map.is_empty() {
                whole.insert(field.to_owned(), Value::Object(map));
            }
        }
        if !whole.is_empty() {
            add(ops, child(base, &["resources"]), Value::Object(whole));
        }
        return;
    };
    for (field, present, map) in [
        ("requests", resources.requests.is_some(), requests),
        ("limits", resources.limits.is_some(), limits),
    ] {
        if map.is_empty() {
            continue;
        }
        if present {
            for (key, value) in map {
                add(ops, child(base, &["resources", field, key.as_str()]), value);
            }
        } else {
            add(ops, child(base, &["resources", field]), Value::Object(map));
        }
    }
}

/// First of `aesmd-socket`, `aesmd-socket-1`, … that no volume of the pod uses.
fn free_volume_name(volumes: &[Volume]) -> String {
    let taken = |name: &str| volumes.iter().any(|v| v.name == name);
    if !taken(names::AESMD_VOLUME_NAME) {
        return names::AESMD_VOLUME_NAME.to_owned();
    }
    (1..)
        .map(|n: u64| format!("{}-{n}", names::AESMD_VOLUME_NAME))
        .find(|name| !taken(name))
        .unwrap_or_default() // unreachable: an unbounded range finds a free name
}

fn same_dir(path: &str, dir: &str) -> bool {
    let trimmed = path.trim_end_matches('/');
    trimmed == dir
}

fn child(base: &PointerBuf, tokens: &[&str]) -> PointerBuf {
    let mut p = base.clone();
    for t in tokens {
        p.push_back(*t);
    }
    p
}

fn add(ops: &mut Vec<PatchOperation>, path: PointerBuf, value: Value) {
    ops.push(PatchOperation::Add(AddOperation { path, value }));
}

/// Appends one item to the array at `path`, creating the array when it is absent.
fn append(ops: &mut Vec<PatchOperation>, path: PointerBuf, present: bool, item: Value) {
    if present {
        add(ops, child(&path, &["-"]), item);
    } else {
        add(ops, path, Value::Array(vec![item]));
    }
}
