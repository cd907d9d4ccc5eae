//! A real Kubernetes control plane on loopback for the end-to-end tests: etcd, kube-apiserver
//! and kube-controller-manager built by scripts/kubernetes.sh, with certificates made here.
//! With [`Options::node`] it also runs kube-scheduler and is ready for the kubelet of
//! [`super::node::Node`]; without, pods are stored, never run, which is all admission needs.

use super::{free_port, wait_until, Leaf, Pki, Waited};
use base64::Engine as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How to start a control plane.
pub struct Options {
    /// Where the API server listens and what it advertises: loopback, or the node's bridge
    /// address when a kubelet joins (pods reach it there).
    pub address: std::net::IpAddr,
    /// Ready for a kubelet: Node authorization, kubelet client credentials, a scheduler.
    pub node: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { address: "127.0.0.1".parse().unwrap(), node: false }
    }
}

pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    /// The API server's address, as clients and pods reach it.
    pub server: String,
    /// The cluster's CA (`None` for an external cluster).
    pub pki: Option<Pki>,
    /// kubectl of the same version as the API server, built with it.
    pub kubectl: PathBuf,
    children: Vec<(String, Child)>,
}

/// Starts `program` so that it dies with the test process, whatever happens to the test.
pub fn spawn_tied(command: &mut Command, log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command.stdout(Stdio::from(file.try_clone().unwrap())).stderr(Stdio::from(file)).spawn().unwrap()
}

/// The last `lines` lines of `dir/<name>.log`, newest last.
pub fn log_tail(dir: &Path, name: &str, lines: usize) -> String {
    let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let mut tail: Vec<&str> = log.lines().rev().take(lines).collect();
    tail.reverse();
    tail.join("\n")
}

