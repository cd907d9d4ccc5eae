//! End to end against a real control plane (etcd, kube-apiserver, kube-controller-manager built
//! from the Go module proxy): the chart is installed with `helm install`, the webhook runs on
//! the host with the config and certificate the chart stored, and every scenario reads back what
//! the API server stored. One control plane serves all scenarios; this binary runs them itself
//! (harness = false) so that it can tear everything down whatever happens.

use dragonfly_injector::server::https::{self, ConnectionLimits};
use oci_client::secrets::RegistryAuth;
use serde_json::{json, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use test_kit::cluster::{control_plane_binaries, spawn_tied, ControlPlane, Options};
use test_kit::dragonfly::{blob, sha256_hex, Dragonfly};
use test_kit::free_port;
use test_kit::node::{Node, NODE_IP, TAINT};
use test_kit::oci::Image;
use test_kit::origin::Origin;
use test_kit::peer::{PeerLink, HOST_LINK_IP, PEER_IP, PEER_NETNS};
use test_kit::registry::{push_index, pushing_client, IndexSpec, Registry, RegistryOptions};
use test_kit::{succeed, wait_for, wait_until, KubeletDir, Leaf, Pki, Waited};

#[path = "e2e/csi.rs"]
mod csi;

const RELEASE_NAMESPACE: &str = "dragonfly-system";
/// Where the node's dfdaemon keeps its socket: deliberately not dfget's default directory.
const HOST_SOCKET_DIR: &str = "/run/dfi-e2e/dragonfly";
const FULLNAME: &str = "df-dragonfly-injector";

struct Env {
    plane: ControlPlane,
    registry: std::sync::Mutex<Registry>,
    pinned_image: String,
    webhook_pki: Pki,
    certs: std::sync::Mutex<KubeletDir>,
    webhook: std::sync::Mutex<Option<Child>>,
    webhook_args: Vec<String>,
    webhook_port: u16,
    /// How the cluster's API server reaches webhooks on this host (127.0.0.1 unless
    /// E2E_WEBHOOK_HOST says otherwise for an external cluster).
    webhook_host: std::net::IpAddr,
    admin_port: u16,
    work: PathBuf,
    /// The webhook image baked from the dist (repository, index digest), for the chart's own
    /// Deployment on the node.
    webhook_image: Option<(String, String)>,
    /// The real node and the real Dragonfly on it (not against an external cluster).
    real: Option<Real>,
}

/// What runs pods for real: the node, Dragonfly's scheduler and dfdaemon, and the origin they
/// download from.
struct Real {
    node: std::sync::Mutex<Node>,
    dragonfly: std::sync::Mutex<Dragonfly>,
    /// Node B: a second dfdaemon in its own network namespace, registered with the same
    /// scheduler (its socket on the host, for dfget here).
    peer: std::sync::Mutex<Dragonfly>,
    origin: Origin,
    /// The origin's files and their SHA-256, by name.
    files: std::collections::BTreeMap<String, String>,
    /// Node B's namespace and link: dropped after both dfdaemons.
    link: PeerLink,
    _work: tempfile::TempDir,
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.get(9..12)?.parse().ok()?;
    Some((status, reply.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}

impl Env {
    fn setup() -> Env {
        test_kit::install_crypto();
        let helm = test_kit::cached_tool("helm.sh");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let registry = Registry::start(RegistryOptions::default());
        // The real tools image, baked from the cross-built binaries, when scripts/cross-build.sh
        // has run (scripts/test.sh runs it); otherwise a hand-made two-platform index.
        let mut webhook_image = None;
        let (tools_repository, digest) = match test_kit::bake::publish_images(&registry.host, "v1") {
            Some(published) => {
                eprintln!("e2e: tools image {}:v1 baked from the dist with docker buildx bake", published.tools.0);
                webhook_image = published.webhook;
                published.tools
            }
            None => {
                eprintln!("e2e: no target/dist (scripts/cross-build.sh); pushing a hand-made index as the tools image");
                let repository = format!("{}/dragonfly/tools", registry.host);
                let digest = runtime.block_on(push_index(
                    &pushing_client(None),
                    &RegistryAuth::Anonymous,
                    &registry.host,
                    IndexSpec {
                        repository: "dragonfly/tools",
                        tag: "v1",
                        platforms: &["linux/amd64", "linux/arm64"],
                        attestation: true,
                        salt: "e2e",
                    },
                ));
                (repository, digest)
            }
        };
        // A real node unless the cluster is someone else's: its bridge comes first, because the
        // API server listens on the node's address so that pods reach it.
        let real = std::env::var_os("E2E_KUBECONFIG").is_none().then(|| {
            let work = tempfile::tempdir().unwrap();
            let node = Node::prepare(&work.path().join("node"));
            (work, node)
        });
        let (plane, webhook_host) = match std::env::var_os("E2E_KUBECONFIG") {
            Some(kubeconfig) => {
                let host = std::env::var("E2E_WEBHOOK_HOST")
                    .expect("E2E_WEBHOOK_HOST: this host's address as the cluster sees it");
                (ControlPlane::external(kubeconfig.into()), host.parse().expect("E2E_WEBHOOK_HOST is an IP address"))
            }
            None => {
                let options = Options { address: NODE_IP.parse().unwrap(), node: true };
                (ControlPlane::start_with(&control_plane_binaries(), &options), std::net::IpAddr::from([127, 0, 0, 1]))
            }
        };
        let real = real.map(|(work, mut node)| {
            node.join(&plane, &control_plane_binaries(), &registry.host);
            import_app_images(&node);
            // Node B's link first: the scheduler and node A's servers listen on its host end.
            let link = PeerLink::create();
            let dragonfly = Dragonfly::start(
                &work.path().join("dragonfly"),
                std::path::Path::new(HOST_SOCKET_DIR),
                NODE_IP,
                HOST_LINK_IP,
            );
            let peer = Dragonfly::start_peer(
                &work.path().join("peer"),
                &work.path().join("peer-run"),
                PEER_NETNS,
                PEER_IP,
                &dragonfly,
            );
            let mut served = std::collections::BTreeMap::new();
            let mut files = std::collections::BTreeMap::new();
            // Above and below 4 MiB: dfdaemon asks the scheduler only for the larger.
            for (name, size, seed) in [("blob-8MiB", 8 * 1024 * 1024 + 4099, 8u8), ("blob-1MiB", 1024 * 1024, 1u8)] {
                let bytes = blob(size, seed);
                let sum = sha256_hex(&bytes);
                served.insert(format!("{name}.sha256"), format!("{sum}  {name}\n").into_bytes());
                served.insert(name.to_owned(), bytes);
                files.insert(name.to_owned(), sum);
            }
            // On the link's host end: dfdaemon on either node reaches it, pods (whose only route
            // is the bridge's subnet) do not.
            let origin = Origin::start_on(HOST_LINK_IP.parse().unwrap(), served);
            Real {
                node: std::sync::Mutex::new(node),
                dragonfly: std::sync::Mutex::new(dragonfly),
                peer: std::sync::Mutex::new(peer),
                origin,
                files,
                link,
                _work: work,
            }
        });
        let listen_host = if webhook_host.is_loopback() { "127.0.0.1" } else { "0.0.0.0" };
        let work = plane.dir.path().join("webhook");
        std::fs::create_dir_all(&work).unwrap();

        // The chart, installed for real, pointing the API server at the webhook on the host.
        let webhook_pki = Pki::new("webhook-ca");
        let leaf = webhook_pki.leaf_for("webhook", webhook_host);
        let (webhook_port, admin_port) = (free_port(), free_port());
        std::fs::write(work.join("ca.pem"), &webhook_pki.ca_pem).unwrap();
        leaf.write_pair(&work);
        succeed(Command::new(&plane.kubectl).arg(format!("--kubeconfig={}", plane.kubeconfig.display())).args([
            "create",
            "namespace",
            RELEASE_NAMESPACE,
        ]));
        succeed(
            Command::new(&plane.kubectl)
                .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
                .args(["create", "secret", "tls", "webhook-tls", "-n", RELEASE_NAMESPACE])
                .arg(format!("--cert={}", work.join("tls.crt").display()))
                .arg(format!("--key={}", work.join("tls.key").display())),
        );
        let chart = test_kit::repo_root().join("charts/dragonfly-injector");
        succeed(
            Command::new(&helm)
                .args(["install", "df"])
                .arg(&chart)
                .args(["--namespace", RELEASE_NAMESPACE, "--kubeconfig"])
                .arg(&plane.kubeconfig)
                .args([
                    "--set",
                    &format!("webhook.url=https://{webhook_host}:{webhook_port}/mutate"),
                    "--set",
                    "webhook.failurePolicy=Fail",
                    "--set",
                    "tls.mode=secret",
                    "--set",
                    "tls.secret.name=webhook-tls",
                    "--set-file",
                    &format!("tls.secret.caBundle={}", work.join("ca.pem").display()),
                    "--set",
                    &format!("tools.image.repository={tools_repository}"),
                    "--set",
                    "tools.image.tag=v1",
                    "--set",
                    "tools.pinning=required",
                    // The minimum, so that the registry-stopped scenario sees real failed refreshes.
                    "--set",
                    "tools.refreshInterval=10s",
                    "--set",
                    &format!("registry.plainHttp={{{}}}", registry.host),
                    // Not dfget's default: pods must still find it where dfget looks.
                    "--set",
                    &format!("socket.path={HOST_SOCKET_DIR}/dfdaemon.sock"),
                ]),
        );

        // The webhook runs with exactly what the chart stored.
        let stored = |args: &[&str]| {
            String::from_utf8(
                succeed(
                    Command::new(&plane.kubectl).arg(format!("--kubeconfig={}", plane.kubeconfig.display())).args(args),
                )
                .stdout,
            )
            .unwrap()
        };
        let config =
            stored(&["get", "configmap", FULLNAME, "-n", RELEASE_NAMESPACE, "-o", "jsonpath={.data.config\\.yaml}"]);
        std::fs::write(work.join("config.yaml"), &config).unwrap();
        let secret: Value =
            serde_json::from_str(&stored(&["get", "secret", "webhook-tls", "-n", RELEASE_NAMESPACE, "-o", "json"]))
                .unwrap();
        let decode = |key: &str| base64_text(secret["data"][key].as_str().unwrap());
        let certs_dir = work.join("certs");
        std::fs::create_dir_all(&certs_dir).unwrap();
        let certs = KubeletDir::new(
            &certs_dir,
            &Leaf { cert_pem: decode("tls.crt"), key_pem: decode("tls.key"), der: leaf.der.clone() },
        );
        let webhook_args = vec![
            "--log-format=json".to_owned(),
            "serve".to_owned(),
            format!("--config={}", work.join("config.yaml").display()),
            format!("--tls-cert-file={}", certs.cert().display()),
            format!("--tls-key-file={}", certs.key().display()),
            "--tls-poll-interval=1h".to_owned(),
            format!("--listen={listen_host}:{webhook_port}"),
            format!("--admin-listen=127.0.0.1:{admin_port}"),
            format!("--kubeconfig={}", plane.kubeconfig.display()),
            format!("--namespace={RELEASE_NAMESPACE}"),
            "--shutdown-delay=0s".to_owned(),
        ];
        let env = Env {
            pinned_image: format!("{tools_repository}:v1@{digest}"),
            registry: std::sync::Mutex::new(registry),
            plane,
            webhook_pki,
            certs: std::sync::Mutex::new(certs),
            webhook: std::sync::Mutex::new(None),
            webhook_args,
            webhook_port,
            webhook_host,
            admin_port,
            work,
            webhook_image,
            real,
        };
        env.start_webhook();
        env
    }

    fn start_webhook(&self) {
        self.start_webhook_with(&self.webhook_args);
    }

    fn start_webhook_with(&self, args: &[String]) {
        let child = spawn_tied(
            Command::new(env!("CARGO_BIN_EXE_dragonfly-injector")).args(args),
            &self.work.join("webhook.log"),
        );
        *self.webhook.lock().unwrap() = Some(child);
        wait_for(Duration::from_secs(60), "the webhook ready (certificate, pinned digest, namespace cache)", || {
            matches!(http_get(self.admin_port, "/readyz"), Some((200, _)))
        });
    }

    fn stop_webhook(&self) {
        if let Some(mut child) = self.webhook.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        self.plane.kubectl(args)
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(output.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    fn apply(&self, manifest: &Value) -> std::process::Output {
        self.plane.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &manifest.to_string())
    }

    fn get(&self, kind: &str, namespace: &str, name: &str) -> Value {
        serde_json::from_str(&self.kubectl_ok(&["get", kind, name, "-n", namespace, "-o", "json"])).unwrap()
    }

    fn namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let output =
            self.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}));
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        wait_for(Duration::from_secs(30), "the namespace's default service account", || {
            self.kubectl(&["get", "serviceaccount", "default", "-n", name]).status.success()
        });
    }

    /// The webhook learns namespace labels from a watch; a server-side dry run tells when a
    /// freshly labelled namespace is known to it, without storing anything.
    fn wait_until_webhook_knows(&self, namespace: &str, probe: &Value, known: impl Fn(&Value) -> bool) {
        wait_for(Duration::from_secs(30), "the webhook's namespace cache", || {
            let output = self.plane.kubectl_stdin(
                &["create", "--dry-run=server", "-n", namespace, "-f", "-", "-o", "json"],
                &probe.to_string(),
            );
            output.status.success() && known(&serde_json::from_slice(&output.stdout).unwrap())
        });
    }

    fn admission_requests(&self) -> f64 {
        let (_, text) = http_get(self.admin_port, "/metrics").unwrap();
        text.lines()
            .filter(|l| l.starts_with("dragonfly_injector_admission_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// The text a base64 field (a Secret's data, a caBundle) holds.
fn base64_text(encoded: &str) -> String {
    String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap()).unwrap()
}

fn pod(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "debian:bookworm-slim", "command": ["sleep", "infinity"]}]}})
}

