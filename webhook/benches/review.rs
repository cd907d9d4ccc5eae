//! Review in, decision and patch, response out: the whole request path minus HTTP and TLS, on
//! the same corpus as the load benchmark.
//! `cargo bench -p dragonfly-injector --bench review`; results in BENCHMARKS.md.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dragonfly_injector::admission;
use dragonfly_injector::config::Config;
use dragonfly_injector::inject::Settings;
use dragonfly_injector::inject::ToolsImage;
use serde_json::Value;
use std::hint::black_box;

/// The shared corpus (webhook/benches/corpus/, written by scripts/bench-corpus.py), compacted as
/// the API server sends it: the same bodies as the load benchmark.
fn corpus(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/corpus").join(format!("{name}.json"));
    let review: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    serde_json::to_vec(&review).unwrap()
}

fn bench(c: &mut Criterion) {
    let settings = Settings::new(&Config::default(), Some("dragonfly-system"));
    let image = ToolsImage {
        reference: "docker.io/dragonflyoss/dragonfly-injector-tools:v0.1.0".into(),
        unpinned_warning: None,
    };
    let mut group = c.benchmark_group("review");
    for shape in ["small", "typical", "large"] {
        for outcome in ["injected", "skipped"] {
            let body = corpus(&format!("{shape}-{outcome}"));
            let label = format!("{shape}-{}B-{outcome}", body.len());
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
    let body = corpus("typical-injected");
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let variants = [
        (
            "fixed-digest",
            ToolsImage {
                reference: format!("docker.io/dragonflyoss/dragonfly-injector-tools:v0.1.0@{digest}"),
                unpinned_warning: None,
            },
        ),
        (
            "pinned-by-resolver",
            ToolsImage { reference: format!("registry.local/dragonfly/tools:v1@{digest}"), unpinned_warning: None },
        ),
        (
            "tag-with-warning",
            ToolsImage {
                reference: "registry.local/dragonfly/tools:v1".into(),
                unpinned_warning: Some("the tools image is not pinned to a digest yet".into()),
            },
        ),
    ];
    for (name, tools) in variants {
        group.bench_function(name, |b| {
            b.iter(|| admission::review(black_box(&body), &settings, &tools, &|_| None).unwrap().body.len())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
