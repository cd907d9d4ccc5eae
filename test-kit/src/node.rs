//! A real node for the end-to-end tests: Debian's containerd and runc, the CNI bridge plugin and
//! a kubelet built with the control plane (scripts/kubernetes.sh), registered with the test's
//! API server. Pods get addresses on a private bridge ([`BRIDGE`], [`NODE_IP`]) with no default
//! route, so nothing they send leaves the machine. Images are never pulled from outside:
//! the tests import what they build with `ctr`, and the loopback registry is reachable over
//! plain HTTP.
//!
//! Needs root. Everything the node writes outside its own directories is known (kubelet and
//! containerd hard-code a few paths; the kubelet changes sysctls), and [`Node::teardown`] puts the
//! machine back as it found it, whatever state the node was left in: it is also run first, in
//! case an earlier run was killed before it could clean up.

use super::cluster::{spawn_tied, stop, wait_while_alive, ControlPlane};
use super::oci::Image;
use super::{succeed, text, wait_until};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

pub const NODE_NAME: &str = "dfi-node";
pub const BRIDGE: &str = "dfie2e0";
pub const NODE_IP: &str = "10.88.0.1";
const POD_SUBNET: &str = "10.88.0.0/16";
/// The node's own state, outside the test's temporary directory because the kubelet and
/// containerd need stable absolute paths (mounts, sockets) and the teardown must find them
/// after a crash.
const STATE: &str = "/var/lib/dfi-e2e";
const RUN: &str = "/run/dfi-e2e";
const POD_LOGS: &str = "/var/log/dfi-e2e-pods";
pub const CONTAINERD_SOCKET: &str = "/run/dfi-e2e/containerd/containerd.sock";
/// The kubelet's root directory: pods' volumes, and the plugin registry a CSI plugin joins.
pub const KUBELET_DIR: &str = "/var/lib/dfi-e2e/kubelet";
pub const PAUSE_IMAGE: &str = "registry.local/e2e/pause:1";
/// The node's taint (`key=value`); the node scenarios' pods tolerate it.
pub const TAINT: &str = "dragonfly-injector.e2e/real-node=true";

/// Paths the kubelet, containerd and the CNI plugins write to whatever they are told. Removed at
/// teardown only if they did not exist before the node started.
const HARD_CODED: [&str; 7] = [
    "/var/lib/kubelet",
    "/var/log/containers",
    "/run/containerd",
    "/var/lib/cni",
    "/run/netns",
    "/run/nri",
    "/usr/libexec/kubernetes",
];

/// Kernel settings the kubelet or the bridge plugin change, restored at teardown.
const SYSCTLS: [&str; 7] = [
    "net/ipv4/ip_forward",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// One node per machine: the kubelet and containerd hard-code paths, and the teardown (and the
/// clean-up after a killed run) would tear another run's node down. A second run waits here.
const LOCK: &str = "/run/dfi-e2e.lock";

struct MachineLock {
    /// Holds the `flock` for as long as the node runs.
    _file: std::fs::File,
}

impl MachineLock {
    fn acquire() -> MachineLock {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(LOCK).unwrap();
        let mut told = false;
        let locked = wait_until(Duration::from_secs(30 * 60), Duration::from_millis(500), || {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(true);
            }
            if !told {
                eprintln!("node: another end-to-end run holds {LOCK}; waiting for it (at most 30 minutes)");
                told = true;
            }
            Ok(false)
        });
        assert!(locked.is_ok(), "another end-to-end run kept the node for 30 minutes ({LOCK})");
        MachineLock { _file: file }
    }
}

impl Drop for MachineLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(LOCK);
    }
}

pub struct Node {
    pub dir: PathBuf,
    /// Released once everything is cleaned up (in `teardown` or `Drop`).
    lock: Option<MachineLock>,
    kubelet: Option<Child>,
    containerd: Option<Child>,
    before: Before,
    torn_down: bool,
}

/// What the machine looked like before the node started.
#[derive(Clone)]
struct Before {
    sysctls: BTreeMap<String, String>,
    existing: Vec<String>,
    netns: Vec<String>,
}