/// Stops a child politely, then for good.
pub fn stop(child: &mut Child, grace: Duration) {
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let exited = wait_until(grace, Duration::from_millis(50), || Ok(child.try_wait().ok().flatten().is_some()));
    if exited.is_ok() {
        return;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `check` every `every` until it holds. Panics when one of `children` (started with
/// [`spawn_tied`], logging to `dir/<name>.log`) exits meanwhile, with its log, or when `limit`
/// passes, with the log of `children[0]`.
pub fn wait_while_alive(
    limit: Duration,
    every: Duration,
    what: &str,
    dir: &Path,
    children: &mut [(&str, &mut Option<Child>)],
    mut check: impl FnMut() -> bool,
) {
    let waited = wait_until(limit, every, || {
        if check() {
            return Ok(true);
        }
        for (name, child) in children.iter_mut() {
            if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("{name} exited ({status}) while waiting for {what}:\n{}", log_tail(dir, name, 30)));
            }
        }
        Ok(false)
    });
    match waited {
        Ok(()) => {}
        Err(Waited::Failed(why)) => panic!("{why}"),
        Err(Waited::TimedOut) => {
            let first = children.first().map(|(name, _)| *name).unwrap_or_default();
            panic!("timed out waiting for {what}; the {first} log ends:\n{}", log_tail(dir, first, 30));
        }
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

pub fn control_plane_binaries() -> PathBuf {
    super::cached_tool("kubernetes.sh")
}

impl ControlPlane {
    /// A cluster someone else runs (kind, in the workflow for people with Docker), driven with
    /// the kubectl on PATH.
    pub fn external(kubeconfig: PathBuf) -> ControlPlane {
        ControlPlane {
            dir: tempfile::tempdir().unwrap(),
            kubeconfig,
            server: String::new(),
            pki: None,
            kubectl: PathBuf::from("kubectl"),
            children: Vec::new(),
        }
    }

    pub fn start(binaries: &Path) -> ControlPlane {
        ControlPlane::start_with(binaries, &Options::default())
    }

    pub fn start_with(binaries: &Path, options: &Options) -> ControlPlane {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_owned();
        let path = |name: &str| base.join(name);
        let pki = Pki::new("kubernetes-ca");
        std::fs::write(path("ca.crt"), &pki.ca_pem).unwrap();
        pki.leaf_for("kube-apiserver", options.address).write_pair(dir.path());
        let admin = pki.client("admin", "system:masters");
        let service_accounts = rcgen::KeyPair::generate().unwrap();
        std::fs::write(path("sa.key"), service_accounts.serialize_pem()).unwrap();
        std::fs::write(path("sa.pub"), service_accounts.public_key_pem()).unwrap();

        let etcd_port = free_port();
        let peer_port = free_port();
        let api_port = free_port();
        let server = format!("https://{}:{api_port}", options.address);
        let mut plane = ControlPlane {
            dir,
            kubeconfig: path("admin.kubeconfig"),
            server,
            pki: None,
            kubectl: binaries.join("kubectl"),
            children: Vec::new(),
        };
        plane.pki = Some(pki);
        plane.write_kubeconfig(&path("admin.kubeconfig"), &admin);
        let etcd = format!("http://127.0.0.1:{etcd_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        plane.spawn(
            "etcd",
            Command::new(binaries.join("etcd")).args([
                "--name=e2e",
                &format!("--data-dir={}", path("etcd").display()),
                &format!("--listen-client-urls={etcd}"),
                &format!("--advertise-client-urls={etcd}"),
                &format!("--listen-peer-urls={peer}"),
                &format!("--initial-advertise-peer-urls={peer}"),
                &format!("--initial-cluster=e2e={peer}"),
                "--log-level=error",
            ]),
        );
        plane.wait_for_port(etcd_port, "etcd");
        plane.spawn(
            "kube-apiserver",
            Command::new(binaries.join("kube-apiserver")).args([
                &format!("--etcd-servers={etcd}"),
                &format!("--bind-address={}", options.address),
                &format!("--advertise-address={}", options.address),
                &format!("--secure-port={api_port}"),
                &format!("--tls-cert-file={}", path("tls.crt").display()),
                &format!("--tls-private-key-file={}", path("tls.key").display()),
                &format!("--client-ca-file={}", path("ca.crt").display()),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                &format!("--service-account-key-file={}", path("sa.pub").display()),
                &format!("--service-account-signing-key-file={}", path("sa.key").display()),
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                &format!("--cert-dir={}", path("apiserver-certs").display()),
            ])
            .args(if options.node {
                // A kubelet joins: the Node authorizer and NodeRestriction, the API server's own
                // client certificate for logs and exec, and webhooks called at their endpoints
                // (there is no kube-proxy to route a Service's cluster IP).
                let client = plane.pki.as_ref().unwrap().client("kube-apiserver-kubelet-client", "system:masters");
                let (cert, key) = (path("kubelet-client.crt"), path("kubelet-client.key"));
                std::fs::write(&cert, &client.cert_pem).unwrap();
                std::fs::write(&key, &client.key_pem).unwrap();
                vec![
                    "--authorization-mode=Node,RBAC".to_owned(),
                    "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,NodeRestriction,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook".to_owned(),
                    format!("--kubelet-client-certificate={}", cert.display()),
                    format!("--kubelet-client-key={}", key.display()),
                    "--kubelet-preferred-address-types=InternalIP".to_owned(),
                    "--enable-aggregator-routing=true".to_owned(),
                ]
            } else {
                vec![
                    "--authorization-mode=RBAC".to_owned(),
                    "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook".to_owned(),
                ]
            }),
        );
        plane.wait_until(Duration::from_secs(90), "kube-apiserver ready", |plane| {
            plane.kubectl(&["get", "--raw", "/readyz"]).status.success()
                && plane.kubectl(&["get", "namespace", "default"]).status.success()
        });
        let kcm_port = free_port();
        plane.spawn(
            "kube-controller-manager",
            Command::new(binaries.join("kube-controller-manager")).args([
                &format!("--kubeconfig={}", plane.kubeconfig.display()),
                &format!("--authentication-kubeconfig={}", plane.kubeconfig.display()),
                &format!("--authorization-kubeconfig={}", plane.kubeconfig.display()),
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                &format!("--secure-port={kcm_port}"),
                &format!("--cert-dir={}", path("kcm-certs").display()),
                &format!("--service-account-private-key-file={}", path("sa.key").display()),
                &format!("--root-ca-file={}", path("ca.crt").display()),
                // Its default creates /usr/libexec/kubernetes/kubelet-plugins/volume/exec.
                &format!("--flex-volume-plugin-dir={}", path("kcm-flexvolume").display()),
                "--controllers=*",
            ]),
        );
        if options.node {
            let scheduler_port = free_port();
            plane.spawn(
                "kube-scheduler",
                Command::new(binaries.join("kube-scheduler")).args([
                    &format!("--kubeconfig={}", plane.kubeconfig.display()),
                    &format!("--authentication-kubeconfig={}", plane.kubeconfig.display()),
                    &format!("--authorization-kubeconfig={}", plane.kubeconfig.display()),
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    &format!("--secure-port={scheduler_port}"),
                ]),
            );
        }
        // The service account controller creates `default` in each namespace; pods need it.
        plane.wait_until(Duration::from_secs(60), "default service account", |plane| {
            plane.kubectl(&["get", "serviceaccount", "default", "-n", "default"]).status.success()
        });
        plane
    }

    /// Writes a kubeconfig for this cluster with `user`'s client certificate; returns `path`.
    pub fn write_kubeconfig(&self, path: &Path, user: &Leaf) -> PathBuf {
        let ca = &self.pki.as_ref().expect("a control plane started by this test").ca_pem;
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n\
                 users:\n- name: user\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n\
                 contexts:\n- name: e2e\n  context: {{cluster: e2e, user: user}}\ncurrent-context: e2e\n",
                self.server,
                b64(ca),
                b64(&user.cert_pem),
                b64(&user.key_pem)
            ),
        )
        .unwrap();
        path.to_owned()
    }

    fn spawn(&mut self, name: &str, command: &mut Command) {
        let child = spawn_tied(command, &self.dir.path().join(format!("{name}.log")));
        self.children.push((name.to_owned(), child));
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn wait_for_port(&mut self, port: u16, what: &str) {
        self.wait_until(Duration::from_secs(30), what, |_| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    /// Polls `check` every 100 ms; panics with the logs if it never holds or a process died.
    pub fn wait_until(&mut self, limit: Duration, what: &str, mut check: impl FnMut(&ControlPlane) -> bool) {
        let waited = wait_until(limit, Duration::from_millis(100), || {
            if check(self) {
                return Ok(true);
            }
            let dir = self.dir.path().to_owned();
            let dead = self
                .children
                .iter_mut()
                .find_map(|(name, child)| child.try_wait().ok().flatten().map(|s| (name.clone(), s)));
            match dead {
                Some((name, status)) => {
                    Err(format!("{name} exited ({status}) while waiting for {what}:\n{}", log_tail(&dir, &name, 30)))
                }
                None => Ok(false),
            }
        });
        match waited {
            Ok(()) => {}
            Err(Waited::Failed(why)) => panic!("{why}"),
            Err(Waited::TimedOut) => panic!("timed out waiting for {what}"),
        }
    }

    /// Runs kubectl against this control plane.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.kubectl)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> std::process::Output {
        super::output_with_stdin(
            Command::new(&self.kubectl).arg(format!("--kubeconfig={}", self.kubeconfig.display())).args(args),
            stdin.as_bytes(),
        )
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
