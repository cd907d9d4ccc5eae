//! Scenarios against the API server alone: what it stores after admission, dry runs, other
//! webhooks, certificate rotation, a stopped webhook and a stopped registry.

use super::*;

pub(crate) fn annotated_pod_is_stored_injected(env: &Env) {
    env.namespace("e2e-annotated", &[]);
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-annotated", "-f", "-"],
        &pod("web", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_fully_injected(env, &env.get("pod", "e2e-annotated", "web"));
}

pub(crate) fn unannotated_pod_never_reaches_the_webhook(env: &Env) {
    env.namespace("e2e-plain", &[]);
    let before = env.admission_requests();
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-plain", "-f", "-"],
        &pod("plain", json!({"example.com/other": "x"})).to_string(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stored = env.get("pod", "e2e-plain", "plain");
    assert!(stored["spec"].get("initContainers").is_none() && !is_injected(&stored));
    assert_eq!(env.admission_requests(), before, "matchConditions kept the pod away from the webhook");
}

pub(crate) fn labelled_namespace_injects_and_respects_opt_out(env: &Env) {
    env.namespace("e2e-labelled", &[("dragonfly.io/inject-p2p", "enabled")]);
    env.wait_until_webhook_knows("e2e-labelled", &pod("probe", json!({})), is_injected);
    let output =
        env.plane.kubectl_stdin(&["create", "-n", "e2e-labelled", "-f", "-"], &pod("in", json!({})).to_string());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_fully_injected(env, &env.get("pod", "e2e-labelled", "in"));
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-labelled", "-f", "-"],
        &pod("out", json!({"dragonfly.io/inject-p2p": "false"})).to_string(),
    );
    assert!(output.status.success());
    assert!(!is_injected(&env.get("pod", "e2e-labelled", "out")));
}

pub(crate) fn deployment_pods_from_the_controller_are_injected(env: &Env) {
    env.namespace("e2e-deploy", &[("dragonfly.io/inject-p2p", "enabled")]);
    env.wait_until_webhook_knows("e2e-deploy", &pod("probe", json!({})), is_injected);
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "e2e-deploy"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}});
    let output = env.apply(&deployment);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut pods = Vec::new();
    wait_for(Duration::from_secs(60), "the ReplicaSet's pods", || {
        let list: Value =
            serde_json::from_str(&env.kubectl_ok(&["get", "pods", "-n", "e2e-deploy", "-l", "app=web", "-o", "json"]))
                .unwrap();
        pods = list["items"].as_array().unwrap().clone();
        pods.len() == 2
    });
    for pod in &pods {
        assert!(pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet");
        assert_fully_injected(env, pod);
    }
}

pub(crate) fn baseline_namespace_gets_no_socket_and_a_warning(env: &Env) {
    env.namespace("e2e-baseline", &[("pod-security.kubernetes.io/enforce", "baseline")]);
    let probe = pod("probe", json!({"dragonfly.io/inject-p2p": "true"}));
    env.wait_until_webhook_knows("e2e-baseline", &probe, |p| is_injected(p) && !p.to_string().contains("hostPath"));
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-baseline", "-f", "-"],
        &pod("base", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(output.status.success(), "rejected: {}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Warning: dragonfly-injector:") && stderr.contains("baseline"), "{stderr}");
    let stored = env.get("pod", "e2e-baseline", "base");
    assert!(is_injected(&stored) && !stored.to_string().contains("hostPath"), "{stored}");
    assert_eq!(stored["spec"]["initContainers"][0]["image"], env.pinned_image.as_str());
}

