//! Arbitrary and damaged bodies: the handler answers 200 or 400, never 500, never panics.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use serde_json::Value;
use tower::ServiceExt;
use webhook::{AppState, router};

use crate::review_body;

fn status_of(body: Vec<u8>) -> StatusCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let req = Request::post("/mutate").body(Body::from(body)).unwrap();
        router(AppState::new()).oneshot(req).await.unwrap().status()
    })
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        Just(Value::String("1.5Gi".into())),
        Just(Value::String("100m".into())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z./]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer of a document.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_bytes_never_500(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let s = status_of(body);
        prop_assert!(s == StatusCode::OK || s == StatusCode::BAD_REQUEST, "{s}");
    }

    #[test]
    fn damaged_reviews_never_500(
        file in prop::sample::select(vec!["aesmd-multi-container", "epc-single-container", "sidecar-init-containers", "no-sgx-odd-quantities"]),
        pick in any::<prop::sample::Index>(),
        replacement in any_json(),
    ) {
        let mut review: Value = serde_json::from_str(&review_body(file)).unwrap();
        let mut all = Vec::new();
        pointers(&review, String::new(), &mut all);
        let target = pick.get(&all).clone();
        *review.pointer_mut(&target).unwrap() = replacement;
        let s = status_of(serde_json::to_vec(&review).unwrap());
        prop_assert!(s == StatusCode::OK || s == StatusCode::BAD_REQUEST, "{target}: {s}");
    }
}
