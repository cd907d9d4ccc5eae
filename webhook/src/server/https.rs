//! The accept loop of both ports (TLS for the webhook, plain HTTP for the admin port), with the
//! limits a webhook reachable by anything in the cluster needs:
//!
//! - at most `max_connections` open; a connection beyond them is closed at once and counted
//!   (`dragonfly_injector_connections_refused_total`), so a flood costs a socket, not memory;
//! - a TLS handshake must finish within the header timeout;
//! - a request's head must arrive within the header timeout, which for HTTP/1.1 also closes a
//!   keep-alive connection that sends nothing more (hyper starts the timer when it waits);
//! - a connection with no request in flight for `idle_timeout` is closed gracefully (HTTP/2
//!   GOAWAY, HTTP/1.1 `Connection: close`);
//! - on shutdown, accepting stops, keep-alive clients are told to go away once their in-flight
//!   request is answered, and open connections get `drain_timeout` to finish.
//!
//! Request bodies have their own timeout and byte budget in the webhook's router.

use crate::metrics::Metrics;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// A connection's requests in flight and when the last one ended.
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    last_millis: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity { started: Instant::now(), in_flight: AtomicUsize::new(0), last_millis: AtomicU64::new(0) }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_millis.load(Ordering::SeqCst));
        Some(self.started.elapsed().saturating_sub(last))
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.started.elapsed().as_millis() as u64;
        self.0.last_millis.store(now, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn connection_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true).timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(30));
    builder
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `stop` turns true, then
/// drains open connections for at most `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    mut stop: watch::Receiver<bool>,
    drain_timeout: Duration,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
) {
    let builder = connection_builder(&limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            tracing::debug!(%peer, max = limits.max_connections, "connection limit reached; closed at once");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (tls, app, builder, stop) = (tls.clone(), app.clone(), builder.clone(), stop.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => drive(builder, tcp, app, stop, limits, peer).await,
                Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => drive(builder, stream, app, stop, limits, peer).await,
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; draining open connections");
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = slots.acquire_many(all) => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain_timeout) => tracing::warn!(?drain_timeout, "drain timed out; closing the remaining connections"),
    }
}

/// Runs one connection to its end: closed by the peer, idle too long, or told to stop.
async fn drive<S>(
    builder: auto::Builder<TokioExecutor>,
    stream: S,
    app: Router,
    mut stop: watch::Receiver<bool>,
    limits: ConnectionLimits,
    peer: std::net::SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = tracked.begin();
        let app = app.clone();
        async move {
            let response = app.oneshot(request.map(axum::body::Body::new)).await;
            drop(in_flight);
            response
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut tick = tokio::time::interval((limits.idle_timeout / 4).max(Duration::from_millis(10)));
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = stopped(&mut stop), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tick.tick(), if !closing => {
                if activity.idle_for().is_some_and(|idle| idle >= limits.idle_timeout) {
                    tracing::debug!(%peer, "connection idle; closing it");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone). The borrow `wait_for` returns is not
/// `Send`, so it is dropped here rather than carried through `select!`.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}
