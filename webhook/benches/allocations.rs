//! Allocations per review (issue 27's budget): a counting allocator around the system's counts
//! every allocation and every byte asked for while `admission::review` answers each corpus body,
//! beside the two floors of `benches/instructions.rs` (`value`: the whole review parsed into a
//! `serde_json::Value`; `skim`: the uid borrowed, everything else skipped), which write the same
//! response. Deterministic: the same build and corpus give the same counts on any machine.
//!
//!     cargo bench -p dragonfly-injector --bench allocations
//!
//! Prints a Markdown table; BENCHMARKS.md has it. Under `cargo test` it runs each body once as a
//! smoke test of the corpus and the counter.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

mod common;

use common::Skim;
use dragonfly_injector::admission;
use serde_json::Value;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` or `realloc` above, that is from the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and `new_size` is the caller's to vouch for.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Allocations and bytes of one call of `work`, counted over `runs` calls.
fn count(runs: u64, mut work: impl FnMut() -> usize) -> (u64, u64) {
    black_box(work());
    let (a, b) = (ALLOCATIONS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    for _ in 0..runs {
        black_box(work());
    }
    ((ALLOCATIONS.load(Ordering::Relaxed) - a) / runs, (BYTES.load(Ordering::Relaxed) - b) / runs)
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let runs = if measuring { 100 } else { 1 };
    let (settings, image) = common::engine();
    let mut names: Vec<String> = std::fs::read_dir(common::corpus_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json").map(str::to_owned))
        .collect();
    names.sort();
    println!("| body | bytes | ours: allocations | ours: bytes allocated | value floor | skim floor |");
    println!("|---|---|---|---|---|---|");
    for name in names {
        let body = common::corpus(&name);
        let answer = admission::review(&body, &settings, &image, &|_| None).unwrap().body;
        let reply = answer.clone();
        let ours =
            count(runs, || admission::review(black_box(&body), &settings, &image, &|_| None).unwrap().body.len());
        // The floors end in the same response bytes: a copy of ours stands for writing it.
        let value = count(runs, || {
            let parsed: Value = serde_json::from_slice(black_box(&body)).unwrap();
            black_box(parsed["request"]["uid"].as_str().unwrap().len()) + reply.clone().len()
        });
        let skim = count(runs, || {
            let parsed: Skim<'_> = serde_json::from_slice(black_box(&body)).unwrap();
            black_box(parsed.request.uid.len()) + reply.clone().len()
        });
        assert!(ours.0 > 0, "the counter counts");
        println!(
            "| {name} | {} | {} | {} | {} ({} B) | {} ({} B) |",
            body.len(),
            ours.0,
            ours.1,
            value.0,
            value.1,
            skim.0,
            skim.1
        );
    }
}
