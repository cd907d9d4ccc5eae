//! `dragonfly-injector serve`: start-up, the two listeners, and shutdown.

pub mod admin;
mod args;
pub mod edge;
pub mod https;
pub mod managed;
pub mod pool;
pub mod state;
pub mod tls;
pub mod webhook;

pub use args::{ConnectionArgs, ListenArgs, ReviewArgs, ServeArgs, ShutdownArgs, TlsArgs};

use crate::cluster::{NamespaceCache, NodeCache};
use crate::config::Config;
use crate::inject::Settings;
use crate::metrics::Metrics;
use crate::pinning;
use anyhow::Context as _;
use https::ConnectionLimits;
use pool::ReviewPool;
use state::WebhookState;
use std::net::SocketAddr;
use std::sync::Arc;
use tls::{CertReloader, CertResolver};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

const ADMIN_MAX_CONNECTIONS: usize = 64;

/// A started server: both listeners bound, the certificate reloader running.
pub struct Running {
    pub webhook_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<WebhookState>,
    shutdown: ShutdownArgs,
    stop_webhook: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    webhook_task: JoinHandle<()>,
    admin_task: JoinHandle<()>,
    reload_task: JoinHandle<()>,
    pin_task: Option<JoinHandle<()>>,
}

pub async fn start(args: ServeArgs) -> anyhow::Result<Running> {
    let ServeArgs { config: config_path, tls, listen, cluster, shutdown, reviews, connections } = args;
    let config = Config::load(&config_path)?;
    let own_namespace = cluster.own_namespace();
    let settings = Settings::new(&config, own_namespace.as_deref());
    if settings.socket.as_ref().is_some_and(|s| s.file_only) {
        tracing::warn!(path = %config.socket.path, "the socket's directory is shared with the host; mounting the socket file alone, which goes stale when dfdaemon restarts");
    }

    let client = cluster.client().await?;
    if client.is_none() {
        tracing::warn!("no cluster access (not in a cluster, no --kubeconfig): namespace-label opt-in, the Pod Security check and the node architecture check are off");
    }
    let namespaces = client.clone().map(NamespaceCache::start);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let metrics = Arc::new(Metrics::default());
    metrics.register_known(&webhook::request_labels(), pinning::resolver::ResolveError::LABELS);
    let certificate = Arc::new(CertResolver::default());
    // The self-managed certificate's settings, client and namespace, refused before anything
    // is bound when it cannot work.
    let managed = match tls.managed.settings()? {
        Some(settings) => Some(managed::Manager {
            settings,
            namespace: own_namespace.context("the self-managed TLS mode needs the injector's namespace")?,
            client: client.clone().context("the self-managed TLS mode needs cluster access")?,
            resolver: certificate.clone(),
            provider: provider.clone(),
            metrics: metrics.clone(),
        }),
        None => None,
    };
    let (tools_image, pin_task) =
        pinning::spawn(&config.tools, &config.registry, metrics.clone(), client.map(NodeCache::start))
            .with_context(|| format!("invalid registry settings in {}", config_path.display()))?;
    let pool = ReviewPool::new(reviews.concurrency(), reviews.max_queued_reviews)
        .with_body_limits(connections.max_body_bytes_in_flight, connections.body_read_timeout);
    let state =
        Arc::new(WebhookState::new(settings, tools_image, namespaces, metrics.clone(), certificate.clone(), pool));
    let tls_config =
        Arc::new(tls::server_config(certificate.clone(), provider.clone()).context("building the TLS configuration")?);
    let webhook_listener =
        TcpListener::bind(listen.listen).await.with_context(|| format!("cannot listen on {}", listen.listen))?;
    let admin_listener = TcpListener::bind(listen.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", listen.admin_listen))?;
    let (webhook_addr, admin_addr) = (webhook_listener.local_addr()?, admin_listener.local_addr()?);

    let reload_task = match (managed, tls.tls_cert_file, tls.tls_key_file) {
        (Some(manager), _, _) => tokio::spawn(manager.run()),
        (None, Some(cert_path), Some(key_path)) => {
            let reloader = CertReloader {
                cert_path,
                key_path,
                resolver: certificate,
                provider,
                metrics: metrics.clone(),
                poll_interval: tls.tls_poll_interval,
            };
            tokio::spawn(reloader.run())
        }
        _ => anyhow::bail!("give --tls-cert-file and --tls-key-file, or --tls-managed-secret"),
    };
    let (stop_webhook, stop_webhook_rx) = watch::channel(false);
    let (stop_admin, stop_admin_rx) = watch::channel(false);
    let limits = ConnectionLimits {
        max_connections: connections.max_connections,
        header_timeout: connections.header_read_timeout,
        idle_timeout: connections.idle_timeout,
    };
    let webhook_task = tokio::spawn(https::serve(
        webhook_listener,
        Some(TlsAcceptor::from(tls_config)),
        webhook::router(state.clone(), listen.max_body_bytes),
        stop_webhook_rx,
        shutdown.drain_timeout,
        limits,
        metrics.clone(),
    ));
    // Probes and scrapes: few clients, the same timeouts.
    let admin_limits = ConnectionLimits { max_connections: ADMIN_MAX_CONNECTIONS, ..limits };
    let admin_task = tokio::spawn(https::serve(
        admin_listener,
        None,
        admin::router(state.clone()),
        stop_admin_rx,
        shutdown.drain_timeout,
        admin_limits,
        metrics,
    ));
    tracing::info!(
        listen = %webhook_addr,
        admin_listen = %admin_addr,
        tools_image = %config.tools.image,
        version = env!("CARGO_PKG_VERSION"),
        "serving"
    );
    Ok(Running {
        webhook_addr,
        admin_addr,
        state,
        shutdown,
        stop_webhook,
        stop_admin,
        webhook_task,
        admin_task,
        reload_task,
        pin_task,
    })
}

impl Running {
    /// Unready first; after the shutdown delay stop accepting and drain the webhook's
    /// connections; the admin port (probes) goes last.
    pub async fn shutdown(self) {
        let Running {
            state, shutdown, stop_webhook, stop_admin, webhook_task, admin_task, reload_task, pin_task, ..
        } = self;
        state.readiness.start_shutdown();
        tracing::info!(delay = ?shutdown.shutdown_delay, "shutting down: reporting unready, still serving");
        tokio::time::sleep(shutdown.shutdown_delay).await;
        let _ = stop_webhook.send(true);
        let _ = webhook_task.await;
        let _ = stop_admin.send(true);
        let _ = admin_task.await;
        reload_task.abort();
        if let Some(task) = pin_task {
            task.abort();
        }
        tracing::info!("shut down cleanly");
    }
}

/// `serve`: runs until SIGTERM or SIGINT, then shuts down gracefully; a second signal aborts.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let running = start(args).await?;
    signals.next().await;
    tokio::select! {
        () = running.shutdown() => Ok(()),
        () = signals.next() => anyhow::bail!("second signal: aborting without draining"),
    }
}

/// SIGTERM (the kubelet) or SIGINT (a terminal).
pub(crate) struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    pub(crate) async fn next(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
