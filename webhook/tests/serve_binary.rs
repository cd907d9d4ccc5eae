//! The real `dragonfly-injector serve` process: start-up, its log lines, signals.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;
use test_kit::{client_config, eventually, fixture, get, ready, review_for, Connection, Pki};

struct Server {
    child: Child,
    lines: mpsc::Receiver<Value>,
    webhook: SocketAddr,
    admin: SocketAddr,
    /// Everything logged up to and including the "serving" line.
    startup: Vec<Value>,
}

impl Server {
    /// Starts the binary on ephemeral ports and reads the addresses from its "serving" log line.
    fn start(dir: &Path, pki: &Pki, extra: &[&str]) -> Server {
        pki.leaf("server").write_pair(dir);
        std::fs::write(dir.join("injector.yaml"), "tools:\n  image: registry.local/tools:v1\n  pinning: \"off\"\n")
            .unwrap();
        let mut child = test_kit::serve_command(dir).args(extra).spawn().unwrap();
        let (sender, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let parsed = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if sender.send(parsed).is_err() {
                    break;
                }
            }
        });
        let mut startup = Vec::new();
        let serving = wait_for_line(&lines, |l| {
            startup.push(l.clone());
            l["message"] == "serving"
        });
        let address = |key: &str| serving[key].as_str().unwrap().parse().unwrap();
        Server { webhook: address("listen"), admin: address("admin_listen"), child, lines, startup }
    }

    fn signal(&self, name: &str) {
        assert!(Command::new("kill").args(["-s", name, &self.child.id().to_string()]).status().unwrap().success());
    }

    fn wait_exit(&mut self, seconds: u64) -> std::process::ExitStatus {
        let mut status = None;
        let _ = test_kit::wait_until(Duration::from_secs(seconds), Duration::from_millis(20), || {
            status = self.child.try_wait().unwrap();
            Ok(status.is_some())
        });
        status.unwrap_or_else(|| {
            self.child.kill().unwrap();
            panic!("the server did not exit within {seconds} s");
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_line(lines: &mpsc::Receiver<Value>, mut matches: impl FnMut(&Value) -> bool) -> Value {
    loop {
        let line = lines.recv_timeout(Duration::from_secs(20)).expect("expected log line did not come");
        if matches(&line) {
            return line;
        }
    }
}

#[tokio::test]
async fn serves_logs_one_json_line_per_admission_and_stops_on_sigterm() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("binary ca");
    let mut server = Server::start(temp.path(), &pki, &["--shutdown-delay", "1s"]);
    let warning =
        server.startup.iter().find(|l| l["message"].as_str().is_some_and(|m| m.contains("no cluster access")));
    assert_eq!(warning.expect("said once at start-up")["level"], "WARN");
    let admin = server.admin;
    eventually(20, "ready", || ready(admin)).await;
    // Every known series exists from the start, at zero, for rate() and absent() alerts.
    let metrics = String::from_utf8(get(admin, "/metrics").await.unwrap().body).unwrap();
    for series in [
        r#"dragonfly_injector_admission_requests_total{outcome="skipped",reason="over_limit"} 0"#,
        r#"dragonfly_injector_admission_requests_total{outcome="error",reason="overloaded"} 0"#,
        r#"dragonfly_injector_tools_image_resolution_failures_total{reason="timeout"} 0"#,
        r#"dragonfly_injector_tls_certificate_reloads_total{result="failure"} 0"#,
    ] {
        assert!(metrics.contains(series), "missing {series}");
    }

    let mut connection = Connection::open(server.webhook, client_config(&pki.ca_pem)).await.unwrap();
    let mut pod = fixture("pod-from-replicaset.json");
    pod["metadata"]["annotations"] =
        serde_json::json!({"dragonfly.io/inject-p2p": "true", "dragonfly.io/proxy-port": "x"});
    let reply =
        connection.post("/mutate", serde_json::to_vec(&review_for(&pod, "web", "uid-42")).unwrap()).await.unwrap();
    assert_eq!(reply.status, 200);
    let line = wait_for_line(&server.lines, |l| l["message"] == "admission reviewed");
    // The request's identity is recorded on its span once parsed; the event carries the rest.
    let span = &line["span"];
    assert_eq!(span["name"], "admission");
    assert_eq!(span["uid"], "uid-42");
    assert_eq!(span["namespace"], "web");
    assert_eq!(span["pod"], "web-7d4b9c8f6-");
    assert_eq!(span["decision"], "injected");
    // And at the top level of the line, where log pipelines index fields.
    assert_eq!((line["uid"].as_str(), line["namespace"].as_str()), (Some("uid-42"), Some("web")));
    assert_eq!((line["pod"].as_str(), line["decision"].as_str()), (Some("web-7d4b9c8f6-"), Some("injected")));
    assert_eq!(line["injected"], "proxy,socket,tools");
    assert_eq!(line["containers"], "web");
    let warnings = line["warnings"].as_array().expect("warnings are a JSON array");
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("dragonfly.io/proxy-port")), "{warnings:?}");
    assert!(line["duration_us"].is_u64());

    server.signal("TERM");
    eventually(5, "unready after SIGTERM", || async move {
        matches!(get(admin, "/readyz").await, Ok(r) if r.status == 503)
    })
    .await;
    assert_eq!(
        connection
            .post("/mutate", serde_json::to_vec(&review_for(&pod, "web", "during")).unwrap())
            .await
            .unwrap()
            .status,
        200,
        "still serving during the delay"
    );
    let status = server.wait_exit(20);
    assert!(status.success(), "{status:?}");
    wait_for_line(&server.lines, |l| l["message"] == "shut down cleanly");
}

