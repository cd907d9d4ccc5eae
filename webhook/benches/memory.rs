//! Peak and resting memory of the real `serve` binary (bench profile) reviewing the largest
//! pods an API server sends: about 3 MiB of AdmissionReview (etcd stores objects up to 1.5 MiB;
//! a review carries the pod once on CREATE, and JSON escapes grow it). Each shape is posted
//! over one TLS connection, one review at a time; VmHWM (peak RSS) and VmRSS are read from
//! /proc after each. `cargo bench -p dragonfly-injector --bench memory`; results in
//! BENCHMARKS.md, against the chart's 128 Mi memory limit.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use test_kit::{client_config, review_for, Connection, Pki};

fn container(i: usize, env: usize) -> Value {
    json!({
        "name": format!("c{i}"),
        "image": "registry.example.com/team/app:1.2.3",
        "env": (0..env).map(|e| json!({"name": format!("SETTING_{e}"), "value": "x".repeat(40)})).collect::<Vec<_>>(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    })
}

fn opted_in(spec: Value) -> Value {
    json!({"metadata": {"generateName": "big-", "annotations": {"dragonfly.io/inject-p2p": "true"}}, "spec": spec})
}

/// Pods whose reviews are about `bytes` long.
fn shapes(bytes: usize) -> Vec<(&'static str, Value)> {
    let env = 40;
    let per_container = container(0, env).to_string().len();
    let volumes = |n: usize| -> Vec<Value> {
        let mut v = vec![json!({"name": "dragonfly-tools", "emptyDir": {}})];
        v.extend((2..n).map(|i| json!({"name": format!("dragonfly-tools-{i}"), "emptyDir": {}})));
        v
    };
    let per_volume = json!({"name": "dragonfly-tools-10000", "emptyDir": {}}).to_string().len();
    vec![
        // 250 containers (the default limit) with env filling the rest: injected.
        (
            "250 containers, injected",
            opted_in(json!({"containers": (0..250).map(|i| container(i, bytes / 250 / 72)).collect::<Vec<_>>()})),
        ),
        // Many small containers: refused by limits.containers before any patch is built.
        (
            "many containers, over the limit",
            opted_in(json!({"containers": (0..bytes / per_container).map(|i| container(i, env)).collect::<Vec<_>>()})),
        ),
        // Volumes named like ours: the name search of the issue that once cost 20 s.
        (
            "taken volume names, injected",
            opted_in(json!({"containers": [container(0, 2)], "volumes": volumes(bytes / per_volume)})),
        ),
    ]
}

fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    // `cargo test --all-targets` builds benches and runs them with no `--bench`: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    test_kit::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("bench ca");
    pki.leaf("webhook").write_pair(dir.path());
    std::fs::write(dir.path().join("injector.yaml"), "tools: {image: registry.local/tools:v1, pinning: \"off\"}\n")
        .unwrap();
    let mut child = test_kit::serve_command(dir.path())
        .args(["--max-body-bytes", &(8 << 20).to_string(), "--shutdown-delay", "0s"])
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let webhook = loop {
        let line: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap_or_default();
        if line["message"] == "serving" {
            break line["listen"].as_str().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut connection = runtime.block_on(Connection::open(webhook, client_config(&pki.ca_pem))).unwrap();
    println!("{:<36} {:>10} {:>8} {:>12} {:>14}", "pod", "review", "status", "peak RSS", "RSS after");
    println!(
        "{:<36} {:>10} {:>8} {:>9} MiB {:>10} MiB",
        "(idle)",
        "",
        "",
        status_kb(pid, "VmHWM") / 1024,
        status_kb(pid, "VmRSS") / 1024
    );
    for (name, pod) in shapes(3 << 20) {
        let body = serde_json::to_vec(&review_for(&pod, "apps", "u-1")).unwrap();
        let size = body.len();
        let started = std::time::Instant::now();
        let reply = runtime.block_on(connection.post("/mutate", body)).unwrap();
        let took = started.elapsed();
        let outcome: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let patched = outcome["response"]["patch"].as_str().map_or(0, str::len);
        println!(
            "{name:<36} {:>7} KiB {:>8} {:>9} MiB {:>10} MiB   ({} ms; patch {} KiB base64)",
            size / 1024,
            reply.status,
            status_kb(pid, "VmHWM") / 1024,
            status_kb(pid, "VmRSS") / 1024,
            took.as_millis(),
            patched / 1024
        );
    }
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
}
