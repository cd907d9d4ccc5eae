//! Logs go to standard error (standard output carries `inject`'s manifests): JSON for
//! clusters, text for terminals. hyper, h2, rustls and kube are quiet unless asked for.

use clap::{Args, ValueEnum};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    Json,
    Text,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    #[arg(long, global = true, help_heading = "Global options", env = "DRAGONFLY_INJECTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `info,dragonfly_injector=debug`; RUST_LOG wins if set.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "DRAGONFLY_INJECTOR_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
}

const QUIET: &str = "hyper=warn,hyper_util=warn,h2=warn,rustls=warn,tower=warn,kube=warn,kube_runtime=warn,notify=warn";

pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let LogArgs { log_format, log_level } = args;
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(format!("{QUIET},{log_level}"))
            .map_err(|error| anyhow::anyhow!("invalid --log-level {log_level:?}: {error}"))?,
    };
    let json = match log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if json {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|error| anyhow::anyhow!("cannot install the logger: {error}"))
}