pub(crate) fn server_side_dry_run_shows_the_injection_and_stores_nothing(env: &Env) {
    let output = env.plane.kubectl_stdin(
        &["create", "--dry-run=server", "-n", "e2e-annotated", "-f", "-", "-o", "json"],
        &pod("dry", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_fully_injected(env, &serde_json::from_slice(&output.stdout).unwrap());
    assert!(!env.kubectl(&["get", "pod", "dry", "-n", "e2e-annotated"]).status.success(), "nothing stored");
}

pub(crate) fn native_sidecars_and_newer_fields_are_stored_intact(env: &Env) {
    let mut manifest = pod("sidecar", json!({"dragonfly.io/inject-p2p": "true"}));
    let sidecar = json!({"name": "shipper", "image": "fluent-bit:3", "restartPolicy": "Always",
        "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}});
    manifest["spec"]["initContainers"] = json!([sidecar]);
    manifest["spec"]["schedulingGates"] = json!([{"name": "example.com/wait"}]);
    manifest["spec"]["containers"][0]["resizePolicy"] =
        json!([{"resourceName": "cpu", "restartPolicy": "NotRequired"}]);
    let output = env.plane.kubectl_stdin(&["create", "-n", "e2e-annotated", "-f", "-"], &manifest.to_string());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stored = env.get("pod", "e2e-annotated", "sidecar");
    assert_fully_injected(env, &stored);
    let shipper = &stored["spec"]["initContainers"][1];
    assert_eq!(
        (shipper["name"].as_str(), shipper["restartPolicy"].as_str()),
        (Some("shipper"), Some("Always")),
        "{stored}"
    );
    assert_eq!(shipper["startupProbe"]["exec"]["command"], json!(["true"]));
    assert_eq!(stored["spec"]["schedulingGates"], json!([{"name": "example.com/wait"}]));
    assert_eq!(stored["spec"]["containers"][0]["resizePolicy"][0]["restartPolicy"], "NotRequired");
}

/// A second mutating webhook, as another injector would be: it adds a container after ours ran.
pub(crate) fn adder_webhook(
    runtime: &tokio::runtime::Runtime,
    leaf: &Leaf,
    listen: std::net::IpAddr,
) -> (u16, tokio::sync::watch::Sender<bool>) {
    use axum::body::Bytes;
    use rustls::pki_types::pem::PemObject;
    let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let tls = std::sync::Arc::new(
        rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap(),
    );
    let app = axum::Router::new().route(
        "/add",
        axum::routing::post(|body: Bytes| async move {
            let review: Value = serde_json::from_slice(&body).unwrap();
            let request = &review["request"];
            let containers = request["object"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
            let mut response = json!({"uid": request["uid"], "allowed": true});
            if !containers.iter().any(|c| c["name"] == "added-later") {
                let patch = json!([{"op": "add", "path": "/spec/containers/-", "value": {"name": "added-later", "image": "busybox:1.37"}}]);
                response["patchType"] = json!("JSONPatch");
                response["patch"] = json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, patch.to_string()));
            }
            axum::Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}))
        }),
    );
    let listener = runtime.block_on(tokio::net::TcpListener::bind((listen, 0))).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let limits = ConnectionLimits {
        max_connections: 16,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
    };
    let acceptor = Some(tokio_rustls::TlsAcceptor::from(tls));
    let metrics = std::sync::Arc::new(dragonfly_injector::metrics::Metrics::default());
    runtime.spawn(https::serve(listener, acceptor, app, stopped, Duration::from_secs(1), limits, metrics));
    (port, stop)
}

