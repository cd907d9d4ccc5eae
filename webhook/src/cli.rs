//! The composition root: the command line is each subsystem's own arguments flattened
//! (`server`, `csi`, `offline`, `pinning::command`, `logging`), and each command is handed to the
//! module that owns it. Nothing in the crate imports this module.

use crate::{csi, logging, offline, pinning, server};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "dragonfly-injector", version, about = "Wires Kubernetes pods to Dragonfly's dfdaemon")]
pub struct Cli {
    #[command(flatten)]
    pub log: logging::LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the mutating admission webhook over HTTPS.
    Serve(Box<server::ServeArgs>),
    /// Inject manifests offline (YAML or JSON, one or many documents) and print them.
    Inject(offline::InjectArgs),
    /// Remove an injection from manifests, as each pod's dragonfly.io/injected record says.
    Uninject(offline::UninjectArgs),
    /// Resolve an image tag to its index digest and list its platforms, as `serve` pins it.
    Resolve(pinning::command::ResolveArgs),
    /// Serve the CSI node plugin that brings the dfdaemon socket to pods of labelled namespaces.
    Csi(Box<csi::CsiArgs>),
}

impl Cli {
    /// Installs logging and the process's one crypto provider (rustls, kube's client), then runs
    /// the command to its end.
    pub fn run(self) -> anyhow::Result<()> {
        let Cli { log, command } = self;
        logging::init(&log)?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = || tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from);
        match command {
            Command::Serve(args) => runtime()?.block_on(server::run(*args)),
            Command::Inject(args) => offline::run(args),
            Command::Uninject(args) => offline::run_uninject(args),
            Command::Resolve(args) => runtime()?.block_on(pinning::command::run(args)),
            Command::Csi(args) => runtime()?.block_on(csi::run(*args)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
