//! Property tests: pods without EPC are never touched; SGX pods are patched idempotently.

use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use sgx_k8s::{mutate_pod, names, quantity};

/// Resource names that are not EPC (including the SGX device resources themselves).
const OTHER_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "hugepages-2Mi",
    "nvidia.com/gpu",
    names::ENCLAVE,
    names::PROVISION,
    "example.com/widget",
];

fn any_quantity() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("100m".to_owned()),
        Just("1.5Gi".to_owned()),
        Just("-1".to_owned()),
        "[0-9]{1,4}(\\.[0-9]{1,3})?(m|k|M|G|Ki|Mi|Gi|e3|E-2)?",
        "\\PC{0,10}",
    ]
}

fn resource_map(extra: Vec<(String, String)>) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(prop::sample::select(OTHER_RESOURCES), any_quantity(), 0..4)
        .prop_map(move |m| {
            let mut map: Map<String, Value> = m
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v)))
                .collect();
            for (k, v) in &extra {
                map.insert(k.clone(), Value::String(v.clone()));
            }
            Value::Object(map)
        })
}

/// Optional EPC entries that ask for nothing: zero in any spelling.
fn zero_epc() -> impl Strategy<Value = Vec<(String, String)>> {
    prop_oneof![
        3 => Just(vec![]),
        1 => prop::sample::select(vec!["0", "0Mi", "0.0", "-0", "0e9"])
            .prop_map(|z| vec![(names::EPC.to_owned(), z.to_owned())]),
    ]
}

fn container(name: String, epc: Option<u64>) -> impl Strategy<Value = Value> {
    let has_epc = epc.is_some();
    let epc_entries = match epc {
        Some(bytes) => Just(vec![(
            names::EPC.to_owned(),
            quantity::format_binary(bytes),
        )])
        .boxed(),
        None => zero_epc().boxed(),
    };
    (
        epc_entries,
        any::<u8>(),
        prop::option::of(Just(json!([{ "name": "X", "value": "y" }]))),
        prop::option::of(Just(json!([{ "name": "data", "mountPath": "/data" }]))),
    )
        .prop_flat_map(move |(epc, shape, env, mounts)| {
            (resource_map(epc.clone()), resource_map(epc)).prop_map({
                let name = name.clone();
                move |(requests, limits)| {
                    let mut c = json!({ "name": name, "image": "img" });
                    // An EPC container always has both maps (request = limit) or limits only.
                    let shape = if has_epc { 2 + shape % 2 } else { shape % 4 };
                    match shape {
                        0 => {}
                        1 => c["resources"] = json!({}),
                        2 => c["resources"] = json!({ "limits": limits }),
                        _ => c["resources"] = json!({ "requests": requests, "limits": limits }),
                    }
                    if let Some(env) = &env {
                        c["env"] = env.clone();
                    }
                    if let Some(m) = &mounts {
                        c["volumeMounts"] = m.clone();
                    }
                    c
                }
            })
        })
}

fn annotations() -> impl Strategy<Value = Option<Value>> {
    let value = prop_oneof![
        Just("aesmd".to_owned()),
        Just("true".to_owned()),
        Just("c0".to_owned()),
        Just("i0".to_owned()),
        Just(String::new()),
        "\\PC{0,8}",
    ];
    let key = prop::sample::select(vec![
        names::QUOTE_PROVIDER_ANNOTATION,
        names::QUOTE_HELPER_ANNOTATION,
        names::EPC_ANNOTATION,
        "example.com/note",
    ]);
    prop::option::of(prop::collection::btree_map(key, value, 0..4).prop_map(|m| json!(m)))
}

fn volumes() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop::sample::select(vec![
        json!([]),
        json!([{ "name": "aesmd-socket", "emptyDir": {} }]),
        json!([{ "name": "host", "hostPath": { "path": "/var/run/aesmd" } }]),
        json!([{ "name": "aesmd-socket", "configMap": { "name": "x" } },
               { "name": "aesmd-socket-1", "emptyDir": {} }]),
    ]))
}

/// A pod; `epc` gives each regular container's EPC (`None`: no EPC request).
fn pod(epc: Vec<Option<u64>>, init_epc: Vec<Option<u64>>) -> impl Strategy<Value = Value> {
    let containers: Vec<_> = epc
        .into_iter()
        .enumerate()
        .map(|(i, e)| container(format!("c{i}"), e))
        .collect();
    let inits: Vec<_> = init_epc
        .into_iter()
        .enumerate()
        .map(|(i, e)| container(format!("i{i}"), e))
        .collect();
    (containers, inits, annotations(), volumes()).prop_map(|(cs, is, ann, vols)| {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "p", "namespace": "default" },
            "spec": { "containers": cs }
        });
        if !is.is_empty() {
            pod["spec"]["initContainers"] = Value::Array(is);
        }
        if let Some(a) = ann {
            pod["metadata"]["annotations"] = a;
        }
        if let Some(v) = vols {
            pod["spec"]["volumes"] = v;
        }
        pod
    })
}

fn no_epc_pod() -> impl Strategy<Value = Value> {
    (0usize..4, 0usize..3).prop_flat_map(|(n, m)| pod(vec![None; n], vec![None; m]))
}

fn sgx_pod() -> impl Strategy<Value = (Value, Vec<u64>)> {
    let epc = prop::option::of((1u64..64).prop_map(|mib| mib << 20));
    (
        prop::collection::vec(epc, 1..4),
        prop::collection::vec(prop::option::of(1u64..8), 0..2),
    )
        .prop_filter("some container requests EPC", |(cs, _)| {
            cs.iter().any(Option::is_some)
        })
        .prop_flat_map(|(cs, inits)| {
            let inits: Vec<_> = inits.into_iter().map(|o| o.map(|kib| kib << 10)).collect();
            let sum: u64 = cs.iter().flatten().sum();
            let peaks: Vec<u64> = inits.iter().flatten().copied().collect();
            let expect = peaks.into_iter().fold(sum, u64::max);
            pod(cs, inits).prop_map(move |p| (p, vec![expect]))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pods_without_epc_are_never_denied_or_patched(object in no_epc_pod()) {
        let pod: Pod = serde_json::from_value(object).unwrap();
        let m = mutate_pod(&pod);
        prop_assert!(m.is_ok(), "{m:?}");
        prop_assert_eq!(m.unwrap().patch, None);
    }

    #[test]
    fn sgx_pods_patch_cleanly_and_idempotently((object, expect) in sgx_pod()) {
        let pod: Pod = serde_json::from_value(object.clone()).unwrap();
        let m = mutate_pod(&pod).unwrap();
        let patch = m.patch.unwrap();
        let mut doc = object;
        json_patch::patch(&mut doc, &patch).unwrap();
        let total = quantity::format_binary(expect[0]);
        prop_assert_eq!(
            doc["metadata"]["annotations"][names::EPC_ANNOTATION].as_str(),
            Some(total.as_str())
        );
        let again: Pod = serde_json::from_value(doc).unwrap();
        prop_assert_eq!(mutate_pod(&again).unwrap().patch, None);
    }
}
