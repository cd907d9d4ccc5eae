//! What the workspace's tests and benches share, one of each (a dev-dependency of both
//! crates, as Linkerd's `policy-test`): a real PKI and kubelet-style certificate directories, a
//! TLS client, AdmissionReview fixtures, `serve` in-process or as the real binary, polling with
//! deadlines, the pinned versions, and, in the modules, a loopback registry and token server,
//! `docker buildx bake`, the dist and the five platforms, a control plane, a node and Dragonfly,
//! and a gRPC client for the CSI plugin's sockets.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

pub mod bake;
pub mod cluster;
pub mod dist;
pub mod dragonfly;
pub mod grpc;
pub mod node;
pub mod oci;
pub mod origin;
pub mod peer;
pub mod platforms;
pub mod registry;
pub mod token;
mod wait;

pub use wait::{wait_for, wait_until, Waited};

use arc_swap::ArcSwapOption;
use base64::Engine as _;
use clap::{Args, FromArgMatches};
use dragonfly_injector::cluster::ClusterArgs;
use dragonfly_injector::config::Config;
use dragonfly_injector::inject::{Settings, ToolsImage};
use dragonfly_injector::metrics::Metrics;
use dragonfly_injector::server::pool::ReviewPool;
use dragonfly_injector::server::state::WebhookState;
use dragonfly_injector::server::tls::CertResolver;
use dragonfly_injector::server::{ConnectionArgs, ListenArgs, ReviewArgs, ServeArgs, ShutdownArgs, TlsArgs};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt().with_env_filter("info,notify=warn").with_test_writer().try_init();
}

/// A CA and the leaf certificates it signs for `localhost` and 127.0.0.1.
pub struct Pki {
    ca_params: CertificateParams,
    ca_key: KeyPair,
    pub ca_pem: String,
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, name);
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        Pki { ca_params, ca_key, ca_pem }
    }

    /// A client certificate (no SANs) with the given CN and organisation (Kubernetes group).
    pub fn client(&self, common_name: &str, organisation: &str) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.distinguished_name.push(DnType::OrganizationName, organisation);
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    pub fn leaf(&self, common_name: &str) -> Leaf {
        self.leaf_for(common_name, "127.0.0.1".parse().unwrap())
    }

    /// A server certificate for `localhost`, 127.0.0.1 and `address`.
    pub fn leaf_for(&self, common_name: &str, address: std::net::IpAddr) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        if !address.is_loopback() {
            params.subject_alt_names.push(SanType::IpAddress(address));
        }
        params.distinguished_name.push(DnType::CommonName, common_name);
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }
}

impl Leaf {
    /// Writes `tls.crt` and `tls.key` into `dir` (key first, so a watcher never sees a new
    /// certificate beside an old key) and returns their paths.
    pub fn write_pair(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&key, &self.key_pem).unwrap();
        std::fs::write(&cert, &self.cert_pem).unwrap();
        (cert, key)
    }
}

/// A certificate directory laid out the way the kubelet writes a mounted Secret: the files are
/// symlinks through `..data`, which is swapped atomically to a new timestamped directory.
pub struct KubeletDir {
    pub dir: PathBuf,
    generation: u32,
}

impl KubeletDir {
    pub fn new(dir: &Path, leaf: &Leaf) -> Self {
        let mut this = KubeletDir { dir: dir.to_owned(), generation: 0 };
        this.swap(leaf);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
        this
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }

