use clap::Parser;
use dragonfly_injector::cli::Cli;
use std::process::ExitCode;

/// mimalloc, not glibc's malloc: a review parses the pod into thousands of small allocations and
/// frees them all, and glibc's allocator was over half of a review's instructions; mimalloc
/// takes a quarter to a third off every review (BENCHMARKS.md, "Instructions per review"). Set
/// for the binary only: the library, its tests and the fuzz targets keep the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's defaults keep memory committed and freed pages around for a while: the idle
/// server sat at 64 MiB where glibc needs 24. Arenas committed on demand and pages purged at
/// once bring it back to glibc's level. The first arena is reserved at the first allocation,
/// before `main`, so the options are set from a constructor, which runs before the runtime
/// allocates anything.
#[used]
#[unsafe(link_section = ".init_array")]
static ALLOCATOR_OPTIONS: extern "C" fn() = allocator_options;

extern "C" fn allocator_options() {
    // The options' numbers in mimalloc 3, as libmimalloc-sys builds it (the same in 2); it
    // names neither. tests/serve_binary.rs checks both took effect.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: plain setters of mimalloc's option table, before any thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
    }
}

fn main() -> ExitCode {
    match Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
