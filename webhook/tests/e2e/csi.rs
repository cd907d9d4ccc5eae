//! The dfdaemon socket in namespaces whose Pod Security forbids hostPath, on the real node: the
//! chart's CSI plugin (`csi.enabled`, the baked webhook image, a DaemonSet registered with the
//! node's kubelet) and the host's webhook running with that release's config (`socket.mode:
//! auto` and the chart's default namespace label).

use super::*;
use dragonfly_injector::csi::wire::Writer;
use std::collections::BTreeMap;
use test_kit::node::KUBELET_DIR;

const RELEASE: &str = "csi";
const NAMESPACE: &str = "dragonfly-csi";
const DRIVER: &str = "csi.dragonfly.io";
/// The chart's default socket label with `csi.enabled`.
pub const LABEL: (&str, &str) = ("dragonfly.io/dfdaemon-socket", "allowed");
const ALLOWED: &str = "e2e-restricted";
const BARE: &str = "e2e-restricted-bare";

/// A pod that Pod Security `restricted` admits: non-root (uid 1000), no privilege escalation,
/// every capability dropped, the runtime's seccomp profile.
fn restricted_pod(name: &str, script: &str, inject: bool) -> Value {
    let annotations = if inject { json!({"dragonfly.io/inject-p2p": "true"}) } else { json!({}) };
    let mut pod = node_pod(name, BUSYBOX, script, annotations);
    pod["spec"]["securityContext"] = json!({"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"}});
    pod["spec"]["containers"][0]["securityContext"] =
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    pod
}

/// The script a restricted pod runs to download through the socket, as uid 1000 (dfdaemon makes
/// its socket 0777: any user of the pod may connect).
fn download_script(url: &str) -> String {
    format!("set -e; test -S /var/run/dragonfly/dfdaemon.sock; dfget '{url}' -O /tmp/blob; sha256sum /tmp/blob")
}