impl Before {
    fn record() -> Before {
        let sysctls = SYSCTLS.iter().map(|k| (k.to_string(), read_sysctl(k))).collect();
        let existing = HARD_CODED.iter().filter(|p| Path::new(p).exists()).map(|p| p.to_string()).collect();
        Before { sysctls, existing, netns: netns_names() }
    }
}

fn read_sysctl(key: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/sys").join(key)).map(|v| v.trim().to_owned()).unwrap_or_default()
}

fn netns_names() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ctr(args: &[&str]) -> std::process::Output {
    let mut all = vec!["--address", CONTAINERD_SOCKET, "--namespace", "k8s.io"];
    all.extend_from_slice(args);
    run("ctr", &all)
}

/// Mount points under any of `prefixes`, deepest first.
fn mounts_under(prefixes: &[&str]) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<String> = mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(|point| point.replace("\\040", " "))
        .filter(|point| prefixes.iter().any(|prefix| point == prefix || point.starts_with(&format!("{prefix}/"))))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    points
}

fn unmount_all(prefixes: &[&str]) {
    // A mount can be stacked several times over (the kubelet bind-mounts its root onto itself).
    for _ in 0..5 {
        let points = mounts_under(prefixes);
        if points.is_empty() {
            return;
        }
        for point in points {
            let path = std::ffi::CString::new(point).unwrap();
            // SAFETY: a plain syscall on a NUL-terminated path.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Processes whose command line mentions `needle` (shims and containers outlive their parents).
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    let me = std::process::id() as i32;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Everything a node could have left behind, as lines (empty when the machine is clean).
pub fn leftovers() -> Vec<String> {
    let mut left = Vec::new();
    for needle in [RUN, STATE] {
        for (pid, cmdline) in processes_mentioning(needle) {
            left.push(format!("process {pid}: {cmdline}"));
        }
    }
    for point in mounts_under(&[STATE, RUN, "/run/netns", "/var/lib/kubelet"]) {
        left.push(format!("mount {point}"));
    }
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        left.push(format!("link {BRIDGE}"));
    }
    for dir in [STATE, RUN, POD_LOGS] {
        if Path::new(dir).exists() {
            left.push(format!("directory {dir}"));
        }
    }
    for cgroup in kubepods_cgroups() {
        left.push(format!("cgroup {}", cgroup.display()));
    }
    left
}

fn kubepods_cgroups() -> Vec<PathBuf> {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return Vec::new() };
    hierarchies.flatten().map(|h| h.path().join("kubepods")).filter(|p| p.is_dir()).collect()
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&child.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn kill_mentioning(needle: &str) {
    for (pid, _) in processes_mentioning(needle) {
        // SAFETY: sending a signal to a process id.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// The static pause program every pod sandbox runs: sleeps, reaps, exits on SIGTERM.
const PAUSE_C: &str = r#"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
static void quit(int s) { (void)s; _exit(0); }
int main(void) {
  signal(SIGCHLD, reap); signal(SIGINT, quit); signal(SIGTERM, quit);
  for (;;) pause();
}
"#;

impl Node {
    /// Creates the node's bridge, whose address is the node IP (the kubelet refuses loopback
    /// ones) and where the API server listens so that pods reach it; records what the machine
    /// looked like first. Then [`Node::join`].
    pub fn prepare(dir: &Path) -> Node {
        let lock = MachineLock::acquire();
        Node::clean_stale();
        let before = Before::record();
        let node =
            Node { dir: dir.to_owned(), lock: Some(lock), kubelet: None, containerd: None, before, torn_down: false };
        for d in ["cni", "certs.d", "kubelet", "images"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::create_dir_all(STATE).unwrap();
        std::fs::create_dir_all(RUN).unwrap();
        succeed(Command::new("ip").args(["link", "add", BRIDGE, "type", "bridge"]));
        succeed(Command::new("ip").args(["addr", "add", &format!("{NODE_IP}/16"), "dev", BRIDGE]));
        succeed(Command::new("ip").args(["link", "set", BRIDGE, "up"]));
        node
    }

    /// Starts containerd and a kubelet registered with `plane` (started with
    /// [`super::cluster::Options`] `node: true` on [`NODE_IP`]) and waits until the Node is
    /// `Ready`. `registry` is the loopback registry containerd may pull from over plain HTTP.
    /// The node is tainted: only pods that tolerate [`TAINT`] run on it, so the pods other
    /// scenarios only store (with images nobody imported) are never pulled.
    pub fn join(&mut self, plane: &ControlPlane, binaries: &Path, registry: &str) {
        let dir = self.dir.clone();
        let node = self;
        std::fs::write(
            dir.join("cni/10-dfi-bridge.conflist"),
            format!(
                r#"{{"cniVersion": "1.0.0", "name": "dfi-pods", "plugins": [
  {{"type": "bridge", "bridge": "{BRIDGE}", "isGateway": true, "isDefaultGateway": false, "ipMasq": false,
    "hairpinMode": true, "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{POD_SUBNET}", "gateway": "{NODE_IP}"}}]],
    "routes": [{{"dst": "{POD_SUBNET}"}}], "dataDir": "{RUN}/ipam"}}}},
  {{"type": "loopback"}}]}}"#
            ),
        )
        .unwrap();

        // Anything but the loopback registry resolves to a closed loopback port: a guard, so
        // that no pull can ever leave the machine.
        for host in ["_default", "docker.io"] {
            let guard = dir.join("certs.d").join(host);
            std::fs::create_dir_all(&guard).unwrap();
            std::fs::write(guard.join("hosts.toml"), "server = \"http://127.0.0.1:9\"\n").unwrap();
        }
        // The loopback registry over plain HTTP (hosts.toml); nothing else is ever pulled.
        let host_dir = dir.join("certs.d").join(registry);
        std::fs::create_dir_all(&host_dir).unwrap();
        std::fs::write(
            host_dir.join("hosts.toml"),
            format!("server = \"http://{registry}\"\n\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
        )
        .unwrap();

        // containerd 1.6 (Debian). restrict_oom_score_adj: this machine's processes lack
        // CAP_SYS_RESOURCE, so runc cannot set the negative oom_score_adj the kubelet asks for.
        let config = dir.join("containerd.toml");
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{STATE}/containerd"
state = "{RUN}/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{CONTAINERD_SOCKET}"
[ttrpc]
  address = "{CONTAINERD_SOCKET}.ttrpc"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{STATE}/containerd-opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{PAUSE_IMAGE}"
    enable_cdi = false
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          Root = "{RUN}/runc"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "{cni}"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "{certs}"
"#,
                cni = dir.join("cni").display(),
                certs = dir.join("certs.d").display(),
            ),
        )
        .unwrap();
        node.containerd =
            Some(spawn_tied(Command::new("containerd").arg("--config").arg(&config), &dir.join("containerd.log")));
        node.wait(Duration::from_secs(30), "containerd", || ctr(&["version"]).status.success());

        // The sandbox image, built here.
        let pause_c = dir.join("images/pause.c");
        std::fs::write(&pause_c, PAUSE_C).unwrap();
        let pause = dir.join("images/pause");
        succeed(Command::new("gcc").args(["-Os", "-static", "-s", "-o"]).arg(&pause).arg(&pause_c));
        node.import(&Image::new(PAUSE_IMAGE).host_file("/pause", 0o755, &pause).entrypoint(&["/pause"]));

        // The kubelet: x509 client certificates from the cluster's CA, the API server's
        // credentials accepted for logs and exec, no iptables chains on the host, pods' DNS
        // pointed at their own loopback (no query leaves the machine).
        let pki = plane.pki.as_ref().expect("a control plane started by this test");
        let leaf = pki.client(&format!("system:node:{NODE_NAME}"), "system:nodes");
        let kubelet_kubeconfig = plane.write_kubeconfig(&dir.join("kubelet/kubeconfig"), &leaf);
        let serving = pki.leaf_for(NODE_NAME, NODE_IP.parse().unwrap());
        let (cert, key) = serving.write_pair(&dir.join("kubelet"));
        std::fs::write(dir.join("kubelet/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        let kubelet_config = dir.join("kubelet/config.yaml");
        std::fs::write(
            &kubelet_config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                 containerRuntimeEndpoint: unix://{CONTAINERD_SOCKET}\ncgroupDriver: cgroupfs\n\
                 failCgroupV1: false\nfailSwapOn: false\naddress: {NODE_IP}\nport: {port}\nreadOnlyPort: 0\n\
                 healthzBindAddress: 127.0.0.1\nhealthzPort: {healthz}\n\
                 tlsCertFile: {cert}\ntlsPrivateKeyFile: {key}\n\
                 authentication:\n  anonymous:\n    enabled: false\n  webhook:\n    enabled: true\n  x509:\n    clientCAFile: {ca}\n\
                 authorization:\n  mode: Webhook\n\
                 makeIPTablesUtilChains: false\npodLogsDir: {POD_LOGS}\nvolumePluginDir: {plugins}\n\
                 resolvConf: {resolv}\nclusterDomain: cluster.local\n\
                 evictionHard:\n  memory.available: 100Mi\n  nodefs.available: 1%\n  nodefs.inodesFree: 1%\n  imagefs.available: 1%\n\
                 imageGCHighThresholdPercent: 99\nimageGCLowThresholdPercent: 98\nrotateCertificates: false\n\
                 serverTLSBootstrap: false\nsyncFrequency: 5s\nfileCheckFrequency: 5s\nnodeStatusUpdateFrequency: 5s\n",
                port = super::free_port(),
                healthz = super::free_port(),
                cert = cert.display(),
                key = key.display(),
                ca = plane.dir.path().join("ca.crt").display(),
                plugins = dir.join("kubelet/volume-plugins").display(),
                resolv = dir.join("kubelet/resolv.conf").display(),
            ),
        )
        .unwrap();
        node.kubelet = Some(spawn_tied(
            Command::new(binaries.join("kubelet"))
                .arg(format!("--config={}", kubelet_config.display()))
                .arg(format!("--kubeconfig={}", kubelet_kubeconfig.display()))
                .arg(format!("--root-dir={KUBELET_DIR}"))
                .arg(format!("--cert-dir={STATE}/kubelet-pki"))
                .arg(format!("--hostname-override={NODE_NAME}"))
                .arg(format!("--node-ip={NODE_IP}"))
                .arg(format!("--register-with-taints={TAINT}:NoSchedule"))
                .arg("--v=1"),
            &dir.join("kubelet.log"),
        ));
        node.wait(Duration::from_secs(90), "the node Ready", || {
            let out = plane.kubectl(&[
                "get",
                "node",
                NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            text(&out.stdout) == "True"
        });
    }

    /// Imports a test-built image into the node's containerd, for pods to use with
    /// `imagePullPolicy: IfNotPresent` or `Never`.
    pub fn import(&self, image: &Image) {
        let file = self.dir.join("images").join(format!("{}.tar", image.name.replace(['/', ':'], "_")));
        image.write_layout(&file);
        let platform = format!("linux/{}", image.architecture);
        let out = ctr(&["images", "import", "--platform", &platform, &file.to_string_lossy()]);
        assert!(out.status.success(), "ctr import {}: {}{}", image.name, text(&out.stdout), text(&out.stderr));
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    fn wait(&mut self, limit: Duration, what: &str, check: impl FnMut() -> bool) {
        let children = &mut [("kubelet", &mut self.kubelet), ("containerd", &mut self.containerd)];
        wait_while_alive(limit, Duration::from_millis(200), what, &self.dir, children, check);
    }

    /// Stops everything and puts the machine back: pods first (through the API server while
    /// the kubelet still runs, so it unmounts their volumes and frees their addresses), then the
    /// kubelet, the containers containerd still holds, containerd, and whatever state is left.
    pub fn teardown(&mut self, plane: &ControlPlane) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        if self.kubelet.is_some() {
            let _ = plane.kubectl(&[
                "delete",
                "pods",
                "--all",
                "--all-namespaces",
                "--grace-period=0",
                "--force",
                "--wait=false",
            ]);
            // Best effort: what is left after 30 s is stopped below with containerd's shims.
            let _ = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
                Ok(processes_mentioning(&format!("{RUN}/containerd/io.containerd.runtime")).is_empty())
            });
        }
        if let Some(mut kubelet) = self.kubelet.take() {
            stop(&mut kubelet, Duration::from_secs(10));
        }
        if self.containerd.is_some() {
            for task in text(&ctr(&["tasks", "ls", "-q"]).stdout).lines() {
                let _ = ctr(&["tasks", "kill", "-s", "KILL", task]);
            }
            std::thread::sleep(Duration::from_millis(300));
            for task in text(&ctr(&["tasks", "ls", "-q"]).stdout).lines() {
                let _ = ctr(&["tasks", "delete", "-f", task]);
            }
            for container in text(&ctr(&["containers", "ls", "-q"]).stdout).lines() {
                let _ = ctr(&["containers", "delete", container]);
            }
        }
        if let Some(mut containerd) = self.containerd.take() {
            stop(&mut containerd, Duration::from_secs(10));
        }
        Node::cleanup(&self.before);
        self.lock.take();
    }

    /// What an earlier run killed before its teardown may have left: its processes, mounts,
    /// bridge, cgroups and state. Sysctls cannot be known any more and stay as they are.
    fn clean_stale() {
        if Path::new(STATE).exists() || Path::new(RUN).exists() || Path::new("/sys/class/net").join(BRIDGE).exists() {
            eprintln!("node: cleaning up after an earlier run that did not finish");
            let before = Before { sysctls: BTreeMap::new(), existing: Vec::new(), netns: netns_names() };
            Node::cleanup(&before);
        }
    }

    fn cleanup(before: &Before) {
        // Shims and the containers under them outlive a killed containerd: each container's
        // init (pid 1 of its namespace, so the whole container goes with it), then the shims.
        let tasks = Path::new(RUN).join("containerd/io.containerd.runtime.v2.task/k8s.io");
        for task in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
            if let Some(pid) =
                std::fs::read_to_string(task.path().join("init.pid")).ok().and_then(|p| p.trim().parse::<i32>().ok())
            {
                // SAFETY: sending a signal to a process id.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        kill_mentioning(RUN);
        kill_mentioning(STATE);
        std::thread::sleep(Duration::from_millis(200));
        let new_netns: Vec<String> =
            netns_names().into_iter().filter(|n| n.starts_with("cni-") && !before.netns.contains(n)).collect();
        let netns_paths: Vec<String> = new_netns.iter().map(|n| format!("/run/netns/{n}")).collect();
        let mut prefixes = vec![STATE, RUN, "/var/lib/kubelet", "/run/containerd"];
        prefixes.extend(netns_paths.iter().map(String::as_str));
        unmount_all(&prefixes);
        for name in &new_netns {
            let _ = run("ip", &["netns", "delete", name]);
            let _ = std::fs::remove_file(format!("/run/netns/{name}"));
        }
        if Path::new("/sys/class/net").join(BRIDGE).exists() {
            let _ = run("ip", &["link", "delete", BRIDGE]);
        }
        for cgroup in kubepods_cgroups() {
            remove_cgroup_tree(&cgroup);
        }
        for dir in [STATE, RUN, POD_LOGS] {
            let _ = std::fs::remove_dir_all(dir);
        }
        for path in HARD_CODED {
            if !before.existing.iter().any(|p| p == path) {
                let _ = std::fs::remove_dir_all(path);
            }
        }
        for (key, value) in &before.sysctls {
            if !value.is_empty() && read_sysctl(key) != *value {
                let _ = std::fs::write(Path::new("/proc/sys").join(key), value);
            }
        }
    }

    /// The sysctls as they were before the node started, and as they are now.
    pub fn sysctls_changed(&self) -> Vec<String> {
        self.before
            .sysctls
            .iter()
            .filter(|(key, value)| read_sysctl(key) != **value)
            .map(|(key, value)| format!("{key}: {value} before, {} now", read_sysctl(key)))
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.torn_down {
            // No API server to ask any more: stop the processes and clean up by hand.
            self.torn_down = true;
            if let Some(mut kubelet) = self.kubelet.take() {
                stop(&mut kubelet, Duration::from_secs(5));
            }
            if let Some(mut containerd) = self.containerd.take() {
                stop(&mut containerd, Duration::from_secs(5));
            }
            Node::cleanup(&self.before);
        }
        self.lock.take();
    }
}
