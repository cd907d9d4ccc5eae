//! The limits on connections and bodies, against the real server on loopback with short
//! timeouts: idle TLS, HTTP/1.1 and HTTP/2 connections are closed, a stalled body gets 408, an
//! oversized `Expect: 100-continue` gets 413 before any body is sent, connections beyond the
//! cap are closed at once and counted, bodies beyond the byte budget get 503, and the admin
//! port drops a client that never finishes its request head.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use dragonfly_injector::server::{self, Running, ServeArgs};
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_kit::{client_config, get, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const SHORT: Duration = Duration::from_millis(400);

/// A server with short timeouts; `adjust` changes the arguments further.
async fn start(dir: &std::path::Path, pki: &Pki, adjust: impl FnOnce(&mut ServeArgs)) -> Running {
    let config = "tools: {image: registry.local/tools:v1, pinning: \"off\"}\n";
    let mut args = test_kit::serve_args(dir, config, pki.leaf("webhook").write_pair(dir), Duration::ZERO);
    args.connections.header_read_timeout = SHORT;
    args.connections.body_read_timeout = SHORT;
    args.connections.idle_timeout = SHORT;
    adjust(&mut args);
    let running = server::start(args).await.unwrap();
    // The certificate loads in the background: no handshake succeeds before it has.
    let admin = running.admin_addr;
    test_kit::eventually(10, "ready", || test_kit::ready(admin)).await;
    running
}

async fn tls(running: &Running, pki: &Pki, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
    let mut config = (*client_config(&pki.ca_pem)).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(running.webhook_addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
}

/// Reads until the peer closes (or `limit` passes): what it sent, and whether it closed.
async fn read_until_closed<S: AsyncReadExt + Unpin>(stream: &mut S, limit: Duration) -> (String, bool) {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&received).into_owned(), closed)
}

fn mutate_head(length: usize, extra: &str) -> String {
    format!("POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tls_and_http1_connections_are_closed() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("ca");
    let running = start(temp.path(), &pki, |_| {}).await;

    // A handshake and then nothing: dropped once the request head is overdue.
    let mut silent = tls(&running, &pki, &[]).await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(closed, "an idle TLS connection stays open");
    assert!(started.elapsed() >= SHORT / 2, "closed before the timeout: {:?}", started.elapsed());

    // One request, then keep-alive silence: closed once idle.
    let mut kept = tls(&running, &pki, &[b"http/1.1"]).await.unwrap();
    kept.write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n{}").await.unwrap();
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(closed, "an idle keep-alive connection stays open");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_stops_half_way_is_dropped_but_a_quiet_used_connection_stays() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("ca");
    let running = start(temp.path(), &pki, |args| args.connections.idle_timeout = Duration::from_secs(60)).await;
    // A used keep-alive connection outlives the header timeout: only the idle timeout ends it.
    let mut kept = tls(&running, &pki, &[b"http/1.1"]).await.unwrap();
    kept.write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\n\r\n{}").await.unwrap();
    let mut status = [0u8; 12];
    kept.read_exact(&mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 400");
    let (_, closed) = read_until_closed(&mut kept, SHORT * 3).await;
    assert!(!closed, "a keep-alive connection the client may reuse was closed after the header timeout");
    // Half a head on that same connection: dropped once the header timeout passes.
    kept.write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\n").await.unwrap();
    let (_, closed) = read_until_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(closed, "a half-sent head kept the connection");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_sent_away() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("ca");
    let running = start(temp.path(), &pki, |args| args.connections.header_read_timeout = Duration::from_secs(30)).await;
    let stream = tls(&running, &pki, &[b"h2"]).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(connection);
    let request = hyper::Request::post("https://localhost/mutate")
        .body(http_body_util::Full::new(hyper::body::Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 400);
    let ended = tokio::time::timeout(Duration::from_secs(5), driver).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection was not closed");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_oversized_bodies_are_answered_at_once() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("ca");
    let running = start(temp.path(), &pki, |args| args.connections.header_read_timeout = Duration::from_secs(30)).await;

    // Ten bytes of a thousand, then silence: 408 after the body timeout.
    let mut stalled = tls(&running, &pki, &[]).await.unwrap();
    stalled.write_all(format!("{}{{\"kind\": \"A", mutate_head(1000, "")).as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // 10 MiB announced with Expect: 100-continue: 413, and no body ever sent.
    let mut oversized = tls(&running, &pki, &[]).await.unwrap();
    oversized.write_all(mutate_head(10 << 20, "expect: 100-continue\r\n").as_bytes()).await.unwrap();
    let mut first = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(2), oversized.read_exact(&mut first)).await.unwrap().unwrap();
    assert_eq!(&first, b"HTTP/1.1 413");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_cap_and_the_body_budget_clients_are_refused() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("ca");
    let running = start(temp.path(), &pki, |args| {
        args.connections.max_connections = 2;
        args.connections.max_body_bytes_in_flight = 1000;
        args.connections.header_read_timeout = Duration::from_secs(30);
        args.connections.body_read_timeout = Duration::from_secs(30);
    })
    .await;
    let mut first = tls(&running, &pki, &[]).await.unwrap();
    let mut second = tls(&running, &pki, &[]).await.unwrap();
    // The third is closed before its handshake completes.
    assert!(tls(&running, &pki, &[]).await.is_err(), "a third connection was served");
    let metrics = get(running.admin_addr, "/metrics").await.unwrap();
    assert!(String::from_utf8_lossy(&metrics.body).contains("dragonfly_injector_connections_refused_total 1"));

    // 800 of the 1000 budget bytes held by a stalled body; another 800 do not fit.
    first.write_all(mutate_head(800, "").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    second.write_all(mutate_head(800, "").as_bytes()).await.unwrap();
    let mut status = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(2), second.read_exact(&mut status)).await.unwrap().unwrap();
    assert_eq!(&status, b"HTTP/1.1 503");
    drop(first);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_drops_a_client_that_never_finishes_its_request() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("ca");
    let running = start(temp.path(), &pki, |_| {}).await;
    let mut slow = TcpStream::connect(running.admin_addr).await.unwrap();
    slow.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(closed, "the admin port kept a half-sent request open");
    assert_eq!(get(running.admin_addr, "/livez").await.unwrap().status, 200, "and still serves others");
    running.shutdown().await;
}