/// Mount points under the kubelet's pods directory that belong to CSI volumes, as the host sees
/// them (`findmnt`'s source).
fn csi_mounts(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&format!("{KUBELET_DIR}/pods/")) && point.contains("kubernetes.io~csi"))
        .filter(|point| point.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// The plugin process's resident memory, as the host sees it (measured, not asserted).
fn plugin_rss_kib() -> String {
    test_kit::node::processes_mentioning(" csi --log-format")
        .into_iter()
        .filter_map(|(pid, _)| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn registration_socket() -> PathBuf {
    PathBuf::from(format!("{KUBELET_DIR}/plugins_registry/{DRIVER}-reg.sock"))
}

fn csi_socket() -> PathBuf {
    PathBuf::from(format!("{KUBELET_DIR}/plugins/{DRIVER}/csi.sock"))
}

impl Env {
    /// Restarts the host's webhook on another config file.
    pub fn use_webhook_config(&self, config: &std::path::Path) {
        let args: Vec<String> = self
            .webhook_args
            .iter()
            .map(|a| if a.starts_with("--config=") { format!("--config={}", config.display()) } else { a.clone() })
            .collect();
        self.stop_webhook();
        self.start_webhook_with(&args);
    }

    /// Runs `body` with the host's webhook on another config file, then restores the suite's.
    fn with_webhook_config(&self, config: &std::path::Path, body: impl FnOnce()) {
        self.use_webhook_config(config);
        let outcome = catch_unwind(AssertUnwindSafe(body));
        self.stop_webhook();
        self.start_webhook();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    fn plugin_pods(&self) -> Vec<String> {
        self.kubectl_ok(&[
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/component=csi-plugin",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(str::to_owned)
        .collect()
    }

    fn plugin_rollout(&self, what: &str) {
        let daemonset = format!("daemonset/{RELEASE}-dragonfly-injector-csi");
        let output = self.kubectl(&["rollout", "status", &daemonset, "-n", NAMESPACE, "--timeout=120s"]);
        assert!(
            output.status.success(),
            "{what}: {}{}\n{}\nkubelet:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&self.kubectl(&["logs", "-n", NAMESPACE, &daemonset, "--tail=30"]).stdout),
            tail(&self.real().node.lock().unwrap().log("kubelet"), 30),
        );
    }

    /// Waits until the pod runs (its containers started).
    fn wait_running(&self, namespace: &str, name: &str) {
        wait_for(Duration::from_secs(120), &format!("pod {name} running"), || {
            self.get("pod", namespace, name)["status"]["phase"] == "Running"
        });
    }

    fn exec(&self, namespace: &str, pod: &str, script: &str) -> String {
        let output = self.kubectl(&["exec", "-n", namespace, pod, "--", "sh", "-c", script]);
        let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "exec in {pod}: {said}");
        said
    }

    fn delete_pods_and_wait(&self, namespace: &str) {
        let output = self.kubectl(&["delete", "pods", "--all", "-n", namespace, "--wait=true", "--timeout=120s"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
}

/// Publish and unpublish straight on the plugin's socket, as the kubelet calls them: a repeated
/// publish finds its mount and makes no second one, an unpublish of what is gone succeeds.
fn publish_and_unpublish_are_idempotent() {
    let uid = "0e2e0000-csi0-idem-0000-000000000000";
    let target = format!("{KUBELET_DIR}/pods/{uid}/volumes/kubernetes.io~csi/probe/mount");
    let context: BTreeMap<String, String> = [
        ("csi.storage.k8s.io/pod.namespace", ALLOWED),
        ("csi.storage.k8s.io/pod.uid", uid),
        ("csi.storage.k8s.io/ephemeral", "true"),
        ("dragonfly.io/volume", "socket"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let publish = Writer::default().string(1, "csi-probe").string(4, &target).bool(6, true).map(8, &context).finish();
    let unpublish = Writer::default().string(1, "csi-probe").string(2, &target).finish();
    let call = |method: &str, message: &[u8]| test_kit::grpc::call(&csi_socket(), method, message);
    for _ in 0..2 {
        call("/csi.v1.Node/NodePublishVolume", &publish).expect("publish");
        assert_eq!(csi_mounts(uid).len(), 1, "one mount, however often published");
    }
    assert!(std::path::Path::new(&target).join("dfdaemon.sock").exists(), "the socket is seen through the mount");
    for _ in 0..2 {
        call("/csi.v1.Node/NodeUnpublishVolume", &unpublish).expect("unpublish");
        assert!(csi_mounts(uid).is_empty());
    }
    assert!(!std::path::Path::new(&target).exists(), "the target directory is removed");
    // Measured, not asserted (BENCHMARKS.md, "The CSI plugin"): one publish as the kubelet sees
    // it, and the plugin's memory once it has served.
    let mut took: Vec<Duration> = (0..20)
        .map(|_| {
            let started = Instant::now();
            call("/csi.v1.Node/NodePublishVolume", &publish).expect("publish");
            let took = started.elapsed();
            call("/csi.v1.Node/NodeUnpublishVolume", &unpublish).expect("unpublish");
            took
        })
        .collect();
    took.sort();
    println!(
        "csi plugin: NodePublishVolume median {:.2} ms, max {:.2} ms over 20 (with a new connection each); RSS after serving {} KiB",
        took[10].as_secs_f64() * 1e3,
        took[19].as_secs_f64() * 1e3,
        plugin_rss_kib()
    );
    let _ = std::fs::remove_dir_all(format!("{KUBELET_DIR}/pods/{uid}"));
    // A namespace without the label is refused here too, whatever the caller.
    let mut bare = context.clone();
    bare.insert("csi.storage.k8s.io/pod.namespace".into(), BARE.into());
    let refused = Writer::default().string(1, "csi-probe").string(4, &target).map(8, &bare).finish();
    let error = call("/csi.v1.Node/NodePublishVolume", &refused).unwrap_err();
    assert_eq!(error.code, 7, "PERMISSION_DENIED: {error:?}");
    assert!(error.message.contains("lacks the label dragonfly.io/dfdaemon-socket=allowed"), "{error:?}");
    let _ = std::fs::remove_dir_all(format!("{KUBELET_DIR}/pods/{uid}"));
}

/// The chart installed with `csi.enabled`, as users install it, with the image `docker buildx
/// bake` built: the plugin's DaemonSet registered with the node's kubelet. No webhook replicas:
/// the host's webhook answers admissions, with the config this release stored ([`Self::config`]).
/// Dropped: `helm uninstall --wait`.
pub struct CsiRelease<'a> {
    env: &'a Env,
    helm: PathBuf,
    pub config: PathBuf,
}

impl<'a> CsiRelease<'a> {
    pub fn install(env: &'a Env) -> Self {
        let registry_host = env.registry.lock().unwrap().host.clone();
        let helm = test_kit::cached_tool("helm.sh");
        let chart = test_kit::repo_root().join("charts/dragonfly-injector");
        let mut install = Command::new(&helm);
        install.args(["install", RELEASE]).arg(&chart).args([
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "--kubeconfig",
        ]);
        install.arg(&env.plane.kubeconfig).args(env.node_release_args());
        for set in [
            // Only the plugin runs on the node: the host's webhook answers admissions.
            "injection.enabled=false".to_owned(),
            "replicaCount=0".to_owned(),
            "csi.enabled=true".to_owned(),
            format!("csi.kubeletDir={KUBELET_DIR}"),
            "tools.pinning=required".to_owned(),
            format!("registry.plainHttp={{{registry_host}}}"),
        ] {
            install.args(["--set", &set]);
        }
        succeed(&mut install);
        // From here on the release goes when this does, whatever happens.
        let release = CsiRelease { env, helm: helm.clone(), config: env.work.join("config-csi.yaml") };
        env.plugin_rollout("the plugin registers with the kubelet and is ready");

        // The webhook with exactly the config this release stored: auto mode and the default label.
        let config = env.kubectl_ok(&[
            "get",
            "configmap",
            &format!("{RELEASE}-dragonfly-injector"),
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.data.config\\.yaml}",
        ]);
        std::fs::write(&release.config, &config).unwrap();
        release
    }
}

impl Drop for CsiRelease<'_> {
    fn drop(&mut self) {
        let _ = Command::new(&self.helm)
            .args(["uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--kubeconfig"])
            .arg(&self.env.plane.kubeconfig)
            .output();
    }
}

/// The whole of the socket's CSI route, in order: install, the labelled restricted namespace, the
/// unlabelled one, the hostPath control, restarts of dfdaemon and of the plugin, a stopped plugin,
/// and `helm uninstall` leaving nothing behind.
pub fn the_csi_plugin_brings_the_socket_to_labelled_restricted_namespaces_only_and_survives_restarts(env: &Env) {
    let release = CsiRelease::install(env);
    println!("csi plugin: RSS idle after registration {} KiB", plugin_rss_kib());
    assert!(registration_socket().exists(), "the registration socket in the kubelet's plugin registry");
    let drivers =
        env.kubectl_ok(&["get", "csinode", test_kit::node::NODE_NAME, "-o", "jsonpath={.spec.drivers[*].name}"]);
    assert!(drivers.contains(DRIVER), "the kubelet registered the driver on its CSINode: {drivers:?}");
    let config = std::fs::read_to_string(&release.config).unwrap();
    assert!(
        config.contains("mode: auto") && config.contains("namespaceLabel: dragonfly.io/dfdaemon-socket=allowed"),
        "{config}"
    );
    env.with_webhook_config(&release.config, || {
        env.namespace(ALLOWED, &[("pod-security.kubernetes.io/enforce", "restricted"), LABEL]);
        env.namespace(BARE, &[("pod-security.kubernetes.io/enforce", "restricted")]);
        // Pod Security checks dry runs too: the probe complies with `restricted`.
        let probe = restricted_pod("probe", "true", true);
        env.wait_until_webhook_knows(ALLOWED, &probe, |p| p.to_string().contains(DRIVER));
        let real = env.real();
        let url = real.origin.url("blob-8MiB");
        let sum = real.files["blob-8MiB"].clone();

        // The labelled restricted namespace: the socket through the plugin, no hostPath.
        let pod = env.run_pod(ALLOWED, &restricted_pod("restricted-download", &download_script(&url), true));
        assert!(!pod["spec"].to_string().contains("hostPath"), "{}", pod["spec"]);
        let volumes = pod["spec"]["volumes"].to_string();
        assert!(volumes.contains(DRIVER) && volumes.contains("\"dragonfly.io/volume\":\"socket\""), "{volumes}");
        let logs = env.pod_logs(ALLOWED, "restricted-download");
        assert!(logs.contains(&format!("{sum}  /tmp/blob")), "dfget as uid 1000 through the CSI socket:\n{logs}");
        let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
        env.delete_pods_and_wait(ALLOWED);
        assert!(csi_mounts(&uid).is_empty(), "the deleted pod's mount is gone: {:?}", csi_mounts(&uid));

        // Without the label: the pod runs with the tools and the proxy, no socket, and a warning.
        let script = "set -e; dfget --version; echo proxy=$DRAGONFLY_INJECT_PROXY; test ! -e /var/run/dragonfly/dfdaemon.sock && echo no-socket";
        let said = env.create_pod(BARE, &restricted_pod("restricted-bare", script, true));
        assert!(said.contains("lacks the label dragonfly.io/dfdaemon-socket=allowed"), "the warning: {said}");
        let pod = env.wait_finished(BARE, "restricted-bare");
        assert!(!pod["spec"].to_string().contains(DRIVER), "{}", pod["spec"]);
        let logs = env.pod_logs(BARE, "restricted-bare");
        assert!(logs.contains("no-socket") && logs.contains(&format!("proxy=http://{NODE_IP}:4001")), "{logs}");

        // A pod there that writes the driver's volume into its own spec does not start, and its
        // events name the label.
        let mut by_hand = restricted_pod("by-hand", "sleep 1", false);
        by_hand["spec"]["volumes"] = json!([{"name": "socket", "csi": {"driver": DRIVER, "readOnly": true,
            "volumeAttributes": {"dragonfly.io/volume": "socket"}}}]);
        by_hand["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "socket", "mountPath": "/var/run/dragonfly"}]);
        env.create_pod(BARE, &by_hand);
        wait_for(Duration::from_secs(60), "the refused mount in the pod's events", || {
            env.kubectl_ok(&["get", "events", "-n", BARE, "--field-selector", "involvedObject.name=by-hand", "-o", "jsonpath={.items[*].message}"])
                .contains("lacks the label dragonfly.io/dfdaemon-socket=allowed")
        });
        assert_eq!(env.get("pod", BARE, "by-hand")["status"]["phase"], "Pending");
        env.delete_pods_and_wait(BARE);

        // The control: the same pod injected in hostPath mode is refused by Pod Security.
        let plain = restricted_pod("host-path", &download_script(&url), true);
        let mut inject = Command::new(env!("CARGO_BIN_EXE_dragonfly-injector"));
        inject.args(["inject", "-q", "-o", "json", "-f", "-", "--config"]).arg(env.work.join("config.yaml"));
        let injected = test_kit::output_with_stdin(&mut inject, plain.to_string().as_bytes());
        let injected = String::from_utf8_lossy(&injected.stdout).into_owned();
        assert!(injected.contains("hostPath"), "{injected}");
        let refused = env.plane.kubectl_stdin(&["create", "--dry-run=server", "-n", ALLOWED, "-f", "-"], &injected);
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && said.contains("violates PodSecurity") && said.contains("hostPath"), "{said}");

        // A running pod keeps downloading across a dfdaemon restart and a plugin restart.
        let keeper = restricted_pod("keeper", "sleep 3600", true);
        env.create_pod(ALLOWED, &keeper);
        env.wait_running(ALLOWED, "keeper");
        let download = |file: &str| {
            env.exec(ALLOWED, "keeper", &format!("dfget '{url}' -O /tmp/{file} && sha256sum /tmp/{file}"))
        };
        assert!(download("first").contains(&sum));
        real.dragonfly.lock().unwrap().restart_dfdaemon();
        assert!(download("after-dfdaemon").contains(&sum), "after dfdaemon's restart");
        let before = env.plugin_pods();
        let output = env.kubectl(&["delete", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=csi-plugin"]);
        assert!(output.status.success());
        wait_for(Duration::from_secs(60), "a new plugin pod", || {
            let now = env.plugin_pods();
            !now.is_empty() && now != before
        });
        env.plugin_rollout("the restarted plugin registers again");
        assert!(download("after-plugin").contains(&sum), "the mount outlives the plugin's restart");
        env.run_pod(ALLOWED, &restricted_pod("after-restart", &download_script(&url), true));

        // Stopped: new pods wait in ContainerCreating, and start once the plugin is back.
        let daemonset = format!("daemonset/{RELEASE}-dragonfly-injector-csi");
        let away = r#"{"spec":{"template":{"spec":{"nodeSelector":{"dragonfly-injector.e2e/nowhere":"true"}}}}}"#;
        env.kubectl_ok(&["patch", &daemonset, "-n", NAMESPACE, "--type", "merge", "-p", away]);
        wait_for(Duration::from_secs(60), "the plugin gone from the node", || env.plugin_pods().is_empty());
        assert!(!registration_socket().exists(), "the stopped plugin removed its registration socket");
        env.create_pod(ALLOWED, &restricted_pod("waits", &download_script(&url), true));
        wait_for(Duration::from_secs(60), "the failed mount in the waiting pod's events", || {
            let events = env.kubectl_ok(&[
                "get",
                "events",
                "-n",
                ALLOWED,
                "--field-selector",
                "involvedObject.name=waits",
                "-o",
                "jsonpath={.items[*].message}",
            ]);
            events.contains("MountVolume.SetUp failed") && events.contains(DRIVER)
        });
        let waiting = env.get("pod", ALLOWED, "waits");
        assert_eq!(waiting["status"]["phase"], "Pending", "{}", waiting["status"]);
        assert!(!waiting["status"].to_string().contains("\"running\""), "nothing started: {}", waiting["status"]);
        let back = r#"{"spec":{"template":{"spec":{"nodeSelector":{"dragonfly-injector.e2e/nowhere":null}}}}}"#;
        env.kubectl_ok(&["patch", &daemonset, "-n", NAMESPACE, "--type", "merge", "-p", back]);
        env.plugin_rollout("the plugin is back");
        env.wait_finished(ALLOWED, "waits");
        assert!(env.pod_logs(ALLOWED, "waits").contains(&sum));

        publish_and_unpublish_are_idempotent();
        env.delete_pods_and_wait(ALLOWED);
        assert!(csi_mounts("").is_empty(), "no CSI mount is left: {:?}", csi_mounts(""));
    });

    // helm uninstall takes the driver and the DaemonSet, and the plugin its sockets.
    drop(release);
    wait_for(Duration::from_secs(60), "the plugin's pods gone", || env.plugin_pods().is_empty());
    assert!(!env.kubectl(&["get", "csidriver", DRIVER]).status.success(), "the CSIDriver is removed");
    assert!(!registration_socket().exists(), "no registration socket is left");
    assert!(!csi_socket().exists(), "no CSI socket is left");
    for namespace in [ALLOWED, BARE] {
        let _ = env.kubectl(&["delete", "namespace", namespace, "--wait=false"]);
    }
}
