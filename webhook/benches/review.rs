//! Review in, decision and patch, response out: the whole request path minus HTTP and TLS.
//! `cargo bench -p dragonfly-injector --bench review`; results in BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dragonfly_injector::admission;
use dragonfly_injector::config::Config;
use dragonfly_injector::inject::Settings;
use dragonfly_injector::pinning::ToolsImage;
use serde_json::{json, Value};
use std::hint::black_box;

fn container(name: &str, env_vars: usize) -> Value {
    let env: Vec<Value> = (0..env_vars).map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("value-{i}-{}", "x".repeat(20))})).collect();
    json!({
        "name": name,
        "image": format!("registry.example.com/team/{name}:1.2.3"),
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "env": env,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
        "volumeMounts": [{"name": "kube-api-access", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    })
}

fn pod(containers: usize, env_vars: usize, opted_in: bool) -> Value {
    let annotations = if opted_in { json!({"dragonfly.io/inject-p2p": "true"}) } else { json!({}) };
    json!({
        "metadata": {"generateName": "web-7d4b9c8f6-", "labels": {"app": "web", "pod-template-hash": "7d4b9c8f6"}, "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c8f6", "uid": "5c1e3f1e-2b1a-4c39-9d0e-1f0f4b8a7c11", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {
            "containers": (0..containers).map(|i| container(&format!("c{i}"), env_vars)).collect::<Vec<_>>(),
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "securityContext": {}, "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
        },
    })
}

fn review(pod: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "apps", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": pod, "oldObject": null, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let settings = Settings::new(&Config::default(), Some("dragonfly-system")).unwrap();
    let image = ToolsImage { reference: "docker.io/dragonflyoss/dragonfly-injector-tools:v0.1.0".into(), unpinned_warning: None };
    let mut group = c.benchmark_group("review");
    for (shape, containers, env_vars) in [("small", 1, 2), ("typical", 1, 12), ("large", 20, 12)] {
        for opted_in in [true, false] {
            let body = review(pod(containers, env_vars, opted_in));
            let label = format!("{shape}-{}B-{}", body.len(), if opted_in { "injected" } else { "skipped" });
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
                b.iter(|| admission::review(black_box(body), &settings, &image, &|_| None).unwrap().body.len())
            });
        }
    }
    group.finish();

    // Pinning adds nothing to the request path: the reference is read from a cell. With
    // `preferred` before the first resolution, the tag goes in with one more warning.
    let mut group = c.benchmark_group("tools-reference");
    let body = review(pod(1, 12, true));
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let variants = [
        ("fixed-digest", ToolsImage { reference: format!("docker.io/dragonflyoss/dragonfly-injector-tools:v0.1.0@{digest}"), unpinned_warning: None }),
        ("pinned-by-resolver", ToolsImage { reference: format!("registry.local/dragonfly/tools:v1@{digest}"), unpinned_warning: None }),
        ("tag-with-warning", ToolsImage { reference: "registry.local/dragonfly/tools:v1".into(), unpinned_warning: Some("the tools image is not pinned to a digest yet".into()) }),
    ];
    for (name, tools) in variants {
        group.bench_function(name, |b| b.iter(|| admission::review(black_box(&body), &settings, &tools, &|_| None).unwrap().body.len()));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
