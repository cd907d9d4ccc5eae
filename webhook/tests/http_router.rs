//! The whole HTTP path in-process: router, body limit, panic guard, admission logic and the
//! admin endpoints, driven with `tower::ServiceExt::oneshot` and JSON fixtures.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use dragonfly_injector::metrics::Metrics;
use dragonfly_injector::server::pool::ReviewPool;
use dragonfly_injector::server::state::WebhookState;
use dragonfly_injector::server::{admin, webhook};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use test_kit::{apply_response, fixture, review_for};
use tower::ServiceExt;

const IMAGE: &str = "registry.local/tools:v1";

fn state() -> Arc<WebhookState> {
    test_kit::webhook_state("", Some(IMAGE))
}

async fn call(app: Router, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

async fn mutate(state: &Arc<WebhookState>, review: &Value) -> (StatusCode, Value) {
    let (status, body) = call(
        webhook::router(state.clone(), webhook::DEFAULT_MAX_BODY_BYTES),
        "POST",
        "/mutate",
        serde_json::to_vec(review).unwrap(),
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Sends the pod, applies the patch, sends the result again and expects no patch.
async fn inject_twice(state: &Arc<WebhookState>, pod: &Value, namespace: &str) -> (Value, Value) {
    let (status, response) = mutate(state, &review_for(pod, namespace, "uid-1")).await;
    assert_eq!(status, StatusCode::OK);
    let injected = apply_response(pod, &response, "uid-1");
    let (status, again) = mutate(state, &review_for(&injected, namespace, "uid-2")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(again["response"].get("patch").is_none(), "second pass must not patch: {again}");
    (injected, response)
}

#[tokio::test]
async fn an_api_server_shaped_pod_is_injected_and_stays_valid() {
    let state = state();
    let pod = fixture("pod-annotated.json");
    let (injected, response) = inject_twice(&state, &pod, "apps").await;
    assert!(response["response"].get("warnings").is_none(), "{response}");
    let app = &injected["spec"]["containers"][0];
    let env: Vec<&str> = app["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(env, ["HOST_IP", "DRAGONFLY_INJECT_PROXY", "DFGET_TRANSFER_FROM_DFDAEMON", "HTTP_PROXY", "POD_IP"]);
    assert_eq!(injected["spec"]["initContainers"][0]["image"], IMAGE);
    // The service-account volume and mount are untouched, ours come after them.
    assert_eq!(injected["spec"]["volumes"][0], pod["spec"]["volumes"][0]);
    assert_eq!(app["volumeMounts"][0], pod["spec"]["containers"][0]["volumeMounts"][0]);
    assert_eq!(injected["metadata"]["annotations"]["example.com/owner"], "team-a");
    assert!(injected["metadata"]["annotations"]["dragonfly.io/injected"].is_string());
}

#[tokio::test]
async fn a_replicaset_pod_without_namespace_is_judged_by_the_request_namespace() {
    let state = test_kit::webhook_state("excludeNamespaces: [batch]\n", Some(IMAGE));
    let mut pod = fixture("pod-from-replicaset.json");
    pod["metadata"]["annotations"] = json!({"dragonfly.io/inject-p2p": "true"});
    let (_, response) = mutate(&state, &review_for(&pod, "batch", "u")).await;
    assert!(response["response"].get("patch").is_none(), "excluded by the request's namespace");
    let (injected, _) = inject_twice(&state, &pod, "web").await;
    assert_eq!(injected["spec"]["initContainers"][0]["name"], "dragonfly-tools");
    assert!(injected["metadata"].get("namespace").is_none(), "nothing invented");
}

#[tokio::test]
async fn native_sidecars_and_unknown_fields_survive_byte_for_byte() {
    let state = state();
    let pod = fixture("pod-native-sidecar.json");
    let (injected, _) = inject_twice(&state, &pod, "apps").await;
    let init = injected["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(init[0]["name"], "dragonfly-tools");
    assert_eq!(init[1], pod["spec"]["initContainers"][0], "the native sidecar is untouched");
    for key in ["hostUsers", "resourceClaims", "schedulingGates"] {
        assert_eq!(injected["spec"][key], pod["spec"][key], "{key}");
    }
    assert_eq!(injected["spec"]["containers"][1], pod["spec"]["containers"][1], "not listed in inject-containers");
    let path = injected["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "PATH")
        .unwrap()
        .clone();
    assert_eq!(path["value"], "/dragonfly/bin:/opt/app/bin:/usr/bin:/bin");
}

/// Small reviews run on the async worker, larger ones on the blocking threads: both give the
/// same, complete answer.
#[tokio::test]
async fn reviews_on_either_side_of_the_inline_size_are_injected_alike() {
    let state = state();
    for size in [0, webhook::INLINE_REVIEW_BYTES] {
        let mut pod = fixture("pod-annotated.json");
        pod["metadata"]["annotations"]["padding"] = json!("x".repeat(size));
        let body_len = serde_json::to_vec(&review_for(&pod, "apps", "uid-1")).unwrap().len();
        assert_eq!(body_len > webhook::INLINE_REVIEW_BYTES, size > 0);
        let (injected, response) = inject_twice(&state, &pod, "apps").await;
        assert_eq!(response["response"]["allowed"], true);
        assert_eq!(injected["metadata"]["annotations"]["padding"].as_str().map(str::len), Some(size));
        assert!(injected["spec"]["initContainers"][0]["name"].is_string(), "injected: {injected}");
    }
}

#[tokio::test]
async fn a_pod_that_did_not_opt_in_is_allowed_untouched() {
    let (status, response) = mutate(&state(), &review_for(&fixture("pod-from-replicaset.json"), "web", "u")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response["response"], json!({"uid": "u", "allowed": true}));
}

#[tokio::test]
async fn malformed_requests_get_400_with_a_one_line_reason() {
    let bodies: [(&[u8], &str); 4] = [
        (b"{not json", "not JSON"),
        (
            br#"{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}}"#,
            "unsupported AdmissionReview apiVersion",
        ),
        (
            br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}}"#,
            "no uid",
        ),
        (br#"{"apiVersion": "v1", "kind": "Pod"}"#, "not an AdmissionReview"),
    ];
    for (body, reason) in bodies {
        let (status, text) = call(webhook::router(state(), 1 << 20), "POST", "/mutate", body.to_vec()).await;
        let text = String::from_utf8(text).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains(reason), "{text}");
        assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_the_default_limit_exceeds_axums() {
    const { assert!(webhook::DEFAULT_MAX_BODY_BYTES > 2 * 1024 * 1024) };
    let mut pod = fixture("pod-annotated.json");
    pod["metadata"]["annotations"]["big"] = json!("x".repeat(3 * 1024 * 1024));
    let body = serde_json::to_vec(&review_for(&pod, "apps", "big")).unwrap();
    let (status, _) =
        call(webhook::router(state(), webhook::DEFAULT_MAX_BODY_BYTES), "POST", "/mutate", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "a 3 MB review is accepted by default");
    let (status, _) = call(webhook::router(state(), 1024 * 1024), "POST", "/mutate", body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn wrong_methods_and_paths_are_refused() {
    let (status, _) = call(webhook::router(state(), 1024), "GET", "/mutate", vec![]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = call(webhook::router(state(), 1024), "POST", "/validate", vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_panicking_handler_is_answered_500_and_counted() {
    let metrics = Arc::new(Metrics::default());
    let app = Router::new()
        .route("/boom", axum::routing::post(|| async { panic!("boom") as &str }))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(webhook::PanicResponder { metrics: metrics.clone() }));
    let (status, body) = call(app.clone(), "POST", "/boom", vec![]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, b"internal error\n");
    assert!(metrics.encode().contains(r#"admission_requests_total{outcome="error",reason="panic"} 1"#));
}

#[tokio::test]
async fn without_a_usable_tools_image_requests_get_503_not_a_guess() {
    let state = test_kit::webhook_state("", None);
    let (status, _) = call(webhook::router(state, 1024), "POST", "/mutate", b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn with_every_review_slot_and_queue_place_taken_requests_get_503_at_once() {
    let state = test_kit::webhook_state_with_pool("", Some(IMAGE), ReviewPool::new(1, 0));
    let review = review_for(&fixture("pod-annotated.json"), "apps", "u-1");
    let held = state.pool.admit().await.expect("the only slot");
    let request = Request::post("/mutate").body(Body::from(serde_json::to_vec(&review).unwrap())).unwrap();
    let response = webhook::router(state.clone(), webhook::DEFAULT_MAX_BODY_BYTES).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(state.metrics.encode().contains(r#"admission_requests_total{outcome="error",reason="overloaded"} 1"#));
    drop(held);
    let (status, body) = mutate(&state, &review).await;
    assert_eq!((status, body["response"]["allowed"].as_bool()), (StatusCode::OK, Some(true)), "served once free");
}

#[tokio::test]
async fn metrics_are_prometheus_text_unless_openmetrics_is_asked_for() {
    let state = state();
    mutate(&state, &review_for(&fixture("pod-annotated.json"), "apps", "a")).await;
    let scrape = |accept: Option<&'static str>| {
        let state = state.clone();
        async move {
            let mut request = Request::get("/metrics");
            if let Some(accept) = accept {
                request = request.header("accept", accept);
            }
            let response = admin::router(state).oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
            let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
            (
                content_type,
                String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap(),
            )
        }
    };
    let (content_type, plain) = scrape(None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!plain.contains("# EOF"));
    assert!(plain.contains("# TYPE dragonfly_injector_admission_requests_total counter\n"), "{plain}");
    assert!(plain.contains(r#"dragonfly_injector_admission_requests_total{outcome="injected",reason=""} 1"#));
    for line in plain.lines().filter(|l| l.starts_with("# TYPE ") && l.ends_with(" counter")) {
        assert!(line.contains("_total "), "a counter's TYPE names its samples: {line}");
    }
    // The linter `promtool check metrics` runs (client_golang's promlint), built from the Go
    // module proxy: no problem in what a plain scrape returns.
    let promlint = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("promlint");
    let built = std::process::Command::new("go")
        .args(["build", "-mod=mod", "-o"])
        .arg(&promlint)
        .arg(".")
        .current_dir(test_kit::repo_root().join("tests/promlint"))
        .status()
        .expect("Go is needed to build promlint (scripts/setup.sh installs it)");
    assert!(built.success(), "building promlint failed");
    let linted = test_kit::output_with_stdin(&mut std::process::Command::new(&promlint), plain.as_bytes());
    assert!(
        linted.status.success(),
        "promlint:\n{}{}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );
    assert!(linted.stdout.is_empty());
    let (content_type, open) =
        scrape(Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")).await;
    assert!(content_type.starts_with("application/openmetrics-text"));
    assert!(open.ends_with("# EOF\n") && open.contains("# TYPE dragonfly_injector_admission_requests counter"));
}

#[tokio::test]
async fn readiness_names_what_is_missing_and_metrics_count_outcomes() {
    let state = state();
    let (status, body) = call(admin::router(state.clone()), "GET", "/readyz", vec![]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8(body).unwrap().contains("no serving certificate loaded"));
    let (status, _) = call(admin::router(state.clone()), "GET", "/livez", vec![]).await;
    assert_eq!(status, StatusCode::OK);

    mutate(&state, &review_for(&fixture("pod-annotated.json"), "apps", "a")).await;
    mutate(&state, &review_for(&fixture("pod-from-replicaset.json"), "apps", "b")).await;
    call(webhook::router(state.clone(), 1024), "POST", "/mutate", b"nope".to_vec()).await;
    let (status, body) = call(admin::router(state.clone()), "GET", "/metrics", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    for line in [
        r#"dragonfly_injector_admission_requests_total{outcome="injected",reason=""} 1"#,
        r#"dragonfly_injector_admission_requests_total{outcome="skipped",reason="not_opted_in"} 1"#,
        r#"dragonfly_injector_admission_requests_total{outcome="error",reason="not_json"} 1"#,
        r#"dragonfly_injector_admission_duration_seconds_bucket{le="0.0001"}"#,
        r#"dragonfly_injector_admission_duration_seconds_count 3"#,
        r#"dragonfly_injector_ready 0"#,
        r#"dragonfly_injector_build_info{version=""#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}