pub(crate) fn reinvocation_injects_a_container_another_webhook_adds(env: &Env) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listen = if env.webhook_host.is_loopback() { env.webhook_host } else { std::net::IpAddr::from([0, 0, 0, 0]) };
    let (port, _stop) = adder_webhook(&runtime, &env.webhook_pki.leaf_for("adder", env.webhook_host), listen);
    let ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &env.webhook_pki.ca_pem);
    // Named to sort after the injector's configuration, so it runs after us.
    let configuration = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "zz-e2e-adder"},
        "webhooks": [{"name": "adder.e2e.dragonfly.io", "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
            "reinvocationPolicy": "Never", "clientConfig": {"url": format!("https://{}:{port}/add", env.webhook_host), "caBundle": ca},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"e2e-reinvoke": "true"}}}]});
    let output = env.apply(&configuration);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    env.namespace("e2e-reinvoke", &[("e2e-reinvoke", "true")]);
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-reinvoke", "-f", "-"],
        &pod("twice", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    let _ = env.kubectl(&["delete", "mutatingwebhookconfiguration", "zz-e2e-adder"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stored = env.get("pod", "e2e-reinvoke", "twice");
    assert_fully_injected(env, &stored);
    let containers = stored["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2, "{stored}");
    assert_eq!(containers[1]["name"], "added-later");
    assert_eq!(
        &env_names(&containers[1])[..2],
        ["HOST_IP", "DRAGONFLY_INJECT_PROXY"],
        "reinvoked for the added container"
    );
    assert_eq!(stored["spec"]["initContainers"].as_array().unwrap().len(), 1, "nothing doubled");
    assert_eq!(
        stored["spec"]["volumes"].as_array().unwrap().iter().filter(|v| v["name"] == "dragonfly-tools").count(),
        1
    );
    let status: Value =
        serde_json::from_str(stored["metadata"]["annotations"]["dragonfly.io/injected"].as_str().unwrap()).unwrap();
    assert_eq!(status["containers"], json!(["app", "added-later"]));
}

pub(crate) fn certificate_rotation_fails_no_admission(env: &Env) {
    env.namespace("e2e-rotate", &[]);
    let new_leaf = env.webhook_pki.leaf_for("webhook-rotated", env.webhook_host);
    let mut created = 0;
    for n in 0..40 {
        if n == 15 {
            env.certs.lock().unwrap().swap(&new_leaf);
        }
        // failurePolicy is Fail: a failed call to the webhook would refuse the pod.
        let output = env.plane.kubectl_stdin(
            &["create", "-n", "e2e-rotate", "-f", "-"],
            &pod(&format!("r{n}"), json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
        );
        assert!(output.status.success(), "pod r{n}: {}", String::from_utf8_lossy(&output.stderr));
        created += 1;
    }
    assert_eq!(created, 40);
    assert!(is_injected(&env.get("pod", "e2e-rotate", "r39")));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", env.webhook_port).parse().unwrap();
    let served = runtime
        .block_on(test_kit::Connection::open(addr, test_kit::client_config(&env.webhook_pki.ca_pem)))
        .unwrap()
        .server_cert;
    assert_eq!(served, new_leaf.der, "the webhook serves the rotated certificate");
}

pub(crate) fn a_stopped_webhook_is_visible_with_ignore_and_refuses_with_fail(env: &Env) {
    let helm = test_kit::cached_tool("helm.sh");
    let chart = test_kit::repo_root().join("charts/dragonfly-injector");
    let upgrade = |policy: &str| {
        succeed(
            Command::new(&helm)
                .args(["upgrade", "df"])
                .arg(&chart)
                .args(["--namespace", RELEASE_NAMESPACE, "--reuse-values", "--kubeconfig"])
                .arg(&env.plane.kubeconfig)
                .args(["--set", &format!("webhook.failurePolicy={policy}")]),
        );
    };
    env.namespace("e2e-down", &[]);
    upgrade("Ignore");
    env.stop_webhook();
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-down", "-f", "-"],
        &pod("uninjected", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!is_injected(&env.get("pod", "e2e-down", "uninjected")), "created without injection");
    // How an operator sees it: the API server counts every call it failed open.
    let metrics = env.kubectl_ok(&["get", "--raw", "/metrics"]);
    let fail_open = metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_admission_webhook_fail_open_count") && l.contains("annotated.pods.dragonfly.io")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(fail_open >= 1.0, "fail-open calls counted: {fail_open}");

    upgrade("Fail");
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-down", "-f", "-"],
        &pod("refused", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(!output.status.success(), "with Fail, creation is refused while the webhook is down");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("failed calling webhook"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    env.start_webhook();
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-down", "-f", "-"],
        &pod("back", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(is_injected(&env.get("pod", "e2e-down", "back")));
}

pub(crate) fn a_stopped_registry_keeps_new_pods_on_the_last_good_digest(env: &Env) {
    env.registry.lock().unwrap().stop();
    wait_for(Duration::from_secs(30), "the webhook's refresh failing against the stopped registry", || {
        let (_, text) = http_get(env.admin_port, "/metrics").unwrap();
        text.lines()
            .any(|l| l.starts_with("dragonfly_injector_tools_image_resolution_failures_total{") && !l.ends_with(" 0"))
    });
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-annotated", "-f", "-"],
        &pod("after-registry", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_fully_injected(env, &env.get("pod", "e2e-annotated", "after-registry"));
}