#[tokio::test]
async fn a_second_signal_aborts_the_drain() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("abort ca");
    let mut server = Server::start(temp.path(), &pki, &["--shutdown-delay", "60s"]);
    let admin = server.admin;
    eventually(20, "ready", || ready(admin)).await;
    server.signal("TERM");
    wait_for_line(&server.lines, |l| l["message"].as_str().is_some_and(|m| m.starts_with("shutting down")));
    server.signal("INT");
    let status = server.wait_exit(10);
    assert_eq!(status.code(), Some(1), "aborting is a failure exit");
    wait_for_line(&server.lines, |l| l.as_str().is_some_and(|m| m.contains("second signal")));
}

#[test]
fn a_broken_config_file_stops_start_up_naming_file_line_and_key() {
    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("injector.yaml");
    std::fs::write(&config, "proxy:\n  port: 4001\n  hostFrom: podIP\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_dragonfly-injector"))
        .args([
            "serve",
            "--tls-cert-file",
            "/nonexistent/tls.crt",
            "--tls-key-file",
            "/nonexistent/tls.key",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains(config.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("proxy.hostFrom"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");

    let missing = Command::new(env!("CARGO_BIN_EXE_dragonfly-injector"))
        .args(["serve", "--tls-cert-file", "a", "--tls-key-file", "b", "--config", "/nonexistent/injector.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8(missing.stderr).unwrap().contains("cannot read config file /nonexistent/injector.yaml"));
}

#[test]
fn an_idle_server_does_not_reread_its_certificate() {
    test_kit::install_crypto();
    let temp = tempfile::tempdir().unwrap();
    let pki = Pki::new("binary ca");
    let server = Server::start(temp.path(), &pki, &["--log-level", "info,dragonfly_injector=debug"]);
    std::thread::sleep(Duration::from_secs(2));
    let reads = |lines: Vec<Value>| lines.iter().filter(|l| l["message"] == "reading the certificate files").count();
    let idle: Vec<Value> = server.lines.try_iter().collect();
    // Once at start-up; its own reads used to trigger the watcher again, 20 times a second.
    assert_eq!(reads(server.startup.clone()) + reads(idle), 1);
}