    pub fn swap(&mut self, leaf: &Leaf) {
        self.generation += 1;
        let data = format!("..2026_11_23_{:04}", self.generation);
        std::fs::create_dir(self.dir.join(&data)).unwrap();
        std::fs::write(self.dir.join(&data).join("tls.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(self.dir.join(&data).join("tls.key"), &leaf.key_pem).unwrap();
        let temporary = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&data, &temporary).unwrap();
        std::fs::rename(&temporary, self.dir.join("..data")).unwrap();
    }
}

/// Runs `command` with `input` on its standard input and collects its output. A command that
/// exits before reading its input closes the pipe: that broken pipe is expected, and what the
/// command did is judged by its output.
pub fn output_with_stdin(command: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `dragonfly-injector` binary cargo built for the test or bench that is running: it sits
/// beside the `deps/` directory of the running executable.
pub fn injector_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().and_then(Path::parent).map(|dir| dir.join("dragonfly-injector")).unwrap();
    assert!(binary.is_file(), "{} is missing: run the webhook's tests or benches with cargo", binary.display());
    binary
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A pinned version or list from scripts/versions.env, where each is written once. As in
/// scripts/lib.sh, an environment variable of the same name wins, so a one-off run (the release
/// tier with another TOOLS_PLATFORMS, say) checks what the scripts built.
pub fn pinned(key: &str) -> String {
    std::env::var(key).ok().filter(|value| !value.is_empty()).unwrap_or_else(|| pinned_default(key))
}

/// What scripts/versions.env itself says, whatever the environment: the defaults the bake file
/// and the chart must agree with.
pub fn pinned_default(key: &str) -> String {
    let versions = std::fs::read_to_string(repo_root().join("scripts/versions.env")).unwrap();
    versions
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{key} is not in scripts/versions.env"))
}

/// A pinned space-separated list from scripts/versions.env.
pub fn pinned_list(key: &str) -> Vec<String> {
    pinned(key).split_whitespace().map(str::to_owned).collect()
}

/// A space-separated list as scripts/versions.env itself says it (see [`pinned_default`]).
pub fn pinned_default_list(key: &str) -> Vec<String> {
    pinned_default(key).split_whitespace().map(str::to_owned).collect()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command`, which must succeed, and returns its output.
pub fn succeed(command: &mut std::process::Command) -> std::process::Output {
    // A binary a test just wrote can be briefly "busy" while a process forked meanwhile (by
    // another test thread) still holds the written file open: retry that one error.
    let mut attempts = 0;
    let output = loop {
        match command.output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => break result.unwrap_or_else(|e| panic!("{command:?}: {e}")),
        }
    };
    assert!(output.status.success(), "{command:?} failed:\n{}{}", text(&output.stdout), text(&output.stderr));
    output
}

/// Runs one of the scripts that build a pinned tool into the cache once (`helm.sh`,
/// `kubernetes.sh`, `buildkit.sh`) and returns the path it prints. Its progress goes to the
/// test's standard error, so a first, minutes-long build is visible.
pub fn cached_tool(script: &str) -> PathBuf {
    let output = succeed(
        std::process::Command::new(repo_root().join("scripts").join(script)).stderr(std::process::Stdio::inherit()),
    );
    PathBuf::from(text(&output.stdout).trim())
}

/// Runs a caching build script with arguments and returns the lines it prints.
pub fn cached_tool_lines(script: &str, args: &[&str]) -> Vec<String> {
    let output = succeed(
        std::process::Command::new(repo_root().join("scripts").join(script))
            .args(args)
            .stderr(std::process::Stdio::inherit()),
    );
    text(&output.stdout).lines().map(str::to_owned).collect()
}

/// `dragonfly-injector serve` on ephemeral loopback ports with JSON logs on a piped standard
/// error, using `injector.yaml`, `tls.crt` and `tls.key` in `dir`, outside any cluster.
pub fn serve_command(dir: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(injector_binary());
    command
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(dir.join("injector.yaml"))
        .arg("--tls-cert-file")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.join("tls.key"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped());
    command
}

/// `serve`'s arguments for [`dragonfly_injector::server::start`] in the test's process: ephemeral
/// loopback ports, `config_yaml` written to `dir/injector.yaml`, the certificate pair given, the
/// injector's namespace `dragonfly-system`, outside any cluster.
pub fn serve_args(
    dir: &Path,
    config_yaml: &str,
    (cert, key): (PathBuf, PathBuf),
    shutdown_delay: Duration,
) -> ServeArgs {
    let config = dir.join("injector.yaml");
    std::fs::write(&config, config_yaml).unwrap();
    ServeArgs {
        config,
        tls: TlsArgs::from_arg_matches(&TlsArgs::augment_args(clap::Command::new("t")).get_matches_from([
            "t".into(),
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-key-file={}", key.display()),
            "--tls-poll-interval=1h".into(),
        ]))
        .unwrap(),
        listen: ListenArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes: 1 << 20,
        },
        cluster: ClusterArgs { kubeconfig: None, namespace: Some("dragonfly-system".into()) },
        shutdown: ShutdownArgs { shutdown_delay, drain_timeout: Duration::from_secs(5) },
        // The flags' own defaults, as `serve` would get them.
        reviews: ReviewArgs::from_arg_matches(
            &ReviewArgs::augment_args(clap::Command::new("t")).get_matches_from(["t"]),
        )
        .unwrap(),
        connections: ConnectionArgs::from_arg_matches(
            &ConnectionArgs::augment_args(clap::Command::new("t")).get_matches_from(["t"]),
        )
        .unwrap(),
    }
}

/// The routers' state for in-process tests: `config_yaml`, the tools reference `image` (`None`:
/// not known yet), no cluster, no certificate loaded.
pub fn webhook_state(config_yaml: &str, image: Option<&str>) -> Arc<WebhookState> {
    webhook_state_with_pool(config_yaml, image, ReviewPool::new(2, 64))
}

/// As [`webhook_state`], with reviews run in `pool`.
pub fn webhook_state_with_pool(config_yaml: &str, image: Option<&str>, pool: ReviewPool) -> Arc<WebhookState> {
    let config = Config::from_yaml(config_yaml).unwrap();
    let image = image.map(|i| Arc::new(ToolsImage { reference: i.to_owned(), unpinned_warning: None }));
    Arc::new(WebhookState::new(
        Settings::new(&config, Some("dragonfly-system")),
        Arc::new(ArcSwapOption::new(image)),
        None,
        Arc::new(Metrics::default()),
        Arc::new(CertResolver::default()),
        pool,
    ))
}

/// Whether the admin port at `admin` answers `/readyz` with 200.
pub async fn ready(admin: SocketAddr) -> bool {
    matches!(get(admin, "/readyz").await, Ok(reply) if reply.status == 200)
}

pub fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    // A resumed session reports the certificate of the handshake it resumes; every connection
    // here must show what the server presents now.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A keep-alive HTTP/1.1 connection over TLS, as the API server opens them.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    pub server_cert: CertificateDer<'static>,
}

impl Connection {
    pub async fn open(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> std::io::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let stream =
            tokio_rustls::TlsConnector::from(tls).connect(ServerName::try_from("localhost").unwrap(), tcp).await?;
        let server_cert = stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
        let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        Ok(Connection { sender, server_cert })
    }

    pub async fn post(&mut self, path: &str, body: Vec<u8>) -> Result<Reply, hyper::Error> {
        self.sender.ready().await?;
        let request = hyper::Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        Ok(Reply { status, body })
    }
}

/// Plain HTTP GET for the admin port.
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<Reply> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path).header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
    let response = sender.send_request(request).await.map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(std::io::Error::other)?.to_bytes().to_vec();
    Ok(Reply { status, body })
}

/// Polls `check` every 20 ms until it returns true, for at most `seconds`.
pub async fn eventually<F, Fut>(seconds: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub fn fixture(name: &str) -> Value {
    let path = repo_root().join("webhook/tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Wraps a pod into a CREATE AdmissionReview.
pub fn review_for(pod: &Value, namespace: &str, uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    })
}

/// Checks a response and returns the pod with its patch applied (the original when no patch).
pub fn apply_response(original: &Value, response: &Value, uid: &str) -> Value {
    assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(response["kind"], "AdmissionReview");
    assert_eq!(response["response"]["uid"], uid);
    assert_eq!(response["response"]["allowed"], true);
    let mut pod = original.clone();
    if let Some(patch) = response["response"]["patch"].as_str() {
        assert_eq!(response["response"]["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD.decode(patch).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut pod, &patch).expect("the returned patch applies to the request's pod");
    }
    pod
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_environment_variable_wins_over_versions_env_as_in_lib_sh() {
        assert_eq!(super::pinned_list("ALL_PLATFORMS").len(), 5, "read from scripts/versions.env");
        // A key of this test's own, so no other test sees it.
        std::env::set_var("TEST_KIT_PINNED_OVERRIDE", "linux/amd64 linux/s390x");
        assert_eq!(super::pinned_list("TEST_KIT_PINNED_OVERRIDE"), ["linux/amd64", "linux/s390x"]);
        std::env::remove_var("TEST_KIT_PINNED_OVERRIDE");
    }
}
