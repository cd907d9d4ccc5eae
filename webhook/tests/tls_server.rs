//! The real server over real TLS on loopback: certificate swaps while requests flow, a
//! certificate that arrives late, and graceful shutdown of keep-alive connections.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use dragonfly_injector::server;
use dragonfly_injector::server::ServeArgs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use test_kit::{client_config, eventually, fixture, get, ready, review_for, Connection, KubeletDir, Pki};

/// `serve` with a fixed tools tag (no registry) and this certificate pair.
fn serve_args(dir: &Path, cert: PathBuf, key: PathBuf, shutdown_delay: Duration) -> ServeArgs {
    let config = "tools:\n  image: registry.local/tools:v1\n  pinning: \"off\"\n";
    test_kit::serve_args(dir, config, (cert, key), shutdown_delay)
}

fn review_body(uid: &str) -> Vec<u8> {
    serde_json::to_vec(&review_for(&fixture("pod-annotated.json"), "apps", uid)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_swap_is_picked_up_without_failing_a_request() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("test ca");
    let first = pki.leaf("first");
    let second = pki.leaf("second");
    let certs = temp.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let mut dir = KubeletDir::new(&certs, &first);
    let running = server::start(serve_args(temp.path(), dir.cert(), dir.key(), Duration::ZERO)).await.unwrap();
    let (addr, admin) = (running.webhook_addr, running.admin_addr);
    eventually(10, "ready", || ready(admin)).await;
    let tls = client_config(&pki.ca_pem);

    // Requests flow on new connections and on one keep-alive connection during the swap.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (tls, stop, sent, failed) = (tls.clone(), stop.clone(), sent.clone(), failed.clone());
        tokio::spawn(async move {
            let mut kept = Connection::open(addr, tls.clone()).await.unwrap();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let fresh = async {
                    let mut connection = Connection::open(addr, tls.clone()).await.ok()?;
                    connection.post("/mutate", review_body(&format!("fresh-{n}"))).await.ok()
                };
                for reply in [fresh.await, kept.post("/mutate", review_body(&format!("kept-{n}"))).await.ok()] {
                    sent.fetch_add(1, Ordering::SeqCst);
                    if reply.is_none_or(|r| r.status != 200) {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    eventually(10, "requests flowing", || {
        let sent = sent.clone();
        async move { sent.load(Ordering::SeqCst) >= 10 }
    })
    .await;
    dir.swap(&second);
    eventually(10, "the new certificate served", || {
        let tls = tls.clone();
        let expected = second.der.clone();
        async move { Connection::open(addr, tls).await.is_ok_and(|c| c.server_cert == expected) }
    })
    .await;
    let after_swap = sent.load(Ordering::SeqCst);
    eventually(10, "requests after the swap", || {
        let sent = sent.clone();
        async move { sent.load(Ordering::SeqCst) >= after_swap + 10 }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    assert_eq!(failed.load(Ordering::SeqCst), 0, "of {} requests", sent.load(Ordering::SeqCst));

    // A broken swap (a key that does not match) keeps the last good pair serving.
    let stray = pki.leaf("stray");
    let reloads = |text: &str, result: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("dragonfly_injector_tls_certificate_reloads_total{{result=\"{result}\"}}"))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mismatched =
        test_kit::Leaf { cert_pem: stray.cert_pem.clone(), key_pem: first.key_pem.clone(), der: stray.der.clone() };
    dir.swap(&mismatched);
    eventually(10, "the failed reload counted", || async move {
        let metrics = get(admin, "/metrics").await.unwrap();
        reloads(&String::from_utf8(metrics.body).unwrap(), "failure") >= 1
    })
    .await;
    let connection = Connection::open(addr, tls.clone()).await.unwrap();
    assert_eq!(connection.server_cert, second.der, "the last good certificate keeps serving");
    assert!(ready(admin).await);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_certificate_keeps_the_server_unready_until_it_appears() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("late ca");
    let (cert, key) = (temp.path().join("tls.crt"), temp.path().join("tls.key"));
    let running = server::start(serve_args(temp.path(), cert.clone(), key.clone(), Duration::ZERO)).await.unwrap();
    let admin = running.admin_addr;
    let reply = get(admin, "/readyz").await.unwrap();
    assert_eq!(reply.status, 503);
    assert!(String::from_utf8(reply.body).unwrap().contains("no serving certificate loaded"));
    assert!(
        Connection::open(running.webhook_addr, client_config(&pki.ca_pem)).await.is_err(),
        "no handshake without a certificate"
    );

    pki.leaf("late").write_pair(temp.path());
    eventually(10, "ready once the certificate exists", || ready(admin)).await;
    let mut connection = Connection::open(running.webhook_addr, client_config(&pki.ca_pem)).await.unwrap();
    assert_eq!(connection.post("/mutate", review_body("late")).await.unwrap().status, 200);
    let metrics = String::from_utf8(get(admin, "/metrics").await.unwrap().body).unwrap();
    let expiry = metrics
        .lines()
        .find(|l| l.starts_with("dragonfly_injector_tls_certificate_expiry_timestamp_seconds "))
        .unwrap();
    assert!(expiry.rsplit(' ').next().unwrap().parse::<i64>().unwrap() > 1_700_000_000, "{expiry}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_unready_first_then_drains_keep_alive_connections() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("shutdown ca");
    let (cert, key) = pki.leaf("server").write_pair(temp.path());
    let running = server::start(serve_args(temp.path(), cert, key, Duration::from_millis(1500))).await.unwrap();
    let (addr, admin) = (running.webhook_addr, running.admin_addr);
    eventually(10, "ready", || ready(admin)).await;
    let tls = client_config(&pki.ca_pem);
    let mut kept = Connection::open(addr, tls.clone()).await.unwrap();
    assert_eq!(kept.post("/mutate", review_body("before")).await.unwrap().status, 200);

    let shutdown = tokio::spawn(running.shutdown());
    eventually(5, "unready while shutting down", || async move {
        matches!(get(admin, "/readyz").await, Ok(r) if r.status == 503 && String::from_utf8_lossy(&r.body).contains("shutting down"))
    })
    .await;
    // Still serving during the delay, on old and new connections alike.
    assert_eq!(kept.post("/mutate", review_body("during")).await.unwrap().status, 200);
    let mut fresh = Connection::open(addr, tls.clone()).await.unwrap();
    assert_eq!(fresh.post("/mutate", review_body("fresh")).await.unwrap().status, 200);

    tokio::time::timeout(Duration::from_secs(10), shutdown).await.expect("drained in time").unwrap();
    assert!(kept.post("/mutate", review_body("after")).await.is_err(), "keep-alive connection closed");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
    assert!(get(admin, "/livez").await.is_err(), "admin port closed last");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pair_is_reported_once_and_the_watcher_does_not_chase_its_own_reads() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("test ca");
    let (cert, key) = pki.leaf("first").write_pair(temp.path());
    // Polled every second as well: a broken pair must not be reported again on every poll.
    let mut args = serve_args(temp.path(), cert, key.clone(), Duration::ZERO);
    args.tls.tls_poll_interval = Duration::from_secs(1);
    let running = server::start(args).await.unwrap();
    let admin = running.admin_addr;
    eventually(10, "ready", || ready(admin)).await;
    let reloads = |result: &'static str| async move {
        let text = String::from_utf8(get(admin, "/metrics").await.unwrap().body).unwrap();
        let prefix = format!("dragonfly_injector_tls_certificate_reloads_total{{result=\"{result}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix).map(|n| n.parse::<u64>().unwrap())).unwrap_or(0)
    };
    // Idle: the first load only, however long it sits (each read of the files used to raise
    // events that made it read them again, 20 times a second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!((reloads("success").await, reloads("failure").await), (1, 0));
    // A broken key: one failure for the one change, and the old pair keeps serving.
    std::fs::write(&key, "not a key").unwrap();
    eventually(10, "the broken key noticed", || async { reloads("failure").await >= 1 }).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!((reloads("success").await, reloads("failure").await), (1, 1));
    assert!(ready(admin).await, "the previous certificate keeps serving");
    running.shutdown().await;
}
