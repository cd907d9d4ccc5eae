//! Review in, decision and patch, response out: the whole request path minus HTTP and TLS, on
//! the same corpus as the load benchmark.
//! `cargo bench -p dragonfly-injector --bench review`; results in BENCHMARKS.md.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
mod common;

use common::corpus;
use dragonfly_injector::admission;
use dragonfly_injector::inject::ToolsImage;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let (settings, image) = common::engine();
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
