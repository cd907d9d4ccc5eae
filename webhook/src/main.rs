use clap::Parser;
use dragonfly_injector::cli::{Cli, Command};
use dragonfly_injector::{logging, manifests, pinning, server};
use std::process::ExitCode;

fn main() -> ExitCode {
    let Cli { log, command } = Cli::parse();
    if let Err(error) = logging::init(&log) {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    // One crypto provider for the whole process (rustls, kube's client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = || tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from);
    let result = match command {
        Command::Serve(args) => runtime().and_then(|runtime| runtime.block_on(server::run(args))),
        Command::Inject(args) => manifests::run(args),
        Command::Resolve(args) => runtime().and_then(|runtime| runtime.block_on(pinning::resolve_command(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
