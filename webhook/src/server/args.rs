//! `serve`'s flags, each with an environment fallback so the Helm chart can set them either way.

use super::pool::DEFAULT_BODY_BYTES_IN_FLIGHT;
use super::webhook::DEFAULT_MAX_BODY_BYTES;
use crate::cluster::ClusterArgs;
use crate::config::{parse_duration, parse_nonzero_duration};
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
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// Limits on connections and request bodies (both ports, except the body ones). The API
/// server's own webhook timeout is at most 30 s (10 s by default), so nothing legitimate takes
/// longer than these.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Open connections on the webhook port; one beyond them is closed at once (the admin port
    /// allows 64).
    #[arg(long, env = "DRAGONFLY_INJECTOR_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,
    /// A TLS handshake, a connection's first request, and each HTTP/1.1 request head from its
    /// first byte, must arrive within this.
    #[arg(long, env = "DRAGONFLY_INJECTOR_HEADER_READ_TIMEOUT", value_parser = parse_nonzero_duration, default_value = "10s")]
    pub header_read_timeout: Duration,
    /// A request body must arrive whole within this (408 otherwise).
    #[arg(long, env = "DRAGONFLY_INJECTOR_BODY_READ_TIMEOUT", value_parser = parse_nonzero_duration, default_value = "10s")]
    pub body_read_timeout: Duration,
    /// A connection that has served requests and has none in flight for this long is closed
    /// gracefully. Keep it above the API server's own idle timeout (90 s), so the server never
    /// closes a connection the API server is about to reuse.
    #[arg(long, env = "DRAGONFLY_INJECTOR_IDLE_TIMEOUT", value_parser = parse_nonzero_duration, default_value = "120s")]
    pub idle_timeout: Duration,
    /// Bytes of request bodies held at once over all connections, reserved by their declared
    /// length; a body beyond them is answered 503.
    #[arg(long, env = "DRAGONFLY_INJECTOR_MAX_BODY_BYTES_IN_FLIGHT", default_value_t = DEFAULT_BODY_BYTES_IN_FLIGHT)]
    pub max_body_bytes_in_flight: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ReviewArgs {
    /// Reviews computed at once, those of bodies over 64 KiB on their own threads (default: the
    /// CPUs the process may use).
    #[arg(long, env = "DRAGONFLY_INJECTOR_MAX_CONCURRENT_REVIEWS")]
    pub max_concurrent_reviews: Option<usize>,
    /// Requests that may wait for one of those; beyond them the webhook answers 503 at once.
    #[arg(long, env = "DRAGONFLY_INJECTOR_MAX_QUEUED_REVIEWS", default_value_t = 64)]
    pub max_queued_reviews: usize,
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

#[derive(Debug, Args)]
pub struct TlsArgs {
    /// PEM certificate chain; its directory is watched and the pair reloaded on change.
    #[arg(
        long,
        env = "DRAGONFLY_INJECTOR_TLS_CERT_FILE",
        required_unless_present = "tls_managed_secret",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(
        long,
        env = "DRAGONFLY_INJECTOR_TLS_KEY_FILE",
        required_unless_present = "tls_managed_secret",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,
    /// Re-read the certificate at least this often, in case the directory watch misses a change
    /// (at least 1s).
    #[arg(long, env = "DRAGONFLY_INJECTOR_TLS_POLL_INTERVAL", value_parser = parse_poll_interval, default_value = "10s")]
    pub tls_poll_interval: Duration,
    #[command(flatten)]
    pub managed: super::managed::ManagedTlsArgs,
}

/// A poll interval of at least a second: shorter ones only burn CPU re-reading the files.
fn parse_poll_interval(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        short if short < Duration::from_secs(1) => Err(format!("{text:?} is shorter than the minimum, 1s")),
        interval => Ok(interval),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_intervals_under_a_second_are_refused() {
        assert_eq!(parse_poll_interval("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_poll_interval("1"), Ok(Duration::from_secs(1)));
        for short in ["0s", "999ms", "0"] {
            assert!(parse_poll_interval(short).unwrap_err().contains("minimum, 1s"), "{short}");
        }
    }
}
