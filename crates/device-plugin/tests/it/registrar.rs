//! The node registrar against a mocked API server (`tower-test`, as kube's `mock_tests.rs`):
//! it GETs its Node, patches status capacity and labels, watches the Node and re-applies the
//! capacity when a watch event shows it reset.

use std::time::Duration;

use device_plugin::metrics::Metrics;
use device_plugin::registrar::{self, Desired, RegistrarTiming};
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Node;
use kube::client::Body;
use serde_json::{Value, json};
use sgx_platform::{Platform, SimPlatform};
use tokio::sync::watch;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn node(rv: &str, epc: Option<&str>, labels: Value) -> Value {
    let mut capacity = json!({ "cpu": "8", "memory": "32Gi", "pods": "110" });
    if let Some(e) = epc {
        capacity["sgx.intel.com/epc"] = json!(e);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": "node-a", "resourceVersion": rv, "labels": labels },
        "status": { "capacity": capacity }
    })
}

async fn next(
    handle: &mut Handle,
) -> (
    Method,
    String,
    Value,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("registrar made no request within 10 s")
        .expect("client dropped");
    let method = req.method().clone();
    let uri = req.uri().to_string();
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (method, uri, body, send)
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, v: &Value) {
    send.send_response(Response::new(Body::from(serde_json::to_vec(v).unwrap())));
}

#[tokio::test]
async fn registrar_patches_capacity_and_labels_and_reapplies_after_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimPlatform::new(8 << 30, dir.path());
    sim.create_device_nodes().unwrap();
    let report = sim.probe().unwrap();
    let desired = Desired::for_report(&report, false, true);

    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let api: kube::Api<Node> = kube::Api::all(client);
    let (tx, rx) = watch::channel(false);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(&mut registry);
    let timing = RegistrarTiming {
        retry: Duration::from_millis(50),
        watch_timeout_secs: 5,
    };
    let task = tokio::spawn(registrar::run(
        api,
        "node-a".into(),
        desired,
        metrics,
        timing,
        rx,
    ));

    // 1. GET own node: no EPC, no SGX labels.
    let (m, uri, _, send) = next(&mut handle).await;
    assert_eq!((m, uri.as_str()), (Method::GET, "/api/v1/nodes/node-a"));
    respond(
        send,
        &node("10", None, json!({"kubernetes.io/hostname": "node-a"})),
    );

    // 2. The status capacity patch: EPC in bytes.
    let (m, uri, body, send) = next(&mut handle).await;
    assert_eq!(m, Method::PATCH);
    assert_eq!(
        uri,
        "/api/v1/nodes/node-a/status?&fieldManager=confcom-device-plugin"
    );
    assert_eq!(
        body,
        json!({ "status": { "capacity": { "sgx.intel.com/epc": "8589934592" } } })
    );
    respond(send, &node("11", Some("8589934592"), json!({})));

    // 3. The label patch.
    let (m, uri, body, send) = next(&mut handle).await;
    assert_eq!(m, Method::PATCH);
    assert_eq!(
        uri,
        "/api/v1/nodes/node-a?&fieldManager=confcom-device-plugin"
    );
    let labels = json!({
        "sgx.intel.com/capable": "true",
        "confcom.io/sgx2": "true",
        "confcom.io/sgx-flc": "true",
        "confcom.io/sgx-epc-mib": "8192",
        "feature.node.kubernetes.io/cpu-security.sgx.enabled": "true"
    });
    assert_eq!(body, json!({ "metadata": { "labels": labels } }));
    let mut full_labels = labels.clone();
    full_labels["kubernetes.io/hostname"] = json!("node-a");
    respond(send, &node("12", Some("8589934592"), full_labels.clone()));

    // 4. Watch of its own node only (get/watch/patch RBAC: no list), from the GET's version.
    let (m, uri, _, send) = next(&mut handle).await;
    assert_eq!(m, Method::GET);
    assert!(uri.starts_with("/api/v1/nodes?"), "{uri}");
    assert!(uri.contains("watch=true"), "{uri}");
    assert!(
        uri.contains("fieldSelector=metadata.name%3Dnode-a"),
        "{uri}"
    );
    assert!(uri.contains("resourceVersion=10"), "{uri}");
    // An unrelated update (no action), then the kubelet zeroing extended resources.
    let events = [
        json!({"type": "MODIFIED", "object": node("13", Some("8589934592"), full_labels.clone())}),
        json!({"type": "MODIFIED", "object": node("14", None, full_labels.clone())}),
    ];
    let mut stream = Vec::new();
    for e in &events {
        stream.extend(serde_json::to_vec(e).unwrap());
        stream.push(b'\n');
    }
    let t0 = std::time::Instant::now();
    send.send_response(Response::new(Body::from(stream)));

    // 5. Re-application of the capacity only (the labels are intact, so no label patch).
    let (m, uri, body, send) = next(&mut handle).await;
    assert_eq!(m, Method::PATCH);
    assert!(uri.starts_with("/api/v1/nodes/node-a/status"), "{uri}");
    assert_eq!(
        body,
        json!({ "status": { "capacity": { "sgx.intel.com/epc": "8589934592" } } })
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    respond(send, &node("15", Some("8589934592"), full_labels.clone()));

    // 6. The watch stream ended: GET again (nothing to do) and watch from the new version.
    let (m, uri, _, send) = next(&mut handle).await;
    assert_eq!((m, uri.as_str()), (Method::GET, "/api/v1/nodes/node-a"));
    respond(send, &node("15", Some("8589934592"), full_labels));
    let (m, uri, _, _send) = next(&mut handle).await;
    assert_eq!(m, Method::GET);
    assert!(
        uri.contains("watch=true") && uri.contains("resourceVersion=15"),
        "{uri}"
    );

    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    assert!(
        out.contains(r#"confcom_device_plugin_node_patches_total{result="ok"} 2"#),
        "{out}"
    );
}

#[tokio::test]
async fn nfd_feature_file_and_mib_fallback_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimPlatform::new(512 << 30, dir.path().join("dev"));
    sim.create_device_nodes().unwrap();
    let report = sim.probe().unwrap();
    let d = Desired::for_report(&report, true, false);
    assert_eq!(d.capacity["sgx.intel.com/epc"], (512u64 << 30).to_string());
    assert_eq!(
        d.capacity["kubernetes.azure.com/sgx_epc_mem_in_MiB"],
        "524288"
    );
    assert!(d.labels.is_empty(), "labels go to the NFD file instead");
    registrar::write_nfd_features(dir.path(), &registrar::label_set(&report)).unwrap();
    let text = std::fs::read_to_string(dir.path().join("confcom-sgx")).unwrap();
    assert!(
        text.contains("feature.node.kubernetes.io/cpu-security.sgx.enabled=true\n"),
        "{text}"
    );
    assert!(text.contains("sgx.intel.com/capable=true\n"), "{text}");
}
