//! The stack every scenario runs against: the registry with the tools image, the control plane,
//! the real node with Dragonfly on it (node A, and node B in its own network namespace), the chart
//! installed for real and the webhook on the host; and the helpers the scenarios share.

use super::*;

pub(crate) struct Env {
    pub(crate) plane: ControlPlane,
    pub(crate) registry: std::sync::Mutex<Registry>,
    pub(crate) pinned_image: String,
    pub(crate) webhook_pki: Pki,
    pub(crate) certs: std::sync::Mutex<KubeletDir>,
    pub(crate) webhook: std::sync::Mutex<Option<Child>>,
    pub(crate) webhook_args: Vec<String>,
    pub(crate) webhook_port: u16,
    /// How the cluster's API server reaches webhooks on this host (127.0.0.1 unless
    /// E2E_WEBHOOK_HOST says otherwise for an external cluster).
    pub(crate) webhook_host: std::net::IpAddr,
    pub(crate) admin_port: u16,
    pub(crate) work: PathBuf,
    /// The webhook image baked from the dist (repository, index digest), for the chart's own
    /// Deployment on the node.
    pub(crate) webhook_image: Option<(String, String)>,
    /// The real node and the real Dragonfly on it (not against an external cluster).
    pub(crate) real: Option<Real>,
}

/// What runs pods for real: the node, Dragonfly's scheduler and dfdaemon, and the origin they
/// download from.
pub(crate) struct Real {
    pub(crate) node: std::sync::Mutex<Node>,
    pub(crate) dragonfly: std::sync::Mutex<Dragonfly>,
    /// Node B: a second dfdaemon in its own network namespace, registered with the same
    /// scheduler (its socket on the host, for dfget here).
    pub(crate) peer: std::sync::Mutex<Dragonfly>,
    pub(crate) origin: Origin,
    /// The origin's files and their SHA-256, by name.
    pub(crate) files: std::collections::BTreeMap<String, String>,
    /// Node B's namespace and link: dropped after both dfdaemons.
    pub(crate) link: PeerLink,
    pub(crate) _work: tempfile::TempDir,
}

