//! The accept loop of both ports (TLS for the webhook, plain HTTP for the admin port), with the
//! limits a webhook reachable by anything in the cluster needs:
//!
//! - at most `max_connections` open; a connection beyond them is closed at once and counted
//!   (`dragonfly_injector_connections_refused_total`), so a flood costs a socket, not memory;
//! - a TLS handshake, and a connection's first request, must arrive within the header timeout,
//!   and so must an HTTP/1.1 request head once its first byte has come;
//! - a connection that has served requests and has none in flight for `idle_timeout` is closed
//!   gracefully (HTTP/2 GOAWAY, which tells the client which requests to retry). The default
//!   idle timeout, 120 s, outlasts the API server's own (90 s), so an HTTP/1.1 keep-alive
//!   connection is never closed under a request the API server is just sending: Go does not
//!   retry a POST on a connection the server closed;
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

/// A connection's requests: how many so far, how many in flight, when the last one ended, and
/// when the first byte of a request head that has not been answered yet arrived.
struct Activity {
    started: Instant,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    last_millis: AtomicU64,
    /// Milliseconds since `started`, plus one; 0 when no head is pending.
    head_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            requests: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            last_millis: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
        }
    }

    fn now_millis(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_since.store(0, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Bytes arrived; with no request in flight they start the next request's head.
    fn read(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 && self.head_since.load(Ordering::SeqCst) == 0 {
            self.head_since.store(self.now_millis() + 1, Ordering::SeqCst);
        }
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_millis.load(Ordering::SeqCst));
        Some(self.started.elapsed().saturating_sub(last))
    }

    /// How long a request head has been arriving without being complete.
    fn head_pending_for(&self) -> Option<Duration> {
        match self.head_since.load(Ordering::SeqCst) {
            0 => None,
            since => Some(Duration::from_millis(self.now_millis().saturating_sub(since - 1))),
        }
    }

    /// Why the connection should be closed now, if it should.
    fn overdue(&self, limits: &ConnectionLimits, http2: bool) -> Option<&'static str> {
        if self.requests.load(Ordering::SeqCst) == 0 && self.started.elapsed() >= limits.header_timeout {
            return Some("no request within the header timeout");
        }
        // HTTP/2 sends frames (pings, settings) between requests: only HTTP/1.1 bytes are a head.
        if !http2 && self.head_pending_for().is_some_and(|pending| pending >= limits.header_timeout) {
            return Some("request head not complete within the header timeout");
        }
        if self.requests.load(Ordering::SeqCst) > 0 && self.idle_for().is_some_and(|idle| idle >= limits.idle_timeout) {
            return Some("idle");
        }
        None
    }
}

/// The connection's stream, telling [`Activity`] when bytes arrive.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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

fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own head timeout also runs while a keep-alive connection waits for its next
    // request, which would close it long before the API server stops reusing it; `drive` times
    // heads from their first byte instead.
    builder.http1().keep_alive(true).timer(TokioTimer::new()).header_read_timeout(None);
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
    let builder = connection_builder();
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
                None => drive(builder, tcp, false, app, stop, limits, peer).await,
                Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        drive(builder, stream, http2, app, stop, limits, peer).await
                    }
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
    http2: bool,
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
    let stream = Watched { inner: stream, activity: activity.clone() };
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let every = limits.header_timeout.min(limits.idle_timeout) / 4;
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
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
                match activity.overdue(&limits, http2) {
                    Some("idle") => {
                        tracing::debug!(%peer, "connection idle; closing it");
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    // A head that does not arrive: nothing to answer, so no graceful goodbye.
                    Some(why) => {
                        tracing::debug!(%peer, why, "closing the connection");
                        return;
                    }
                    None => {}
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
