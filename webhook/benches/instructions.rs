//! Instructions per review, for valgrind: reviews one corpus body N times and exits, so
//! `callgrind` counts (deterministic, whatever the machine's load) can be compared between
//! builds. Run with N and with 0 and subtract to leave out process start and corpus loading:
//!
//!     cargo bench -p dragonfly-injector --bench instructions --no-run
//!     valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/instructions-* typical-injected 200 [MODE]
//!
//! MODE is `ours` (the default: `admission::review`) or one of two floors that write the very
//! same response, worked out once before the loop, so that only the parse differs:
//! - `value`: parses the whole review into a `serde_json::Value`, as a naive webhook would;
//! - `skim`: a typed parse that borrows the uid and skips everything else (`IgnoredAny`), the
//!   least any webhook must read.
//!
//! Both floors then serialise the same patch operations and write the same response body.
//! `scripts/bench-instructions.sh` runs the three for every corpus body; BENCHMARKS.md has the
//! figures. Without valgrind it still runs (a smoke test of the corpus).

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

mod common;

use base64::Engine as _;
use common::Skim;
use dragonfly_injector::admission::{self, wire::response_body};
use serde_json::Value;
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let (Some(name), Some(count)) = (args.next(), args.next()) else {
        // `cargo bench` runs every bench target without arguments: nothing to measure then.
        eprintln!(
            "usage: instructions CORPUS-NAME COUNT [ours|value|skim] (see the header of benches/instructions.rs)"
        );
        return;
    };
    let mode = args.next().unwrap_or_else(|| "ours".into());
    let count: usize = count.parse().expect("COUNT is a number");
    let body = common::corpus(&name);
    let (settings, image) = common::engine();
    let review = |body: &[u8]| admission::review(body, &settings, &image, &|_| None).unwrap().body;
    // The floors' answer: our response's patch operations and warnings, as values.
    let answer: Value = serde_json::from_slice(&review(&body)).unwrap();
    let ops: Option<Vec<Value>> = answer["response"]["patch"].as_str().map(|patch| {
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(patch).unwrap()).unwrap()
    });
    let warnings: Vec<String> = serde_json::from_value(answer["response"]["warnings"].clone()).unwrap_or_default();
    let respond = |uid: &str| {
        let patch = ops.as_ref().map(|ops| serde_json::to_vec(ops).unwrap());
        response_body(uid, patch.as_deref(), &warnings)
    };
    let mut total = 0;
    for _ in 0..count {
        let body = black_box(&body[..]);
        total += match mode.as_str() {
            "ours" => review(body).len(),
            "value" => {
                let parsed: Value = serde_json::from_slice(body).unwrap();
                respond(parsed["request"]["uid"].as_str().unwrap()).len()
            }
            "skim" => {
                let parsed: Skim<'_> = serde_json::from_slice(body).unwrap();
                respond(parsed.request.uid).len()
            }
            other => panic!("unknown mode {other} (ours, value, skim)"),
        };
    }
    println!("{name} ({mode}): {count} reviews, {total} response bytes");
}