pub(crate) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.get(9..12)?.parse().ok()?;
    Some((status, reply.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}

impl Env {
    pub(crate) fn setup() -> Env {
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
                    IndexSpec { attestation: true, salt: "e2e", ..IndexSpec::default() },
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

    pub(crate) fn start_webhook(&self) {
        self.start_webhook_with(&self.webhook_args);
    }

    pub(crate) fn start_webhook_with(&self, args: &[String]) {
        let child = spawn_tied(
            Command::new(env!("CARGO_BIN_EXE_dragonfly-injector")).args(args),
            &self.work.join("webhook.log"),
        );
        *self.webhook.lock().unwrap() = Some(child);
        wait_for(Duration::from_secs(60), "the webhook ready (certificate, pinned digest, namespace cache)", || {
            matches!(http_get(self.admin_port, "/readyz"), Some((200, _)))
        });
    }

    pub(crate) fn stop_webhook(&self) {
        if let Some(mut child) = self.webhook.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn kubectl(&self, args: &[&str]) -> std::process::Output {
        self.plane.kubectl(args)
    }

    pub(crate) fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(output.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    pub(crate) fn apply(&self, manifest: &Value) -> std::process::Output {
        self.plane.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &manifest.to_string())
    }

    pub(crate) fn get(&self, kind: &str, namespace: &str, name: &str) -> Value {
        serde_json::from_str(&self.kubectl_ok(&["get", kind, name, "-n", namespace, "-o", "json"])).unwrap()
    }

    pub(crate) fn namespace(&self, name: &str, labels: &[(&str, &str)]) {
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
    pub(crate) fn wait_until_webhook_knows(&self, namespace: &str, probe: &Value, known: impl Fn(&Value) -> bool) {
        wait_for(Duration::from_secs(30), "the webhook's namespace cache", || {
            let output = self.plane.kubectl_stdin(
                &["create", "--dry-run=server", "-n", namespace, "-f", "-", "-o", "json"],
                &probe.to_string(),
            );
            output.status.success() && known(&serde_json::from_slice(&output.stdout).unwrap())
        });
    }

    pub(crate) fn admission_requests(&self) -> f64 {
        let (_, text) = http_get(self.admin_port, "/metrics").unwrap();
        text.lines()
            .filter(|l| l.starts_with("dragonfly_injector_admission_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The `helm install` arguments every release installed onto the real node shares: the
    /// webhook image `docker buildx bake` built and the pinned tools image, by digest; the node's
    /// dfdaemon socket; and the API server at the node's address, since no kube-proxy runs here.
    pub(crate) fn node_release_args(&self) -> Vec<String> {
        let (repository, digest) = self.webhook_image.clone().expect("the webhook image, baked from the dist");
        let (tools_reference, tools_digest) = self.pinned_image.split_once('@').unwrap();
        let tools_repository = tools_reference.rsplit_once(':').unwrap().0;
        let api_port = self.plane.server.rsplit_once(':').unwrap().1;
        let sets = [
            format!("image.repository={repository}"),
            "image.tag=v1".to_owned(),
            format!("image.digest={digest}"),
            format!("tools.image.repository={tools_repository}"),
            "tools.image.tag=v1".to_owned(),
            format!("tools.image.digest={tools_digest}"),
            format!("socket.path={HOST_SOCKET_DIR}/dfdaemon.sock"),
            "extraEnv[0].name=KUBERNETES_SERVICE_HOST".to_owned(),
            format!("extraEnv[0].value={NODE_IP}"),
            "extraEnv[1].name=KUBERNETES_SERVICE_PORT".to_owned(),
        ];
        let mut args: Vec<String> = sets.into_iter().flat_map(|set| ["--set".to_owned(), set]).collect();
        // A string, or Helm would make the port a number.
        args.extend(["--set-string".to_owned(), format!("extraEnv[1].value={api_port}")]);
        args
    }
}

/// The text a base64 field (a Secret's data, a caBundle) holds.
pub(crate) fn base64_text(encoded: &str) -> String {
    String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap()).unwrap()
}

pub(crate) fn pod(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "debian:bookworm-slim", "command": ["sleep", "infinity"]}]}})
}

pub(crate) fn env_names(container: &Value) -> Vec<String> {
    container["env"]
        .as_array()
        .map(|e| e.iter().map(|v| v["name"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

pub(crate) fn is_injected(pod: &Value) -> bool {
    pod["metadata"]["annotations"]["dragonfly.io/injected"].is_string()
}

pub(crate) fn assert_fully_injected(env: &Env, pod: &Value) {
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

/// The application images the node scenarios run, built here and imported into the node.
pub(crate) const BUSYBOX: &str = "registry.local/e2e/busybox:1";

/// A static busybox root: no libc at all, like a distroless image.
pub(crate) fn busybox_image(name: &str) -> Image {
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

pub(crate) fn import_app_images(node: &Node) {
    node.import(&busybox_image(BUSYBOX));
}

/// A pod for the real node: tolerates its taint, runs `script` once with `sh -c`, never pulls
/// its image, and goes quickly when deleted.
pub(crate) fn node_pod(name: &str, image: &str, script: &str, annotations: Value) -> Value {
    let (key, value) = TAINT.split_once('=').unwrap();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "tolerations": [{"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}],
            "containers": [{"name": "app", "image": image, "imagePullPolicy": "Never", "command": ["sh", "-c", script]}]}})
}

impl Env {
    /// Stops the webhook and tears the node down (its pods through the API server first), then
    /// Dragonfly; returns whatever of them is left on the machine, or a changed sysctl.
    pub(crate) fn finish(&mut self) -> Vec<String> {
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

    pub(crate) fn real(&self) -> &Real {
        self.real.as_ref().expect("a real node (not against an external cluster)")
    }

    /// Creates `manifest` in `namespace` and waits until the pod has run to completion; returns
    /// the pod as stored then. Panics with the pod's state and the kubelet's log if it fails.
    pub(crate) fn run_pod(&self, namespace: &str, manifest: &Value) -> Value {
        self.ensure_namespace(namespace);
        self.create_pod(namespace, manifest);
        self.wait_finished(namespace, manifest["metadata"]["name"].as_str().unwrap())
    }

    /// Creates the pod; returns what kubectl wrote on standard error: the admission warnings.
    pub(crate) fn create_pod(&self, namespace: &str, manifest: &Value) -> String {
        let output = self.plane.kubectl_stdin(&["create", "-n", namespace, "-f", "-"], &manifest.to_string());
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{said}");
        said
    }

    /// Waits until the pod has run to completion, as [`Env::run_pod`] says.
    pub(crate) fn wait_finished(&self, namespace: &str, name: &str) -> Value {
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
    pub(crate) fn ensure_namespace(&self, name: &str) {
        if !self.kubectl(&["get", "namespace", name]).status.success() {
            self.namespace(name, &[]);
        }
    }

    pub(crate) fn pod_logs(&self, namespace: &str, name: &str) -> String {
        String::from_utf8_lossy(&self.kubectl(&["logs", "-n", namespace, name, "--all-containers", "--prefix"]).stdout)
            .into_owned()
    }
}

pub(crate) fn init_exit_codes(pod: &Value) -> Vec<(String, i64)> {
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
