//! Start-to-ready time of the real `serve` binary: with a fixed digest (no registry call) and
//! with `pinning: required` against a loopback docker-registry (ready only once pinned).
//! `cargo bench -p dragonfly-injector --bench ready`; results in BENCHMARKS.md.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use oci_client::secrets::RegistryAuth;
use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant};
use test_kit::registry::{push_index, pushing_client, IndexSpec, Registry, RegistryOptions};
use test_kit::Pki;

const RUNS: usize = 20;

/// Spawns `serve`, reads its admin address from the "serving" line, polls /readyz every
/// millisecond, and returns the time from spawn to the first 200.
fn time_to_ready(dir: &std::path::Path, config: &str) -> Duration {
    std::fs::write(dir.join("injector.yaml"), config).unwrap();
    let started = Instant::now();
    let mut child = test_kit::serve_command(dir).args(["--shutdown-delay", "0s"]).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let admin = loop {
        let line: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap_or_default();
        if line["message"] == "serving" {
            break line["admin_listen"].as_str().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let ready = loop {
        let status = std::net::TcpStream::connect(&admin).ok().and_then(|mut stream| {
            use std::io::{Read, Write};
            stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply).ok()?;
            Some(reply.starts_with("HTTP/1.1 200"))
        });
        if status == Some(true) {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never ready");
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    ready
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<40} runs {RUNS}  median {:7.1} ms  p90 {:7.1} ms  max {:7.1} ms",
        ms(samples[RUNS / 2]),
        ms(samples[RUNS * 9 / 10]),
        ms(samples[RUNS - 1])
    );
}

fn main() {
    // `cargo test --all-targets` builds benches and runs them with no `--bench`: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    test_kit::install_crypto();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let registry = Registry::start(RegistryOptions::default());
    let digest = runtime.block_on(push_index(
        &pushing_client(None),
        &RegistryAuth::Anonymous,
        &registry.host,
        IndexSpec { attestation: true, salt: "bench", ..IndexSpec::default() },
    ));
    let dir = tempfile::tempdir().unwrap();
    Pki::new("bench ca").leaf("webhook").write_pair(dir.path());
    let image = format!("{}/dragonfly/tools:v1", registry.host);
    let fixed = format!("tools: {{image: \"{image}@{digest}\", pinning: required}}\n");
    let pinned =
        format!("tools: {{image: \"{image}\", pinning: required}}\nregistry: {{plainHttp: [\"{}\"]}}\n", registry.host);
    let mut fixed_runs = Vec::new();
    let mut pinned_runs = Vec::new();
    // Alternate, so that both see the same machine load.
    for _ in 0..RUNS {
        fixed_runs.push(time_to_ready(dir.path(), &fixed));
        pinned_runs.push(time_to_ready(dir.path(), &pinned));
    }
    report("start to ready, fixed digest", fixed_runs);
    report("start to ready, required pinning (loopback)", pinned_runs);
}
