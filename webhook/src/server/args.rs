//! `serve`'s flags, each with an environment fallback so the Helm chart can set them either way.

use super::tls::TlsArgs;
use super::webhook::DEFAULT_MAX_BODY_BYTES;
use crate::cluster::ClusterArgs;
use crate::config::parse_duration;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    #[command(flatten)]
    pub reviews: ReviewArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ReviewArgs {
    /// Reviews computed at once, on their own threads (default: the CPUs the process may use).
    #[arg(long, env = "DRAGONFLY_INJECTOR_MAX_CONCURRENT_REVIEWS")]
    pub max_concurrent_reviews: Option<usize>,
    /// Requests that may wait for one of those; beyond them the webhook answers 503 at once.
    #[arg(long, env = "DRAGONFLY_INJECTOR_MAX_QUEUED_REVIEWS", default_value_t = 64)]
    pub max_queued_reviews: usize,
}

impl Default for ReviewArgs {
    fn default() -> Self {
        ReviewArgs { max_concurrent_reviews: None, max_queued_reviews: 64 }
    }
}

impl ReviewArgs {
    pub fn concurrency(&self) -> usize {
        self.max_concurrent_reviews.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
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
    #[arg(long, env = "DRAGONFLY_INJECTOR_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
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