fn env_names(container: &Value) -> Vec<String> {
    container["env"]
        .as_array()
        .map(|e| e.iter().map(|v| v["name"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn is_injected(pod: &Value) -> bool {
    pod["metadata"]["annotations"]["dragonfly.io/injected"].is_string()
}

fn assert_fully_injected(env: &Env, pod: &Value) {
    assert!(is_injected(pod), "{pod}");
    let spec = &pod["spec"];
    let app = &spec["containers"][0];
    let names = env_names(app);
    assert_eq!(&names[..3], ["HOST_IP", "DRAGONFLY_INJECT_PROXY", "DFGET_TRANSFER_FROM_DFDAEMON"], "{names:?}");
    assert!(!names.contains(&"PATH".to_owned()), "the image's own PATH stays: {names:?}");
    assert_eq!(app["env"][1]["value"], "http://$(HOST_IP):4001");
    let init = &spec["initContainers"][0];
    assert_eq!(init["name"], "dragonfly-tools");
    assert_eq!(init["image"], env.pinned_image.as_str(), "pinned to the index digest from the registry");
    let volumes = spec["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["name"] == "dragonfly-tools" && v["emptyDir"].is_object()));
    assert!(volumes
        .iter()
        .any(|v| v["hostPath"]["path"] == HOST_SOCKET_DIR && v["hostPath"]["type"] == "DirectoryOrCreate"));
    let mounts: Vec<&str> =
        app["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    for wanted in ["/var/run/dragonfly", "/dragonfly/bin", "/usr/local/bin/dfget"] {
        assert!(mounts.contains(&wanted), "{wanted}: {mounts:?}");
    }
}

fn annotated_pod_is_stored_injected(env: &Env) {
    env.namespace("e2e-annotated", &[]);
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-annotated", "-f", "-"],
        &pod("web", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_fully_injected(env, &env.get("pod", "e2e-annotated", "web"));
}

fn unannotated_pod_never_reaches_the_webhook(env: &Env) {
    env.namespace("e2e-plain", &[]);
    let before = env.admission_requests();
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-plain", "-f", "-"],
        &pod("plain", json!({"example.com/other": "x"})).to_string(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stored = env.get("pod", "e2e-plain", "plain");
    assert!(stored["spec"].get("initContainers").is_none() && !is_injected(&stored));
    assert_eq!(env.admission_requests(), before, "matchConditions kept the pod away from the webhook");
}

fn labelled_namespace_injects_and_respects_opt_out(env: &Env) {
    env.namespace("e2e-labelled", &[("dragonfly.io/inject-p2p", "enabled")]);
    env.wait_until_webhook_knows("e2e-labelled", &pod("probe", json!({})), is_injected);
    let output =
        env.plane.kubectl_stdin(&["create", "-n", "e2e-labelled", "-f", "-"], &pod("in", json!({})).to_string());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_fully_injected(env, &env.get("pod", "e2e-labelled", "in"));
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-labelled", "-f", "-"],
        &pod("out", json!({"dragonfly.io/inject-p2p": "false"})).to_string(),
    );
    assert!(output.status.success());
    assert!(!is_injected(&env.get("pod", "e2e-labelled", "out")));
}

fn deployment_pods_from_the_controller_are_injected(env: &Env) {
    env.namespace("e2e-deploy", &[("dragonfly.io/inject-p2p", "enabled")]);
    env.wait_until_webhook_knows("e2e-deploy", &pod("probe", json!({})), is_injected);
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "e2e-deploy"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}});
    let output = env.apply(&deployment);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut pods = Vec::new();
    wait_for(Duration::from_secs(60), "the ReplicaSet's pods", || {
        let list: Value =
            serde_json::from_str(&env.kubectl_ok(&["get", "pods", "-n", "e2e-deploy", "-l", "app=web", "-o", "json"]))
                .unwrap();
        pods = list["items"].as_array().unwrap().clone();
        pods.len() == 2
    });
    for pod in &pods {
        assert!(pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet");
        assert_fully_injected(env, pod);
    }
}

fn baseline_namespace_gets_no_socket_and_a_warning(env: &Env) {
    env.namespace("e2e-baseline", &[("pod-security.kubernetes.io/enforce", "baseline")]);
    let probe = pod("probe", json!({"dragonfly.io/inject-p2p": "true"}));
    env.wait_until_webhook_knows("e2e-baseline", &probe, |p| is_injected(p) && !p.to_string().contains("hostPath"));
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-baseline", "-f", "-"],
        &pod("base", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(output.status.success(), "rejected: {}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Warning: dragonfly-injector:") && stderr.contains("baseline"), "{stderr}");
    let stored = env.get("pod", "e2e-baseline", "base");
    assert!(is_injected(&stored) && !stored.to_string().contains("hostPath"), "{stored}");
    assert_eq!(stored["spec"]["initContainers"][0]["image"], env.pinned_image.as_str());
}

fn server_side_dry_run_shows_the_injection_and_stores_nothing(env: &Env) {
    let output = env.plane.kubectl_stdin(
        &["create", "--dry-run=server", "-n", "e2e-annotated", "-f", "-", "-o", "json"],
        &pod("dry", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_fully_injected(env, &serde_json::from_slice(&output.stdout).unwrap());
    assert!(!env.kubectl(&["get", "pod", "dry", "-n", "e2e-annotated"]).status.success(), "nothing stored");
}

fn native_sidecars_and_newer_fields_are_stored_intact(env: &Env) {
    let mut manifest = pod("sidecar", json!({"dragonfly.io/inject-p2p": "true"}));
    let sidecar = json!({"name": "shipper", "image": "fluent-bit:3", "restartPolicy": "Always",
        "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}});
    manifest["spec"]["initContainers"] = json!([sidecar]);
    manifest["spec"]["schedulingGates"] = json!([{"name": "example.com/wait"}]);
    manifest["spec"]["containers"][0]["resizePolicy"] =
        json!([{"resourceName": "cpu", "restartPolicy": "NotRequired"}]);
    let output = env.plane.kubectl_stdin(&["create", "-n", "e2e-annotated", "-f", "-"], &manifest.to_string());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stored = env.get("pod", "e2e-annotated", "sidecar");
    assert_fully_injected(env, &stored);
    let shipper = &stored["spec"]["initContainers"][1];
    assert_eq!(
        (shipper["name"].as_str(), shipper["restartPolicy"].as_str()),
        (Some("shipper"), Some("Always")),
        "{stored}"
    );
    assert_eq!(shipper["startupProbe"]["exec"]["command"], json!(["true"]));
    assert_eq!(stored["spec"]["schedulingGates"], json!([{"name": "example.com/wait"}]));
    assert_eq!(stored["spec"]["containers"][0]["resizePolicy"][0]["restartPolicy"], "NotRequired");
}

/// A second mutating webhook, as another injector would be: it adds a container after ours ran.
fn adder_webhook(
    runtime: &tokio::runtime::Runtime,
    leaf: &Leaf,
    listen: std::net::IpAddr,
) -> (u16, tokio::sync::watch::Sender<bool>) {
    use axum::body::Bytes;
    use rustls::pki_types::pem::PemObject;
    let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let tls = std::sync::Arc::new(
        rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap(),
    );
    let app = axum::Router::new().route(
        "/add",
        axum::routing::post(|body: Bytes| async move {
            let review: Value = serde_json::from_slice(&body).unwrap();
            let request = &review["request"];
            let containers = request["object"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
            let mut response = json!({"uid": request["uid"], "allowed": true});
            if !containers.iter().any(|c| c["name"] == "added-later") {
                let patch = json!([{"op": "add", "path": "/spec/containers/-", "value": {"name": "added-later", "image": "busybox:1.37"}}]);
                response["patchType"] = json!("JSONPatch");
                response["patch"] = json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, patch.to_string()));
            }
            axum::Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}))
        }),
    );
    let listener = runtime.block_on(tokio::net::TcpListener::bind((listen, 0))).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let limits = ConnectionLimits {
        max_connections: 16,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
    };
    let acceptor = Some(tokio_rustls::TlsAcceptor::from(tls));
    let metrics = std::sync::Arc::new(dragonfly_injector::metrics::Metrics::default());
    runtime.spawn(https::serve(listener, acceptor, app, stopped, Duration::from_secs(1), limits, metrics));
    (port, stop)
}

fn reinvocation_injects_a_container_another_webhook_adds(env: &Env) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listen = if env.webhook_host.is_loopback() { env.webhook_host } else { std::net::IpAddr::from([0, 0, 0, 0]) };
    let (port, _stop) = adder_webhook(&runtime, &env.webhook_pki.leaf_for("adder", env.webhook_host), listen);
    let ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &env.webhook_pki.ca_pem);
    // Named to sort after the injector's configuration, so it runs after us.
    let configuration = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "zz-e2e-adder"},
        "webhooks": [{"name": "adder.e2e.dragonfly.io", "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
            "reinvocationPolicy": "Never", "clientConfig": {"url": format!("https://{}:{port}/add", env.webhook_host), "caBundle": ca},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"e2e-reinvoke": "true"}}}]});
    let output = env.apply(&configuration);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    env.namespace("e2e-reinvoke", &[("e2e-reinvoke", "true")]);
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-reinvoke", "-f", "-"],
        &pod("twice", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    let _ = env.kubectl(&["delete", "mutatingwebhookconfiguration", "zz-e2e-adder"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stored = env.get("pod", "e2e-reinvoke", "twice");
    assert_fully_injected(env, &stored);
    let containers = stored["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2, "{stored}");
    assert_eq!(containers[1]["name"], "added-later");
    assert_eq!(
        &env_names(&containers[1])[..2],
        ["HOST_IP", "DRAGONFLY_INJECT_PROXY"],
        "reinvoked for the added container"
    );
    assert_eq!(stored["spec"]["initContainers"].as_array().unwrap().len(), 1, "nothing doubled");
    assert_eq!(
        stored["spec"]["volumes"].as_array().unwrap().iter().filter(|v| v["name"] == "dragonfly-tools").count(),
        1
    );
    let status: Value =
        serde_json::from_str(stored["metadata"]["annotations"]["dragonfly.io/injected"].as_str().unwrap()).unwrap();
    assert_eq!(status["containers"], json!(["app", "added-later"]));
}

fn certificate_rotation_fails_no_admission(env: &Env) {
    env.namespace("e2e-rotate", &[]);
    let new_leaf = env.webhook_pki.leaf_for("webhook-rotated", env.webhook_host);
    let mut created = 0;
    for n in 0..40 {
        if n == 15 {
            env.certs.lock().unwrap().swap(&new_leaf);
        }
        // failurePolicy is Fail: a failed call to the webhook would refuse the pod.
        let output = env.plane.kubectl_stdin(
            &["create", "-n", "e2e-rotate", "-f", "-"],
            &pod(&format!("r{n}"), json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
        );
        assert!(output.status.success(), "pod r{n}: {}", String::from_utf8_lossy(&output.stderr));
        created += 1;
    }
    assert_eq!(created, 40);
    assert!(is_injected(&env.get("pod", "e2e-rotate", "r39")));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", env.webhook_port).parse().unwrap();
    let served = runtime
        .block_on(test_kit::Connection::open(addr, test_kit::client_config(&env.webhook_pki.ca_pem)))
        .unwrap()
        .server_cert;
    assert_eq!(served, new_leaf.der, "the webhook serves the rotated certificate");
}

fn a_stopped_webhook_is_visible_with_ignore_and_refuses_with_fail(env: &Env) {
    let helm = test_kit::cached_tool("helm.sh");
    let chart = test_kit::repo_root().join("charts/dragonfly-injector");
    let upgrade = |policy: &str| {
        succeed(
            Command::new(&helm)
                .args(["upgrade", "df"])
                .arg(&chart)
                .args(["--namespace", RELEASE_NAMESPACE, "--reuse-values", "--kubeconfig"])
                .arg(&env.plane.kubeconfig)
                .args(["--set", &format!("webhook.failurePolicy={policy}")]),
        );
    };
    env.namespace("e2e-down", &[]);
    upgrade("Ignore");
    env.stop_webhook();
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-down", "-f", "-"],
        &pod("uninjected", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!is_injected(&env.get("pod", "e2e-down", "uninjected")), "created without injection");
    // How an operator sees it: the API server counts every call it failed open.
    let metrics = env.kubectl_ok(&["get", "--raw", "/metrics"]);
    let fail_open = metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_admission_webhook_fail_open_count") && l.contains("annotated.pods.dragonfly.io")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(fail_open >= 1.0, "fail-open calls counted: {fail_open}");

    upgrade("Fail");
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-down", "-f", "-"],
        &pod("refused", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(!output.status.success(), "with Fail, creation is refused while the webhook is down");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("failed calling webhook"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    env.start_webhook();
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-down", "-f", "-"],
        &pod("back", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(is_injected(&env.get("pod", "e2e-down", "back")));
}

fn a_stopped_registry_keeps_new_pods_on_the_last_good_digest(env: &Env) {
    env.registry.lock().unwrap().stop();
    wait_for(Duration::from_secs(30), "the webhook's refresh failing against the stopped registry", || {
        let (_, text) = http_get(env.admin_port, "/metrics").unwrap();
        text.lines()
            .any(|l| l.starts_with("dragonfly_injector_tools_image_resolution_failures_total{") && !l.ends_with(" 0"))
    });
    let output = env.plane.kubectl_stdin(
        &["create", "-n", "e2e-annotated", "-f", "-"],
        &pod("after-registry", json!({"dragonfly.io/inject-p2p": "true"})).to_string(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_fully_injected(env, &env.get("pod", "e2e-annotated", "after-registry"));
}

/// `scripts/demo.sh`: the whole stack for real, one annotated pod created and printed.
fn demo(env: &Env) {
    let manifest = std::fs::read_to_string(test_kit::repo_root().join("examples/demo-pod.yaml")).unwrap();
    env.namespace("demo", &[]);
    println!("\n$ kubectl create -n demo -f examples/demo-pod.yaml");
    let output = env.plane.kubectl_stdin(&["create", "-n", "demo", "-f", "-"], &manifest);
    print!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success());
    println!("\n$ kubectl get pod downloader -n demo -o yaml   # as the API server stored it\n");
    print!("{}", env.kubectl_ok(&["get", "pod", "downloader", "-n", "demo", "-o", "yaml"]));
    println!(
        "\nThe tools image {} is pinned to its multi-arch index digest, resolved from a loopback registry.",
        env.pinned_image
    );

    // The same pod on the real node. Nothing is pulled from the internet here, so it runs a
    // busybox image built by the test instead of debian:bookworm-slim, tolerates the test node's
    // taint, and downloads from the loopback origin, which only dfdaemon can reach.
    let real = env.real();
    let url = real.origin.url("blob-8MiB");
    let parsed =
        env.plane.kubectl_stdin(&["create", "--dry-run=client", "-n", "demo", "-o", "json", "-f", "-"], &manifest);
    assert!(parsed.status.success(), "{}", String::from_utf8_lossy(&parsed.stderr));
    let mut pod: Value = serde_json::from_slice(&parsed.stdout).unwrap();
    let runnable = node_pod("downloader", BUSYBOX, "", json!({}));
    pod["metadata"]["name"] = json!("downloader-on-the-node");
    pod["spec"]["tolerations"] = runnable["spec"]["tolerations"].clone();
    pod["spec"]["restartPolicy"] = json!("Never");
    pod["spec"]["terminationGracePeriodSeconds"] = json!(1);
    let app = &mut pod["spec"]["containers"][0];
    app["image"] = json!(BUSYBOX);
    app["imagePullPolicy"] = json!("Never");
    app["command"] = json!([
        "sh",
        "-c",
        format!(
            "set -x; dfget --version; dfget {url} -O /tmp/blob-8MiB; sha256sum /tmp/blob-8MiB; \
         http_proxy=$HTTP_PROXY wget -q -O /tmp/via-proxy {url}; sha256sum /tmp/via-proxy"
        )
    ]);
    println!("\n$ kubectl create -n demo -f -   # the same pod, runnable here: busybox, the test node's toleration, a download\n");
    let pod = env.run_pod("demo", &pod);
    println!("{}", env.pod_logs("demo", "downloader-on-the-node"));
    println!(
        "init container exit codes: {:?}; the origin's SHA-256 is {}.\n\
         dfget found dfdaemon's socket at its default path and wget went through $HTTP_PROXY, which the pod set\n\
         to $(DRAGONFLY_INJECT_PROXY), dfdaemon's proxy at the node's IP.",
        init_exit_codes(&pod),
        real.files["blob-8MiB"]
    );

    // P2P in two lines: node B fetches the same file through its own dfdaemon, and the origin's
    // byte count says where the bytes came from.
    let path = "/blob-8MiB";
    let before = real.origin.served(path);
    assert_eq!(node_b_downloads(real, &url), real.files["blob-8MiB"]);
    let after = real.origin.served(path);
    assert_within_a_probe(after, before, "node B");
    let parent = real.dragonfly.lock().unwrap().host_id();
    let log = real.peer.lock().unwrap().log("dfdaemon");
    assert!(log.contains(&parent), "node B's dfdaemon names {parent} as its parent:\n{}", tail(&log, 30));
    println!(
        "\nP2P: node B then downloaded the same file through its own dfdaemon, from its peer {parent}.\n\
         The origin's count for {path} went from {before} to {after} bytes: node B cost it only its length probe.\n\
         Everything is cleaned up now."
    );
}

/// The application images the node scenarios run, built here and imported into the node.
const BUSYBOX: &str = "registry.local/e2e/busybox:1";

/// A static busybox root: no libc at all, like a distroless image.
fn busybox_image(name: &str) -> Image {
    let list = succeed(Command::new("/bin/busybox").arg("--list"));
    let mut image = Image::new(name)
        .host_file("/bin/busybox", 0o755, std::path::Path::new("/bin/busybox"))
        .dir("/tmp", 0o1777)
        .dir("/etc", 0o755)
        .dir("/root", 0o700)
        .env("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for applet in String::from_utf8(list.stdout).unwrap().lines().filter(|a| *a != "busybox") {
        image = image.symlink(&format!("/bin/{applet}"), "busybox");
    }
    image
}

fn import_app_images(node: &Node) {
    node.import(&busybox_image(BUSYBOX));
}

/// A pod for the real node: tolerates its taint, runs `script` once with `sh -c`, never pulls
/// its image, and goes quickly when deleted.
fn node_pod(name: &str, image: &str, script: &str, annotations: Value) -> Value {
    let (key, value) = TAINT.split_once('=').unwrap();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "tolerations": [{"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}],
            "containers": [{"name": "app", "image": image, "imagePullPolicy": "Never", "command": ["sh", "-c", script]}]}})
}

impl Env {
    /// Stops the webhook and tears the node down (its pods through the API server first), then
    /// Dragonfly; returns whatever of them is left on the machine, or a changed sysctl.
    fn finish(&mut self) -> Vec<String> {
        self.stop_webhook();
        let Some(real) = self.real.take() else { return Vec::new() };
        let mut node = real.node.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        node.teardown(&self.plane);
        let mut left = node.sysctls_changed();
        drop(real.dragonfly);
        drop(real.peer);
        drop(real.link);
        drop(node);
        left.extend(test_kit::node::leftovers());
        left.extend(test_kit::peer::leftovers());
        left
    }

    fn real(&self) -> &Real {
        self.real.as_ref().expect("a real node (not against an external cluster)")
    }

    /// Creates `manifest` in `namespace` and waits until the pod has run to completion; returns
    /// the pod as stored then. Panics with the pod's state and the kubelet's log if it fails.
    fn run_pod(&self, namespace: &str, manifest: &Value) -> Value {
        self.ensure_namespace(namespace);
        self.create_pod(namespace, manifest);
        self.wait_finished(namespace, manifest["metadata"]["name"].as_str().unwrap())
    }

    /// Creates the pod; returns what kubectl wrote on standard error: the admission warnings.
    fn create_pod(&self, namespace: &str, manifest: &Value) -> String {
        let output = self.plane.kubectl_stdin(&["create", "-n", namespace, "-f", "-"], &manifest.to_string());
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{said}");
        said
    }

    /// Waits until the pod has run to completion, as [`Env::run_pod`] says.
    fn wait_finished(&self, namespace: &str, name: &str) -> Value {
        let mut pod = Value::Null;
        let finished = wait_until(Duration::from_secs(120), Duration::from_millis(250), || {
            pod = self.get("pod", namespace, name);
            match pod["status"]["phase"].as_str() {
                Some("Succeeded") => Ok(true),
                Some("Failed") => {
                    Err(format!("pod {name} failed: {}\n{}", pod["status"], self.pod_logs(namespace, name)))
                }
                _ => Ok(false),
            }
        });
        match finished {
            Ok(()) => pod,
            Err(Waited::Failed(why)) => panic!("{why}"),
            Err(Waited::TimedOut) => {
                let node = self.real().node.lock().unwrap();
                let kubelet: Vec<String> = node.log("kubelet").lines().rev().take(40).map(str::to_owned).collect();
                panic!("pod {name} did not finish: {}\nkubelet:\n{}", pod["status"], kubelet.join("\n"));
            }
        }
    }

    /// Creates the namespace unless an earlier scenario did, so that each runs alone too.
    fn ensure_namespace(&self, name: &str) {
        if !self.kubectl(&["get", "namespace", name]).status.success() {
            self.namespace(name, &[]);
        }
    }

    fn pod_logs(&self, namespace: &str, name: &str) -> String {
        String::from_utf8_lossy(&self.kubectl(&["logs", "-n", namespace, name, "--all-containers", "--prefix"]).stdout)
            .into_owned()
    }
}

fn init_exit_codes(pod: &Value) -> Vec<(String, i64)> {
    pod["status"]["initContainerStatuses"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap().to_owned(),
                        s["state"]["terminated"]["exitCode"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The heart of it: an annotated pod starts on a real node, the tools init container copies the
/// Dragonfly tools, and dfget from the app container's PATH downloads a file larger than 4 MiB
/// (so dfdaemon asks the real scheduler) through the mounted socket into the pod's own
/// filesystem, with nothing but the injected environment. The origin listens on the host's
/// loopback, which the pod cannot reach: the bytes came through dfdaemon.
fn an_injected_pod_downloads_with_dfget_through_dfdaemon(env: &Env) {
    let real = env.real();
    let url = real.origin.url("blob-8MiB");
    // dfget finds the socket at its default path although the host keeps it elsewhere; the
    // proxy is reached at the node's IP (HOST_IP), not at a node name no DNS here resolves.
    let script = format!(
        "set -e; dfget --version; dfget '{url}' -O /tmp/blob; sha256sum /tmp/blob; \
         echo proxy=$DRAGONFLY_INJECT_PROXY; http_proxy=$DRAGONFLY_INJECT_PROXY wget -q -O /tmp/proxied '{url}'; \
         sha256sum /tmp/proxied"
    );
    let before = real.origin.requests.load(std::sync::atomic::Ordering::Relaxed);
    let pod = env
        .run_pod("e2e-node", &node_pod("dfget-download", BUSYBOX, &script, json!({"dragonfly.io/inject-p2p": "true"})));
    assert_eq!(init_exit_codes(&pod), [("dragonfly-tools".to_owned(), 0)], "{}", pod["status"]);
    let logs = env.pod_logs("e2e-node", "dfget-download");
    assert!(
        logs.contains(&format!("{}  /tmp/blob", real.files["blob-8MiB"])),
        "the downloaded file's SHA-256 matches the origin's:\n{logs}"
    );
    assert!(logs.contains(&format!("proxy=http://{NODE_IP}:4001")), "{logs}");
    assert!(
        logs.contains(&format!("{}  /tmp/proxied", real.files["blob-8MiB"])),
        "the same bytes through dfdaemon's proxy:\n{logs}"
    );
    assert!(logs.contains(&format!("dfget {}", test_kit::pinned("DRAGONFLY_CLIENT_VERSION"))), "{logs}");
    assert!(
        real.origin.requests.load(std::sync::atomic::Ordering::Relaxed) > before,
        "dfdaemon fetched from the origin"
    );
    let log = real.dragonfly.lock().unwrap().log("dfdaemon");
    assert!(
        log.contains("blob-8MiB"),
        "dfdaemon handled the task:\n{}",
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
}

/// Node B downloads `url` with dfget through its own dfdaemon's socket, as a pod there would
/// (`--console`: dfget's log goes to its output, not under /var/log on the host); returns the
/// file's SHA-256.
fn node_b_downloads(real: &Real, url: &str) -> String {
    let peer = real.peer.lock().unwrap();
    let out = peer.dir.join(format!("download-{}", url.rsplit('/').next().unwrap()));
    let output = peer
        .tool("dfget")
        .env("DFGET_TRANSFER_FROM_DFDAEMON", "true")
        .arg("--endpoint")
        .arg(peer.socket())
        .args(["--console", "--no-progress", url, "-O"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "node B's dfget: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let sum = sha256_hex(&std::fs::read(&out).unwrap());
    std::fs::remove_file(&out).unwrap();
    sum
}

/// An injected pod on node A downloads with dfget, and the pod's SHA-256 line.
fn pod_on_node_a_downloads(env: &Env, name: &str, url: &str) -> String {
    let script = format!("set -e; dfget '{url}' -O /tmp/file; sha256sum /tmp/file");
    env.run_pod("e2e-node", &node_pod(name, BUSYBOX, &script, json!({"dragonfly.io/inject-p2p": "true"})));
    env.pod_logs("e2e-node", name)
}

/// Content over 4 MiB (smaller tasks skip the scheduler), new to every dfdaemon: its URL, its
/// path at the origin and its SHA-256.
fn new_content(real: &Real, seed: &str) -> (String, String, String) {
    const SIZE: u64 = 16 * 1024 * 1024 + 4099;
    let url = real.origin.generated_url(SIZE, seed);
    let path = format!("/gen/{SIZE}/{seed}");
    (url, path, test_kit::origin::generated_sha256(SIZE, seed))
}

/// P2P: an injected pod on node A downloads new content through its node's dfdaemon; then node
/// B downloads it and the origin serves nothing more: B got every piece from A, and B's log
/// names A's host as the parent the scheduler gave it.
fn node_b_gets_a_pods_download_from_node_a_not_the_origin(env: &Env) {
    let real = env.real();
    let (url, path, sum) = new_content(real, "a-then-b");
    let logs = pod_on_node_a_downloads(env, "p2p-a-then-b", &url);
    assert!(logs.contains(&format!("{sum}  /tmp/file")), "{logs}");
    let after_a = real.origin.served(&path);
    assert!(after_a >= 16 * 1024 * 1024, "node A went back to the origin for it: {after_a} bytes");
    assert!(after_a <= 16 * 1024 * 1024 + 4099 + 1, "node A fetched more than the file and its probe: {after_a}");
    assert_eq!(node_b_downloads(real, &url), sum);
    assert_within_a_probe(real.origin.served(&path), after_a, "node B");
    let node_a = real.dragonfly.lock().unwrap().host_id();
    let log = real.peer.lock().unwrap().log("dfdaemon");
    assert!(log.contains(&node_a), "node B's dfdaemon names {node_a} as its parent:\n{}", tail(&log, 30));
    println!("origin served {path}: {after_a} bytes, once; node B's pieces came from {node_a}");
}

/// P2P the other way: node B downloads first (from the origin), then an injected pod on node A
/// gets the same content from B, and the origin serves nothing more.
fn a_pod_on_node_a_gets_node_bs_download_from_node_b(env: &Env) {
    let real = env.real();
    let (url, path, sum) = new_content(real, "b-then-a");
    assert_eq!(node_b_downloads(real, &url), sum);
    let after_b = real.origin.served(&path);
    assert!(after_b >= 16 * 1024 * 1024, "node B went back to the origin for it: {after_b} bytes");
    let logs = pod_on_node_a_downloads(env, "p2p-b-then-a", &url);
    assert!(logs.contains(&format!("{sum}  /tmp/file")), "{logs}");
    assert_within_a_probe(real.origin.served(&path), after_b, "the pod on node A");
    let node_b = real.peer.lock().unwrap().host_id();
    let log = real.dragonfly.lock().unwrap().log("dfdaemon");
    assert!(log.contains(&node_b), "node A's dfdaemon names {node_b} as its parent:\n{}", tail(&log, 30));
}

/// P2P through the proxy: a pod on node A fetches new content with plain HTTP through
/// `$DRAGONFLY_INJECT_PROXY` (no Dragonfly tool involved), then a client on node B fetches it
/// through B's proxy; the origin serves it once, and B's log names A as the parent.
fn plain_http_through_the_proxies_is_shared_between_the_nodes(env: &Env) {
    let real = env.real();
    let (url, path, sum) = new_content(real, "proxy-a-then-b");
    let script =
        format!("set -e; http_proxy=$DRAGONFLY_INJECT_PROXY wget -q -O /tmp/file '{url}'; sha256sum /tmp/file");
    let annotations = json!({"dragonfly.io/inject-p2p": "true"});
    env.run_pod("e2e-node", &node_pod("p2p-proxy", BUSYBOX, &script, annotations));
    let logs = env.pod_logs("e2e-node", "p2p-proxy");
    assert!(logs.contains(&format!("{sum}  /tmp/file")), "{logs}");
    let after_a = real.origin.served(&path);
    assert!(after_a >= 16 * 1024 * 1024, "node A's proxy went back to the origin for it: {after_a} bytes");
    // Node B's client: busybox wget on the host, through B's proxy on B's address.
    let peer = real.peer.lock().unwrap();
    let out = peer.dir.join("proxied");
    let proxy = format!("http://{PEER_IP}:{}", test_kit::dragonfly::PROXY_PORT);
    succeed(Command::new("/bin/busybox").args(["wget", "-q", "-O"]).arg(&out).arg(&url).env("http_proxy", &proxy));
    assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), sum);
    std::fs::remove_file(&out).unwrap();
    assert_within_a_probe(real.origin.served(&path), after_a, "node B's proxy");
    let node_a = real.dragonfly.lock().unwrap().host_id();
    let log = peer.log("dfdaemon");
    assert!(log.contains(&node_a), "node B's dfdaemon names {node_a} as its parent:\n{}", tail(&log, 30));
}

/// Node B's dfdaemon dies while a pod on node A is getting pieces from it: the pod still
/// completes with the right SHA-256, and the origin serves what B no longer can. For this one B
/// serves pieces at 4 MB/s (dfdaemon's `upload.bandwidthLimit`), so the pod is certainly
/// mid-download when B goes (16 MiB from B alone takes four seconds): B goes once it has sent A
/// its first whole piece. B is killed, not stopped: a stopped dfdaemon first finishes the pieces
/// it is serving, and A had asked for all five at once, so after a stop A still had every piece
/// from B (seen here). B then starts again as it was, before any assertion, so that a failure
/// here leaves the later scenarios their node.
fn node_b_dying_mid_download_leaves_the_pod_on_node_a_to_the_origin(env: &Env) {
    let real = env.real();
    real.peer.lock().unwrap().restart_dfdaemon_with_upload_limit(Some("4MB"));
    let (url, path, sum) = new_content(real, "b-stops");
    assert_eq!(node_b_downloads(real, &url), sum);
    let after_b = real.origin.served(&path);
    let node_b = real.peer.lock().unwrap().host_id();
    let seen = real.dragonfly.lock().unwrap().log("dfdaemon").len();
    let (served_a_piece, logs) = std::thread::scope(|scope| {
        let pod = scope.spawn(|| pod_on_node_a_downloads(env, "p2p-b-stops", &url));
        // B has sent A one whole piece (B's upload counter, which starts at zero with B): at
        // 4 MB/s the file's other four pieces are still on their way. Then B is gone.
        let served = wait_until(Duration::from_secs(120), Duration::from_millis(50), || {
            Ok(upload_traffic(&real.peer.lock().unwrap().metrics()) > 0)
        });
        real.peer.lock().unwrap().kill_dfdaemon();
        (served, pod.join())
    });
    real.peer.lock().unwrap().restart_dfdaemon_with_upload_limit(None);
    let logs = logs.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(served_a_piece.is_ok(), "node B never sent node A a piece");
    assert!(logs.contains(&format!("{sum}  /tmp/file")), "{logs}");
    let after_a = real.origin.served(&path);
    let log = real.dragonfly.lock().unwrap().log("dfdaemon");
    assert!(
        log.get(seen..).unwrap_or("").contains(&node_b),
        "node A's dfdaemon does not name node B ({node_b}) as its parent:\n{}",
        tail(log.get(seen..).unwrap_or(""), 40)
    );
    assert!(
        after_a > after_b + 1,
        "the origin served nothing more ({after_b} -> {after_a} bytes): the pod had every piece before B stopped; \
         node A's dfdaemon:\n{}",
        tail(log.get(seen..).unwrap_or(""), 40)
    );
    println!("e2e: p2p: node B died mid-transfer; the origin then served node A {} more bytes", after_a - after_b);
}

/// Ten injected pods on node A and a client on node B download one new 64 MiB file at once: the
/// origin serves it about once (each downloader may add its probe byte; two nodes starting
/// together may both fetch a few pieces before either has them). With E2E_P2P_BASELINE=1, ten
/// plain wgets straight from the origin on the host too, for BENCHMARKS.md ("P2P"): a
/// measurement, so the suite leaves it out.
fn ten_pods_and_node_b_at_once_share_one_download(env: &Env) {
    const SIZE: u64 = 64 * 1024 * 1024;
    let real = env.real();
    let seed = "ten-at-once";
    let (url, path) = (real.origin.generated_url(SIZE, seed), format!("/gen/{SIZE}/{seed}"));
    let sum = test_kit::origin::generated_sha256(SIZE, seed);
    env.ensure_namespace("e2e-node");
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for i in 0..10 {
            let (url, sum) = (&url, &sum);
            scope.spawn(move || {
                let logs = pod_on_node_a_downloads(env, &format!("p2p-ten-{i}"), url);
                assert!(logs.contains(&format!("{sum}  /tmp/file")), "{logs}");
            });
        }
        assert_eq!(node_b_downloads(real, &url), sum);
    });
    let p2p = started.elapsed();
    let served = real.origin.served(&path);
    assert!(served >= SIZE, "{served}");
    assert!(served <= SIZE + SIZE / 2, "the origin served {served} bytes for eleven downloads of {SIZE}");
    println!(
        "e2e: p2p: ten pods on node A and node B downloaded {} MiB at once in {:.1} s, the origin serving {served} \
         bytes ({:.2}x the file)",
        SIZE >> 20,
        p2p.as_secs_f64(),
        served as f64 / SIZE as f64,
    );
    if std::env::var_os("E2E_P2P_BASELINE").is_none() {
        return;
    }
    // The same ten downloads without Dragonfly: every one from the origin.
    let direct = real.origin.generated_url(SIZE, "ten-direct");
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..10 {
            scope.spawn(|| {
                let output =
                    Command::new("/bin/busybox").args(["wget", "-q", "-O", "/dev/null", &direct]).output().unwrap();
                assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            });
        }
    });
    let plain = started.elapsed();
    let direct_served = real.origin.served(&format!("/gen/{SIZE}/ten-direct"));
    println!(
        "e2e: p2p baseline: ten plain wgets from the origin took {:.1} s, the origin serving {direct_served} bytes",
        plain.as_secs_f64()
    );
}

/// The bytes a dfdaemon has sent other peers, from its metrics (`dragonfly_client_upload_traffic`,
/// counted when a piece has gone out whole; absent until the first one).
fn upload_traffic(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("dragonfly_client_upload_traffic "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |bytes| bytes as u64)
}

/// Every dfdaemon that starts a task asks the origin for its first byte (`Range: bytes=0-0`,
/// how it learns the length) before it looks for peers; every other byte of a file served once
/// must come from a peer. So a later downloader may add that one byte to the origin's count.
fn assert_within_a_probe(now: u64, before: u64, who: &str) {
    assert!(now <= before + 1, "{who}'s download reached the origin: {before} -> {now} bytes");
}

fn tail(log: &str, lines: usize) -> String {
    let mut last: Vec<&str> = log.lines().rev().take(lines).collect();
    last.reverse();
    last.join("\n")
}

/// Under Pod Security `baseline` the socket (a hostPath) is left out, and the pod must still
/// start and run the copied tools: injection never breaks a pod.
fn a_baseline_pod_starts_without_the_socket_and_runs_dfget(env: &Env) {
    // The namespace exists from baseline_namespace_gets_no_socket_and_a_warning when both run.
    if !env.kubectl(&["get", "namespace", "e2e-baseline"]).status.success() {
        env.namespace("e2e-baseline", &[("pod-security.kubernetes.io/enforce", "baseline")]);
        let probe = pod("probe", json!({"dragonfly.io/inject-p2p": "true"}));
        env.wait_until_webhook_knows("e2e-baseline", &probe, |p| is_injected(p) && !p.to_string().contains("hostPath"));
    }
    let script = "set -e; dfget --version; test ! -e /var/run/dragonfly/dfdaemon.sock && echo no-socket";
    let pod = env.run_pod(
        "e2e-baseline",
        &node_pod("baseline-run", BUSYBOX, script, json!({"dragonfly.io/inject-p2p": "true"})),
    );
    assert!(is_injected(&pod) && !pod.to_string().contains("hostPath"), "{pod}");
    assert_eq!(init_exit_codes(&pod), [("dragonfly-tools".to_owned(), 0)], "{}", pod["status"]);
    let logs = env.pod_logs("e2e-baseline", "baseline-run");
    assert!(logs.contains("no-socket") && logs.contains("dfget "), "{logs}");
}

/// An image in the style of conda and CUDA images: its `ENV PATH` puts its own directory first,
/// and its command is a bare name found only there. Injection must not replace that PATH (the
/// pod would never start); the tools are reached through the default PATH's /usr/local/bin.
fn a_conda_style_image_keeps_its_path_and_finds_dfget(env: &Env) {
    const CONDA: &str = "registry.local/e2e/conda-style:1";
    let app = "#!/bin/sh\necho \"conda-app runs; PATH=$PATH\"\ndfget --version\n";
    let image = busybox_image(CONDA)
        .file("/opt/conda/bin/conda-app", 0o755, app.as_bytes().to_vec())
        .env("PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    env.real().node.lock().unwrap().import(&image);
    let mut manifest = node_pod("conda-style", CONDA, "", json!({"dragonfly.io/inject-p2p": "true"}));
    manifest["spec"]["containers"][0]["command"] = json!(["conda-app"]);
    let pod = env.run_pod("e2e-node", &manifest);
    assert!(is_injected(&pod), "{pod}");
    let logs = env.pod_logs("e2e-node", "conda-style");
    assert!(logs.contains("conda-app runs; PATH=/opt/conda/bin:"), "the image's PATH is intact:\n{logs}");
    assert!(logs.contains("dfget "), "dfget found on the default PATH:\n{logs}");
}

/// A glibc root like a Debian image's: the host's own dynamically linked programs with the
/// libraries `ldd` says they load, at the same paths.
fn glibc_image(name: &str, programs: &[&str]) -> Image {
    let mut image = Image::new(name)
        .dir("/tmp", 0o1777)
        .dir("/etc", 0o755)
        .env("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut files = std::collections::BTreeSet::new();
    for program in programs {
        let path = String::from_utf8(succeed(Command::new("sh").args(["-c", &format!("command -v {program}")])).stdout)
            .unwrap()
            .trim()
            .to_owned();
        files.insert(path.clone());
        let ldd = String::from_utf8(succeed(Command::new("ldd").arg(&path)).stdout).unwrap();
        for word in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
            files.insert(word.to_owned());
        }
    }
    for file in files {
        let real = std::fs::canonicalize(&file).unwrap();
        image = image.host_file(&file, 0o755, &real);
    }
    // /bin/sh for `sh -c`, as Debian has it.
    image.symlink("/bin/sh", "/usr/bin/dash")
}

/// A Debian-style (glibc) image runs the injected static tools beside its own dynamic programs.
fn a_glibc_image_runs_the_static_tools(env: &Env) {
    const DEBIAN: &str = "registry.local/e2e/glibc:1";
    env.real().node.lock().unwrap().import(&glibc_image(DEBIAN, &["dash", "sha256sum", "cat"]));
    let url = env.real().origin.url("blob-1MiB");
    let script = format!("set -e; dfget '{url}' -O /tmp/small; sha256sum /tmp/small; dfcache --version");
    env.run_pod("e2e-node", &node_pod("glibc-app", DEBIAN, &script, json!({"dragonfly.io/inject-p2p": "true"})));
    let logs = env.pod_logs("e2e-node", "glibc-app");
    assert!(logs.contains(&format!("{}  /tmp/small", env.real().files["blob-1MiB"])), "{logs}");
    assert!(logs.contains("dfcache "), "{logs}");
}

/// With `dragonfly.io/inject-init-containers`, the pod's own init container runs after the tools
/// init container and downloads with dfget into a volume the app then reads: a model warm-up.
fn an_init_container_warms_up_with_dfget(env: &Env) {
    let url = env.real().origin.url("blob-8MiB");
    let mut manifest = node_pod(
        "warm-up",
        BUSYBOX,
        "sha256sum /data/model",
        json!({"dragonfly.io/inject-p2p": "true", "dragonfly.io/inject-init-containers": "true"}),
    );
    manifest["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    manifest["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    manifest["spec"]["initContainers"] = json!([{"name": "fetch-model", "image": BUSYBOX, "imagePullPolicy": "Never",
        "command": ["dfget", url, "-O", "/data/model"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]);
    let pod = env.run_pod("e2e-node", &manifest);
    assert_eq!(
        init_exit_codes(&pod),
        [("dragonfly-tools".to_owned(), 0), ("fetch-model".to_owned(), 0)],
        "the tools first, then the warm-up: {}",
        pod["status"]
    );
    let logs = env.pod_logs("e2e-node", "warm-up");
    assert!(logs.contains(&format!("{}  /data/model", env.real().files["blob-8MiB"])), "{logs}");
}

/// A Deployment's pods (ReplicaSet controller, kube-scheduler) are injected and run; dfdaemon
/// restarts (as a DaemonSet rollout does, recreating its socket) and the running pod's next
/// download still works, because the socket's directory is mounted, not the file.
fn a_deployments_pod_keeps_downloading_across_a_dfdaemon_restart(env: &Env) {
    env.ensure_namespace("e2e-node");
    let pod = node_pod("x", BUSYBOX, "sleep 3600", json!({"dragonfly.io/inject-p2p": "true"}));
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "downloader"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "downloader"}},
            "template": {"metadata": {"labels": {"app": "downloader"}, "annotations": pod["metadata"]["annotations"]},
                "spec": pod["spec"].clone()}}});
    let mut deployment = deployment;
    deployment["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    let output = env.plane.kubectl_stdin(&["create", "-n", "e2e-node", "-f", "-"], &deployment.to_string());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = env.kubectl(&["rollout", "status", "deployment/downloader", "-n", "e2e-node", "--timeout=120s"]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let url = env.real().origin.url("blob-8MiB");
    let download = |file: &str| {
        let output = env.kubectl(&[
            "exec",
            "-n",
            "e2e-node",
            "deployment/downloader",
            "--",
            "sh",
            "-c",
            &format!("dfget '{url}' -O /tmp/{file} && sha256sum /tmp/{file}"),
        ]);
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let sum = &env.real().files["blob-8MiB"];
    assert!(download("before").contains(sum.as_str()));
    env.real().dragonfly.lock().unwrap().restart_dfdaemon();
    assert!(download("after").contains(sum.as_str()), "a download after dfdaemon's restart");
    let output = env.kubectl(&["delete", "deployment", "downloader", "-n", "e2e-node", "--wait=false"]);
    assert!(output.status.success());
}

/// The webhook as users run it: the chart's Deployment on the node, from the image `docker
/// buildx bake` built, pulled by digest; the kubelet's probes gate the Service's endpoints and
/// the API server calls it through the Service (with `failurePolicy: Fail`, so any failed call
/// refuses a pod). Then a rolling restart while pods keep being admitted: none may fail.
fn the_charts_webhook_runs_on_the_node_and_a_rolling_restart_or_certificate_rotation_fails_no_admission(env: &Env) {
    const RELEASE: &str = "nodewh";
    const NAMESPACE: &str = "dragonfly-node";
    let deployment = format!("deployment/{RELEASE}-dragonfly-injector");
    let (repository, digest) = env.webhook_image.clone().expect("the webhook image, baked from the dist");
    let (tools_reference, tools_digest) = env.pinned_image.split_once('@').unwrap();
    let tools_repository = tools_reference.rsplit_once(':').unwrap().0;
    let api_port = env.plane.server.rsplit_once(':').unwrap().1.to_owned();
    let (taint_key, taint_value) = TAINT.split_once('=').unwrap();
    let helm = test_kit::cached_tool("helm.sh");
    let chart = test_kit::repo_root().join("charts/dragonfly-injector");
    let sets = [
        format!("image.repository={repository}"),
        "image.tag=v1".to_owned(),
        format!("image.digest={digest}"),
        "webhook.failurePolicy=Fail".to_owned(),
        // The chart's default mode, the self-managed certificate, with lifetimes short enough
        // that the scenario sees serving certificates renewed and the CA replaced under load:
        // a certificate every 20 s, a CA at 60 s.
        "tls.managed.certValidity=30s".to_owned(),
        "tls.managed.caValidity=90s".to_owned(),
        "tls.managed.checkInterval=1s".to_owned(),
        "tls.managed.propagationDelay=3s".to_owned(),
        format!("tools.image.repository={tools_repository}"),
        "tools.image.tag=v1".to_owned(),
        format!("tools.image.digest={tools_digest}"),
        format!("socket.path={HOST_SOCKET_DIR}/dfdaemon.sock"),
        format!("tolerations[0].key={taint_key}"),
        "tolerations[0].operator=Equal".to_owned(),
        "tolerations[0].effect=NoSchedule".to_owned(),
        // No kube-proxy on this node: pods reach the API server at the node's address.
        "extraEnv[0].name=KUBERNETES_SERVICE_HOST".to_owned(),
        format!("extraEnv[0].value={NODE_IP}"),
        "extraEnv[1].name=KUBERNETES_SERVICE_PORT".to_owned(),
        "webhook.shutdownDelaySeconds=3".to_owned(),
        "webhook.drainTimeoutSeconds=5".to_owned(),
    ];
    // Published as a chart is: packaged, pushed to the (loopback) registry as an OCI artifact,
    // and installed from oci://.
    let version = std::fs::read_to_string(chart.join("Chart.yaml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("version:").map(|v| v.trim().to_owned()))
        .expect("the chart's version");
    let packaged = env.work.join("packaged");
    succeed(Command::new(&helm).arg("package").arg(&chart).arg("--destination").arg(&packaged));
    let registry_host = env.registry.lock().unwrap().host.clone();
    let pushed = succeed(
        Command::new(&helm)
            .arg("push")
            .arg(packaged.join(format!("dragonfly-injector-{version}.tgz")))
            .arg(format!("oci://{registry_host}/charts"))
            .arg("--plain-http"),
    );
    let said = format!("{}{}", String::from_utf8_lossy(&pushed.stdout), String::from_utf8_lossy(&pushed.stderr));
    assert!(said.contains("Digest: sha256:"), "{said}");
    let mut install = Command::new(&helm);
    install.args(["install", RELEASE]).arg(format!("oci://{registry_host}/charts/dragonfly-injector")).args([
        "--version",
        &version,
        "--plain-http",
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--kubeconfig",
    ]);
    install.arg(&env.plane.kubeconfig);
    for set in &sets {
        install.args(["--set", set]);
    }
    install.args(["--set-string", &format!("extraEnv[1].value={api_port}")]);
    install.args(["--set-string", &format!("tolerations[0].value={taint_value}")]);
    // Whatever happens below, the release goes: its webhook (failurePolicy Fail) would refuse
    // every later pod once its pods are gone.
    struct Uninstall<'a>(&'a std::path::Path, &'a std::path::Path);
    impl Drop for Uninstall<'_> {
        fn drop(&mut self) {
            let _ = Command::new(self.0)
                .args(["uninstall", RELEASE, "--namespace", NAMESPACE, "--kubeconfig"])
                .arg(self.1)
                .output();
        }
    }
    let _uninstall = Uninstall(&helm, &env.plane.kubeconfig);
    succeed(&mut install);

    let rollout = |what: &str| {
        let output = env.kubectl(&["rollout", "status", &deployment, "-n", NAMESPACE, "--timeout=180s"]);
        assert!(
            output.status.success(),
            "{what}: {}{}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            env.kubectl_ok(&["get", "pods", "-n", NAMESPACE, "-o", "wide"]),
            String::from_utf8_lossy(
                &env.kubectl(&["logs", "-n", NAMESPACE, &deployment, "--previous", "--tail=20"]).stdout
            )
        );
    };
    rollout("the chart's webhook becomes ready on the node");
    let admissions = |pod: &str| -> f64 {
        let metrics =
            env.kubectl_ok(&["get", "--raw", &format!("/api/v1/namespaces/{NAMESPACE}/pods/{pod}:9090/proxy/metrics")]);
        metrics
            .lines()
            .filter(|l| l.starts_with("dragonfly_injector_admission_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let pods = |state: &str| -> Vec<String> {
        env.kubectl_ok(&[
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            &format!("app.kubernetes.io/instance={RELEASE}"),
            "--field-selector",
            &format!("status.phase={state}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(str::to_owned)
        .collect()
    };
    env.ensure_namespace("e2e-node");
    let probe = pod("through-the-service", json!({"dragonfly.io/inject-p2p": "true"}));
    let admit = || {
        env.plane.kubectl_stdin(
            &["create", "--dry-run=server", "-n", "e2e-node", "-f", "-", "-o", "json"],
            &probe.to_string(),
        )
    };
    // The replicas are ready once they serve a certificate and the configuration carries its CA;
    // the API server learns of that through its watch.
    wait_for(Duration::from_secs(30), "the first admission through the Service", || admit().status.success());
    for _ in 0..4 {
        let output = admit();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(is_injected(&serde_json::from_slice(&output.stdout).unwrap()));
    }
    let served: f64 = pods("Running").iter().map(|p| admissions(p)).sum();
    assert!(served >= 4.0, "the API server called the webhook pods through the Service: {served}");

    // The rolling restart, with admissions all along (bounded: at most 600, or 4 minutes).
    let restarted = env.kubectl(&["rollout", "restart", &deployment, "-n", NAMESPACE]);
    assert!(restarted.status.success(), "{}", String::from_utf8_lossy(&restarted.stderr));
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut admitted, mut refused) = (0, Vec::new());
    let mut done_at: Option<Instant> = None;
    for _ in 0..600 {
        let output = admit();
        if output.status.success() {
            admitted += 1;
        } else {
            refused.push(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        let status = env.kubectl(&["rollout", "status", &deployment, "-n", NAMESPACE, "--watch=false"]);
        let complete = String::from_utf8_lossy(&status.stdout).contains("successfully rolled out");
        // Keep going a little past the rollout, while the old pods drain.
        if complete && done_at.is_none() {
            done_at = Some(Instant::now());
        }
        if done_at.is_some_and(|t| t.elapsed() > Duration::from_secs(8)) || Instant::now() > deadline {
            break;
        }
    }
    assert!(done_at.is_some(), "the rollout did not complete in time");
    assert!(
        refused.is_empty(),
        "{} of {} admissions failed during the rolling restart:\n{}",
        refused.len(),
        admitted + refused.len(),
        refused.join("\n")
    );
    assert!(admitted >= 10, "admissions kept coming during the restart: {admitted}");
    eprintln!("e2e: {admitted} admissions during the webhook's rolling restart, none failed");

    // Rotation under load: admissions all along while the replicas renew their serving
    // certificate and replace the CA (bounded: at most 1,200 admissions, or 4 minutes).
    let secret_name = format!("{RELEASE}-dragonfly-injector-managed-tls");
    let stored = || -> (String, String) {
        let secret: Value =
            serde_json::from_str(&env.kubectl_ok(&["get", "secret", &secret_name, "-n", NAMESPACE, "-o", "json"]))
                .unwrap();
        let decode = |key: &str| base64_text(secret["data"][key].as_str().unwrap());
        (decode("ca.crt"), decode("tls.crt"))
    };
    let first_ca =
        |bundle: &str| bundle.split_inclusive("-----END CERTIFICATE-----\n").next().unwrap_or_default().to_owned();
    let (bundle, _) = stored();
    let (mut cas, mut leaves) =
        (std::collections::BTreeSet::from([first_ca(&bundle)]), std::collections::BTreeSet::new());
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut admitted, mut refused) = (0, Vec::new());
    for n in 0..1200 {
        let output = admit();
        if output.status.success() {
            admitted += 1;
        } else {
            refused.push(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        if n % 5 == 0 {
            let (bundle, leaf) = stored();
            cas.insert(first_ca(&bundle));
            leaves.insert(leaf);
        }
        // Two CAs and, after the switch, certificates from the new one: at least four.
        if (cas.len() >= 2 && leaves.len() >= 5) || Instant::now() > deadline {
            break;
        }
    }
    assert!(
        refused.is_empty(),
        "{} of {} admissions failed while the certificate rotated:\n{}",
        refused.len(),
        admitted + refused.len(),
        refused.join("\n")
    );
    assert!(
        cas.len() >= 2 && leaves.len() >= 5,
        "rotations seen: {} CAs, {} serving certificates",
        cas.len(),
        leaves.len()
    );
    // The API server trusts what the Secret says, and so the configuration follows it.
    let (bundle, _) = stored();
    let configured = env.kubectl_ok(&[
        "get",
        "mutatingwebhookconfiguration",
        &format!("{RELEASE}-dragonfly-injector"),
        "-o",
        "jsonpath={.webhooks[*].clientConfig.caBundle}",
    ]);
    for encoded in configured.split_whitespace() {
        assert_eq!(base64_text(encoded), bundle, "every webhook's caBundle is the Secret's bundle");
    }
    eprintln!(
        "e2e: {admitted} admissions while the webhook rotated {} CAs and {} serving certificates, none failed",
        cas.len(),
        leaves.len()
    );

    // Uninstalling takes the Secret too: the webhook configuration owns it.
    succeed(
        Command::new(&helm)
            .args(["uninstall", RELEASE, "--namespace", NAMESPACE, "--kubeconfig"])
            .arg(&env.plane.kubeconfig),
    );
    wait_for(Duration::from_secs(60), "the managed Secret collected after uninstall", || {
        let output = env.kubectl(&["get", "secret", &secret_name, "-n", NAMESPACE]);
        !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("NotFound")
    });
}

type Scenario = (&'static str, fn(&Env));

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scenarios: Vec<Scenario> = vec![
        ("annotated_pod_is_stored_injected", annotated_pod_is_stored_injected),
        ("unannotated_pod_never_reaches_the_webhook", unannotated_pod_never_reaches_the_webhook),
        ("labelled_namespace_injects_and_respects_opt_out", labelled_namespace_injects_and_respects_opt_out),
        ("deployment_pods_from_the_controller_are_injected", deployment_pods_from_the_controller_are_injected),
        ("baseline_namespace_gets_no_socket_and_a_warning", baseline_namespace_gets_no_socket_and_a_warning),
        (
            "server_side_dry_run_shows_the_injection_and_stores_nothing",
            server_side_dry_run_shows_the_injection_and_stores_nothing,
        ),
        ("native_sidecars_and_newer_fields_are_stored_intact", native_sidecars_and_newer_fields_are_stored_intact),
        // On the real node (while the registry serves the tools image the kubelet pulls).
        (
            "an_injected_pod_downloads_with_dfget_through_dfdaemon",
            an_injected_pod_downloads_with_dfget_through_dfdaemon,
        ),
        (
            "a_baseline_pod_starts_without_the_socket_and_runs_dfget",
            a_baseline_pod_starts_without_the_socket_and_runs_dfget,
        ),
        ("a_conda_style_image_keeps_its_path_and_finds_dfget", a_conda_style_image_keeps_its_path_and_finds_dfget),
        ("a_glibc_image_runs_the_static_tools", a_glibc_image_runs_the_static_tools),
        (
            "node_b_gets_a_pods_download_from_node_a_not_the_origin",
            node_b_gets_a_pods_download_from_node_a_not_the_origin,
        ),
        ("a_pod_on_node_a_gets_node_bs_download_from_node_b", a_pod_on_node_a_gets_node_bs_download_from_node_b),
        (
            "plain_http_through_the_proxies_is_shared_between_the_nodes",
            plain_http_through_the_proxies_is_shared_between_the_nodes,
        ),
        (
            "node_b_dying_mid_download_leaves_the_pod_on_node_a_to_the_origin",
            node_b_dying_mid_download_leaves_the_pod_on_node_a_to_the_origin,
        ),
        ("ten_pods_and_node_b_at_once_share_one_download", ten_pods_and_node_b_at_once_share_one_download),
        ("an_init_container_warms_up_with_dfget", an_init_container_warms_up_with_dfget),
        (
            "a_deployments_pod_keeps_downloading_across_a_dfdaemon_restart",
            a_deployments_pod_keeps_downloading_across_a_dfdaemon_restart,
        ),
        (
            "the_charts_webhook_runs_on_the_node_and_a_rolling_restart_or_certificate_rotation_fails_no_admission",
            the_charts_webhook_runs_on_the_node_and_a_rolling_restart_or_certificate_rotation_fails_no_admission,
        ),
        (
            "reinvocation_injects_a_container_another_webhook_adds",
            reinvocation_injects_a_container_another_webhook_adds,
        ),
        ("certificate_rotation_fails_no_admission", certificate_rotation_fails_no_admission),
        (
            "a_stopped_webhook_is_visible_with_ignore_and_refuses_with_fail",
            a_stopped_webhook_is_visible_with_ignore_and_refuses_with_fail,
        ),
        (
            "the_csi_plugin_brings_the_socket_to_labelled_restricted_namespaces_only_and_survives_restarts",
            csi::the_csi_plugin_brings_the_socket_to_labelled_restricted_namespaces_only_and_survives_restarts,
        ),
        // Last: without the registry, a restarted webhook with required pinning would stay unready.
        (
            "a_stopped_registry_keeps_new_pods_on_the_last_good_digest",
            a_stopped_registry_keeps_new_pods_on_the_last_good_digest,
        ),
    ];
    if args.iter().any(|a| a == "--control-plane-only") {
        // For development: a real API server to poke at, until standard input closes.
        let plane = ControlPlane::start(&control_plane_binaries());
        println!("KUBECONFIG={}", plane.kubeconfig.display());
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        return;
    }
    if args.iter().any(|a| a == "--stack") {
        // For development: the whole stack, to create one's own pods against, until standard
        // input closes. Images go into the node's containerd (`ctr -n k8s.io images import`).
        let mut env = Env::setup();
        let real = env.real();
        println!("KUBECONFIG={}", env.plane.kubeconfig.display());
        println!("CONTAINERD_ADDRESS={}", test_kit::node::CONTAINERD_SOCKET);
        println!("REGISTRY={}", env.registry.lock().unwrap().host);
        println!("TOOLS_IMAGE={}", env.pinned_image);
        println!("ORIGIN_URL={}", real.origin.url("").trim_end_matches('/'));
        println!("ORIGIN_STATS_URL={}", real.origin.stats_url());
        let peer = real.peer.lock().unwrap();
        println!("PEER_NETNS={PEER_NETNS}");
        println!("PEER_DFGET={}", test_kit::dragonfly::binaries().client.join("dfget").display());
        println!("PEER_SOCKET={}", peer.socket().display());
        drop(peer);
        println!("NODE_TOLERATION={TAINT}:NoSchedule");
        // The CSI plugin on the node, and the webhook with its release's config (socket.mode
        // auto): a namespace with this label gets the socket, through hostPath or, where Pod
        // Security forbids that, through the plugin.
        let release = csi::CsiRelease::install(&env);
        env.use_webhook_config(&release.config);
        println!("SOCKET_NAMESPACE_LABEL={}={}", csi::LABEL.0, csi::LABEL.1);
        println!("READY");
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        drop(release);
        let left = env.finish();
        drop(env);
        if !left.is_empty() {
            eprintln!("left behind:\n{}", left.join("\n"));
            std::process::exit(1);
        }
        return;
    }
    if args.iter().any(|a| a == "--demo") {
        let mut env = Env::setup();
        let outcome = catch_unwind(AssertUnwindSafe(|| demo(&env)));
        let left = env.finish();
        drop(env);
        if !left.is_empty() {
            eprintln!("left behind:\n{}", left.join("\n"));
        }
        std::process::exit(i32::from(outcome.is_err() || !left.is_empty()));
    }
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &scenarios {
            println!("{name}: test");
        }
        return;
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let selected: Vec<&Scenario> =
        scenarios.iter().filter(|(name, _)| filter.as_ref().is_none_or(|f| name.contains(f.as_str()))).collect();
    if selected.is_empty() {
        println!("0 passed, 0 failed");
        return;
    }
    println!("running {} end-to-end scenarios", selected.len());
    let mut env = match catch_unwind(Env::setup) {
        Ok(env) => env,
        Err(_) => {
            println!("0 passed, {} failed", selected.len());
            std::process::exit(1);
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for (name, scenario) in selected {
        let started = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| scenario(&env))) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.1} s)", started.elapsed().as_secs_f64());
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    if failed > 0 {
        println!(
            "--- webhook log (last lines) ---\n{}",
            std::fs::read_to_string(env.work.join("webhook.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    if env.real.is_some() {
        // The node goes first (its pods through the API server), then Dragonfly; then nothing
        // of it may be left on the machine.
        let started = Instant::now();
        let left = env.finish();
        if left.is_empty() {
            passed += 1;
            println!(
                "test the_node_leaves_the_machine_as_it_found_it ... ok ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
        } else {
            failed += 1;
            println!("test the_node_leaves_the_machine_as_it_found_it ... FAILED\n{}", left.join("\n"));
        }
    } else {
        env.stop_webhook();
    }
    drop(env);
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
