//! Command line: `serve` and `inject`. Every serve flag has an environment fallback so the Helm
//! chart can set them either way.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "dragonfly-injector", version, about = "Wires Kubernetes pods to Dragonfly's dfdaemon")]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the mutating admission webhook over HTTPS.
    Serve(ServeArgs),
    /// Inject manifests offline (YAML or JSON, one or many documents) and print them.
    Inject(InjectArgs),
    /// Resolve an image tag to its index digest and list its platforms, as `serve` pins it.
    Resolve(ResolveArgs),
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The image, `[registry/]repository:tag`.
    pub image: String,
    /// A config file whose `registry` section and `tools.architectures` apply; flags win.
    #[arg(long, env = "DRAGONFLY_INJECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Docker config file with credentials (`.dockerconfigjson`).
    #[arg(long)]
    pub docker_config: Option<PathBuf>,
    /// PEM certificates to trust besides the shipped public roots.
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
    /// A registry (`host[:port]`) to reach over plain HTTP; repeatable.
    #[arg(long)]
    pub plain_http: Vec<String>,
    /// Bound on each registry call.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    Json,
    Text,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    #[arg(long, global = true, env = "DRAGONFLY_INJECTOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `info,dragonfly_injector=debug`; RUST_LOG wins if set.
    #[arg(long, global = true, env = "DRAGONFLY_INJECTOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file (YAML).
    #[arg(long, env = "DRAGONFLY_INJECTOR_CONFIG")]
    pub config: PathBuf,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub listen: ListenArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

#[derive(Debug, Args)]
pub struct TlsArgs {
    /// PEM certificate chain; its directory is watched and the pair reloaded on change.
    #[arg(long, env = "DRAGONFLY_INJECTOR_TLS_CERT_FILE")]
    pub tls_cert_file: PathBuf,
    #[arg(long, env = "DRAGONFLY_INJECTOR_TLS_KEY_FILE")]
    pub tls_key_file: PathBuf,
    /// Re-read the certificate at least this often, in case the directory watch misses a change.
    #[arg(long, env = "DRAGONFLY_INJECTOR_TLS_POLL_INTERVAL", value_parser = parse_duration, default_value = "10s")]
    pub tls_poll_interval: Duration,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// The webhook's HTTPS address.
    #[arg(long, env = "DRAGONFLY_INJECTOR_LISTEN", default_value = "0.0.0.0:9443")]
    pub listen: SocketAddr,
    /// Plain HTTP address for /livez, /readyz and /metrics.
    #[arg(long, env = "DRAGONFLY_INJECTOR_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Larger AdmissionReview bodies are answered 413.
    #[arg(long, env = "DRAGONFLY_INJECTOR_MAX_BODY_BYTES", default_value_t = crate::server::webhook::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Kubeconfig for namespace labels when running outside a cluster. Inside one, the pod's
    /// service account is used. With neither, namespace opt-in and the Pod Security check are off.
    #[arg(long, env = "DRAGONFLY_INJECTOR_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The injector's own namespace, always excluded (default: the service account's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShutdownArgs {
    /// After the first SIGTERM, report unready and keep serving this long, so endpoints drop the
    /// pod before it stops accepting.
    #[arg(long, env = "DRAGONFLY_INJECTOR_SHUTDOWN_DELAY", value_parser = parse_duration, default_value = "5s")]
    pub shutdown_delay: Duration,
    /// Then wait at most this long for open connections to finish.
    #[arg(long, env = "DRAGONFLY_INJECTOR_DRAIN_TIMEOUT", value_parser = parse_duration, default_value = "15s")]
    pub drain_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The manifest file, or `-` for standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: String,
    /// The config file (YAML); the embedded defaults without it.
    #[arg(long, env = "DRAGONFLY_INJECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Labels of the target namespace, `k=v,k2=v2`: namespace opt-in and Pod Security level.
    #[arg(long, value_parser = parse_labels)]
    pub namespace_labels: Option<BTreeMap<String, String>>,
}

pub use crate::config::parse_duration;

pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.trim().to_owned())),
            _ => Err(format!("{pair:?} is not key=value")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_labels_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("soon").is_err());
        let labels =
            parse_labels("dragonfly.io/inject-p2p=enabled, pod-security.kubernetes.io/enforce=baseline").unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
        assert!(parse_labels("novalue").is_err());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
