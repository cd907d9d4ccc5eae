//! Instructions per review, for valgrind: reviews one corpus body N times and exits, so
//! `callgrind` counts (deterministic, whatever the machine's load) can be compared between
//! builds. Run with N and with 0 and subtract to leave out process start and corpus loading:
//!
//!     cargo bench -p dragonfly-injector --bench instructions --no-run
//!     valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/instructions-* typical-injected 200
//!
//! `scripts/bench-instructions.sh` does both runs for every corpus body; BENCHMARKS.md has the
//! figures. Without valgrind it still runs (a smoke test of the corpus).

use dragonfly_injector::admission;
use dragonfly_injector::config::Config;
use dragonfly_injector::inject::{Settings, ToolsImage};
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let (Some(name), Some(count)) = (args.next(), args.next()) else {
        // `cargo bench` runs every bench target without arguments: nothing to measure then.
        eprintln!("usage: instructions CORPUS-NAME COUNT (see the header of benches/instructions.rs)");
        return;
    };
    let count: usize = count.parse().expect("COUNT is a number");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/corpus").join(format!("{name}.json"));
    let review: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let body = serde_json::to_vec(&review).unwrap();
    let settings = Settings::new(&Config::default(), Some("dragonfly-system"));
    let image = ToolsImage {
        reference: "docker.io/dragonflyoss/dragonfly-injector-tools:v0.1.0".into(),
        unpinned_warning: None,
    };
    let mut total = 0;
    for _ in 0..count {
        total += admission::review(black_box(&body), &settings, &image, &|_| None).unwrap().body.len();
    }
    println!("{name}: {count} reviews, {total} response bytes");
}
