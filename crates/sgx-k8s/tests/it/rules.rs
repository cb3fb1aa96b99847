//! Table tests of the admission rules on AdmissionReview bodies as kube-apiserver sends them
//! (`testdata/admission/*.json`, written by hand from the admission.k8s.io/v1 reference).

use json_patch::Patch;
use k8s_openapi::api::core::v1::Pod;
use kube_core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};
use sgx_k8s::{mutate, mutate_pod, names, review};

enum Expect {
    /// Allowed with no patch and no warnings.
    Unchanged,
    /// Denied; the message contains every string.
    Deny(&'static [&'static str]),
    /// Patched: after applying the patch each pointer holds the value (`null` = absent), and the
    /// warnings contain these strings.
    Patched {
        at: &'static [(&'static str, &'static str)],
        warnings: &'static [&'static str],
    },
}

struct Case {
    file: &'static str,
    expect: Expect,
}

const CASES: &[Case] = &[
    Case {
        file: "epc-single-container",
        expect: Expect::Patched {
            at: &[
                ("/metadata/annotations/sgx.intel.com~1epc", r#""10Mi""#),
                (
                    "/spec/containers/0/resources/requests/sgx.intel.com~1enclave",
                    r#""1""#,
                ),
                (
                    "/spec/containers/0/resources/limits/sgx.intel.com~1enclave",
                    r#""1""#,
                ),
                ("/spec/containers/0/env", "null"),
                ("/spec/volumes/1", "null"),
            ],
            warnings: &[],
        },
    },
    Case {
        file: "aesmd-multi-container",
        expect: Expect::Patched {
            at: &[
                // init container with the Azure MiB resource
                (
                    "/spec/initContainers/0/resources/requests/sgx.intel.com~1enclave",
                    r#""1""#,
                ),
                (
                    "/spec/initContainers/0/resources/limits/sgx.intel.com~1enclave",
                    r#""1""#,
                ),
                (
                    "/spec/initContainers/0/volumeMounts",
                    r#"[{"name":"aesmd-socket-1","mountPath":"/var/run/aesmd"}]"#,
                ),
                (
                    "/spec/initContainers/0/env",
                    r#"[{"name":"SGX_AESM_ADDR","value":"1"}]"#,
                ),
                // existing enclave limits stay, existing env and mounts are appended to
                (
                    "/spec/containers/0/resources/limits/sgx.intel.com~1enclave",
                    r#""1""#,
                ),
                ("/spec/containers/0/resources/limits/cpu", r#""500m""#),
                (
                    "/spec/containers/0/resources/requests/sgx.intel.com~1provision",
                    "null",
                ),
                (
                    "/spec/containers/0/env",
                    r#"[{"name":"LOG_LEVEL","value":"debug"},{"name":"SGX_AESM_ADDR","value":"1"}]"#,
                ),
                (
                    "/spec/containers/0/volumeMounts/1",
                    r#"{"name":"aesmd-socket-1","mountPath":"/var/run/aesmd"}"#,
                ),
                // the container without EPC is left alone
                (
                    "/spec/containers/1/resources/limits/sgx.intel.com~1enclave",
                    "null",
                ),
                ("/spec/containers/1/env", "null"),
                ("/spec/containers/1/volumeMounts", "null"),
                (
                    "/spec/containers/2/resources/requests/sgx.intel.com~1enclave",
                    r#""1""#,
                ),
                (
                    "/spec/containers/2/env",
                    r#"[{"name":"SGX_AESM_ADDR","value":"1"}]"#,
                ),
                // the user's emptyDir named like ours is kept; ours gets a free name
                (
                    "/spec/volumes/0",
                    r#"{"name":"aesmd-socket","emptyDir":{}}"#,
                ),
                (
                    "/spec/volumes/2",
                    r#"{"name":"aesmd-socket-1","hostPath":{"path":"/var/run/aesmd","type":"DirectoryOrCreate"}}"#,
                ),
                // 8Mi + 4Mi of containers; the 4 MiB init container runs before them
                ("/metadata/annotations/sgx.intel.com~1epc", r#""12Mi""#),
                ("/metadata/annotations/prometheus.io~1scrape", r#""true""#),
            ],
            warnings: &[],
        },
    },
    Case {
        file: "provider-names-container",
        expect: Expect::Patched {
            at: &[
                (
                    "/spec/containers/1/resources/requests/sgx.intel.com~1provision",
                    r#""1""#,
                ),
                (
                    "/spec/containers/1/resources/limits/sgx.intel.com~1provision",
                    r#""1""#,
                ),
                (
                    "/spec/containers/1/resources/limits/sgx.intel.com~1enclave",
                    r#""1""#,
                ),
                (
                    "/spec/containers/0/resources/limits/sgx.intel.com~1provision",
                    "null",
                ),
                (
                    "/spec/containers/0/resources/limits/sgx.intel.com~1enclave",
                    r#""1""#,
                ),
                ("/spec/containers/0/env", "null"),
                ("/spec/volumes", "null"),
                ("/metadata/annotations/sgx.intel.com~1epc", r#""3Mi""#),
            ],
            warnings: &[],
        },
    },
    Case {
        file: "provider-missing-container",
        expect: Expect::Patched {
            at: &[
                (
                    "/spec/containers/0/resources/limits/sgx.intel.com~1enclave",
                    r#""1""#,
                ),
                (
                    "/spec/containers/0/resources/limits/sgx.intel.com~1provision",
                    "null",
                ),
                ("/spec/containers/0/env", "null"),
                ("/metadata/annotations/sgx.intel.com~1epc", r#""3Mi""#),
            ],
            warnings: &["no-such-container", "names no container"],
        },
    },
    Case {
        file: "provider-names-non-epc-container",
        expect: Expect::Patched {
            at: &[
                ("/spec/containers/1/resources/limits", "null"),
                (
                    "/spec/containers/0/resources/limits/sgx.intel.com~1provision",
                    "null",
                ),
            ],
            warnings: &["\"sidecar\", which requests no EPC"],
        },
    },
    Case {
        file: "aesmd-sidecar-container",
        expect: Expect::Patched {
            at: &[
                // the container named by the annotation ("aesmd") gets provision too
                (
                    "/spec/containers/1/resources/limits/sgx.intel.com~1provision",
                    r#""1""#,
                ),
                (
                    "/spec/containers/0/resources/limits/sgx.intel.com~1provision",
                    "null",
                ),
                (
                    "/spec/containers/0/env",
                    r#"[{"name":"SGX_AESM_ADDR","value":"1"}]"#,
                ),
                (
                    "/spec/containers/1/env",
                    r#"[{"name":"SGX_AESM_ADDR","value":"1"}]"#,
                ),
                (
                    "/spec/volumes",
                    r#"[{"name":"aesmd-socket","hostPath":{"path":"/var/run/aesmd","type":"DirectoryOrCreate"}}]"#,
                ),
                ("/metadata/annotations/sgx.intel.com~1epc", r#""5Mi""#),
            ],
            warnings: &["looks like an aesmd sidecar"],
        },
    },
    Case {
        file: "quote-helper-existing-hostpath",
        expect: Expect::Patched {
            at: &[
                // the existing hostPath volume (trailing slash) is reused, not duplicated
                (
                    "/spec/containers/0/volumeMounts",
                    r#"[{"name":"node-aesm","mountPath":"/var/run/aesmd"}]"#,
                ),
                ("/spec/volumes/1", "null"),
                // the user's own SGX_AESM_ADDR and mount are respected
                (
                    "/spec/containers/1/env",
                    r#"[{"name":"SGX_AESM_ADDR","value":"0"}]"#,
                ),
                (
                    "/spec/containers/1/volumeMounts",
                    r#"[{"name":"node-aesm","mountPath":"/var/run/aesmd"}]"#,
                ),
                (
                    "/spec/containers/0/env",
                    r#"[{"name":"SGX_AESM_ADDR","value":"1"}]"#,
                ),
                ("/metadata/annotations/sgx.intel.com~1epc", r#""2Mi""#),
            ],
            warnings: &[],
        },
    },
    Case {
        file: "quote-helper-no-volumes",
        expect: Expect::Patched {
            at: &[
                (
                    "/spec/volumes",
                    r#"[{"name":"aesmd-socket","hostPath":{"path":"/var/run/aesmd","type":"DirectoryOrCreate"}}]"#,
                ),
                (
                    "/spec/containers/0/volumeMounts",
                    r#"[{"name":"aesmd-socket","mountPath":"/var/run/aesmd"}]"#,
                ),
                // no requests map at all: created with the enclave only (the API server
                // defaults the EPC request from the limit)
                (
                    "/spec/containers/0/resources/requests",
                    r#"{"sgx.intel.com/enclave":"1"}"#,
                ),
                ("/metadata/annotations/sgx.intel.com~1epc", r#""16Mi""#),
            ],
            warnings: &[],
        },
    },
    Case {
        file: "quote-helper-false",
        expect: Expect::Patched {
            at: &[
                // enclave already in limits: only added to requests
                (
                    "/spec/containers/0/resources/requests/sgx.intel.com~1enclave",
                    r#""1""#,
                ),
                ("/spec/containers/0/env", "null"),
                ("/spec/volumes", "null"),
                // a non-canonical value is replaced by the canonical one
                ("/metadata/annotations/sgx.intel.com~1epc", r#""12Mi""#),
            ],
            warnings: &[],
        },
    },
    Case {
        file: "equal-different-spelling",
        expect: Expect::Patched {
            at: &[("/metadata/annotations/sgx.intel.com~1epc", r#""1537Mi""#)],
            warnings: &[],
        },
    },
    Case {
        file: "sidecar-init-containers",
        expect: Expect::Patched {
            at: &[
                (
                    "/spec/initContainers/0/resources/limits/sgx.intel.com~1enclave",
                    r#""1""#,
                ),
                (
                    "/spec/initContainers/1/resources/limits/sgx.intel.com~1enclave",
                    r#""1""#,
                ),
                (
                    "/spec/containers/1/resources/limits/sgx.intel.com~1enclave",
                    r#""1""#,
                ),
                // max(2 + 64 (init peak), 8 + 8 + 2 (containers + sidecar)) = 66 MiB
                ("/metadata/annotations/sgx.intel.com~1epc", r#""66Mi""#),
            ],
            warnings: &[],
        },
    },
    Case {
        file: "no-sgx-odd-quantities",
        expect: Expect::Unchanged,
    },
    Case {
        file: "no-resources",
        expect: Expect::Unchanged,
    },
    Case {
        file: "no-spec",
        expect: Expect::Unchanged,
    },
    Case {
        file: "zero-epc",
        expect: Expect::Unchanged,
    },
    Case {
        file: "update-operation",
        expect: Expect::Unchanged,
    },
    Case {
        file: "mismatch",
        expect: Expect::Deny(&[
            "container \"app\"",
            "sgx.intel.com/epc request (10Mi) must equal its limit (20Mi)",
        ]),
    },
    Case {
        file: "missing-limit",
        expect: Expect::Deny(&[
            "kubernetes.azure.com/sgx_epc_mem_in_MiB request (10) has no limit",
            "must equal limits",
        ]),
    },
    Case {
        file: "garbage-epc",
        expect: Expect::Deny(&["sgx.intel.com/epc", "\"lots\" is invalid", "not a quantity"]),
    },
    Case {
        file: "milli-epc",
        expect: Expect::Deny(&["\"100m\" is invalid: not a whole number"]),
    },
    Case {
        file: "second-container-invalid",
        expect: Expect::Deny(&["container \"bad\"", "negative"]),
    },
];

fn load(file: &str) -> Value {
    let path = format!(
        "{}/testdata/admission/{file}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn request(body: &Value) -> AdmissionRequest<Pod> {
    let review: AdmissionReview<Pod> = serde_json::from_value(body.clone()).unwrap();
    review.try_into().unwrap()
}

/// Applies a patch to a JSON object, as kube-apiserver does.
fn apply(object: &Value, patch: &Patch) -> Value {
    let mut doc = object.clone();
    json_patch::patch(&mut doc, patch).unwrap();
    doc
}

#[test]
fn admission_rules_table() {
    for case in CASES {
        let body = load(case.file);
        let req = request(&body);
        let resp = review(&req);
        assert_eq!(resp.uid, req.uid, "{}: uid echoed", case.file);
        let outcome = mutate(&req);
        match (&case.expect, outcome) {
            (Expect::Unchanged, Ok(m)) => {
                assert!(resp.allowed, "{}", case.file);
                assert!(resp.patch.is_none(), "{}: {:?}", case.file, m.patch);
                assert_eq!(m, Default::default(), "{}", case.file);
            }
            (Expect::Deny(parts), Err(e)) => {
                assert!(!resp.allowed, "{}", case.file);
                assert_eq!(resp.result.code, 403, "{}", case.file);
                let message = e.to_string();
                assert_eq!(resp.result.message, message);
                for part in *parts {
                    assert!(
                        message.contains(part),
                        "{}: {message:?} lacks {part:?}",
                        case.file
                    );
                }
            }
            (Expect::Patched { at, warnings }, Ok(m)) => {
                assert!(resp.allowed, "{}", case.file);
                let patch = m
                    .patch
                    .clone()
                    .unwrap_or_else(|| panic!("{}: no patch", case.file));
                // The response carries the same patch, JSON-encoded.
                let sent: Patch = serde_json::from_slice(resp.patch.as_ref().unwrap()).unwrap();
                assert_eq!(sent, patch, "{}", case.file);
                let object = &body["request"]["object"];
                let patched = apply(object, &patch);
                for (pointer, want) in *at {
                    let want: Value = serde_json::from_str(want).unwrap();
                    let got = patched.pointer(pointer).cloned().unwrap_or(Value::Null);
                    assert_eq!(got, want, "{}: {pointer}", case.file);
                }
                assert_eq!(
                    m.warnings.len(),
                    usize::from(!warnings.is_empty()),
                    "{}",
                    case.file
                );
                for w in *warnings {
                    assert!(
                        m.warnings.iter().any(|x| x.contains(w)),
                        "{}: {:?}",
                        case.file,
                        m.warnings
                    );
                }
                assert_eq!(resp.warnings.clone().unwrap_or_default(), m.warnings);
                // Idempotent: the patched pod needs no further patch (reinvocation).
                let again: Pod = serde_json::from_value(patched.clone()).unwrap();
                let second = mutate_pod(&again).unwrap();
                assert_eq!(
                    second.patch, None,
                    "{}: second run patched again",
                    case.file
                );
                assert_eq!(second.warnings, m.warnings, "{}", case.file);
            }
            (_, other) => panic!("{}: unexpected outcome {other:?}", case.file),
        }
    }
}

#[test]
fn realistic_pod_matches_the_expected_object_exactly() {
    let body = load("epc-single-container");
    let patch = mutate(&request(&body)).unwrap().patch.unwrap();
    let patched = apply(&body["request"]["object"], &patch);
    assert_eq!(patched, load("epc-single-container.expected"));
}

#[test]
fn patch_paths_escape_slashes_and_create_missing_parents() {
    let body = load("quote-helper-no-volumes");
    let patch = mutate(&request(&body)).unwrap().patch.unwrap();
    let json = serde_json::to_value(&patch).unwrap();
    let paths: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/spec/containers/0/resources/requests",
            "/spec/containers/0/resources/limits/sgx.intel.com~1enclave",
            "/spec/containers/0/volumeMounts",
            "/spec/containers/0/env",
            "/spec/volumes",
            "/metadata/annotations/sgx.intel.com~1epc",
        ]
    );
    assert!(json.as_array().unwrap().iter().all(|op| op["op"] == "add"));
}

#[test]
fn pod_without_annotations_or_resources_object_gets_both_created() {
    // A limit-only container with no `resources.requests` and a pod with no `annotations`.
    let object = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "p" },
        "spec": { "containers": [ { "name": "c", "image": "i",
            "resources": { "limits": { "sgx.intel.com/epc": "5Mi" } } } ] }
    });
    let pod: Pod = serde_json::from_value(object.clone()).unwrap();
    let patched = apply(&object, &mutate_pod(&pod).unwrap().patch.unwrap());
    assert_eq!(
        patched["metadata"]["annotations"],
        json!({ names::EPC_ANNOTATION: "5Mi" })
    );
    assert_eq!(
        patched["spec"]["containers"][0]["resources"]["requests"],
        json!({ names::ENCLAVE: "1" })
    );
}
