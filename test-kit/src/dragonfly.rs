//! A real Dragonfly on the test node, as Dragonfly's chart deploys it: the Go scheduler without a
//! manager, and dfdaemon on the host network with its socket in a host directory and its proxy
//! on port 4001 of the node's address. Both are built from source by scripts/dragonfly.sh. The
//! origin ([`crate::origin`]) serves the files pods download on loopback: only dfdaemon (host
//! network) can reach it, so a pod that got the bytes got them through Dragonfly.

use super::cached_tool_lines;
use super::cluster::{spawn_tied, stop, wait_while_alive};
use super::free_port;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// dfdaemon's proxy port in Dragonfly's chart, which the webhook injects by default.
pub const PROXY_PORT: u16 = 4001;

/// The Dragonfly client's binaries (dfdaemon and the tools) and the scheduler, from the cache.
pub struct Binaries {
    pub client: PathBuf,
    pub scheduler: PathBuf,
}

pub fn binaries() -> Binaries {
    let client = cached_tool_lines("dragonfly.sh", &["client", "--profile", "test", "linux/amd64"]);
    let scheduler = cached_tool_lines("dragonfly.sh", &["scheduler"]);
    let second = |line: &str| PathBuf::from(line.split_whitespace().nth(1).expect("NAME PATH"));
    Binaries { client: second(&client[0]), scheduler: second(&scheduler[0]) }
}

/// A file of `size` bytes no compressor shortens, the same on every run.
pub fn blob(size: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let mut block = Sha256::digest([seed]).to_vec();
    while out.len() < size {
        block = Sha256::digest(&block).to_vec();
        out.extend_from_slice(&block);
    }
    out.truncate(size);
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The scheduler and dfdaemon, running (or, for node B, its dfdaemon alone).
pub struct Dragonfly {
    pub dir: PathBuf,
    /// The host directory holding dfdaemon's socket.
    pub socket_dir: PathBuf,
    pub metrics_port: u16,
    /// The scheduler's address, `ip:port`.
    pub scheduler_address: String,
    binaries: Binaries,
    host: Host,
    scheduler: Option<Child>,
    dfdaemon: Option<Child>,
    /// dfdaemon's `upload.bandwidthLimit` (how fast it serves pieces to other peers), when not
    /// its default of 50 GB/s.
    upload_limit: Option<String>,
}

/// One dfdaemon's place in the cluster.
struct Host {
    /// With the address below, the host ID the scheduler hands to other peers as a parent.
    hostname: String,
    /// Where peers fetch pieces (dfdaemon's upload and storage servers listen here).
    peer_ip: String,
    /// Where its proxy listens (port 4001): the node's address, which the webhook injects.
    proxy_ip: String,
    /// Where its health, metrics and stats servers listen: reachable from the tests.
    admin_ip: String,
    /// The network namespace it runs in, if not the host's.
    netns: Option<&'static str>,
}

impl Dragonfly {
    /// Starts the scheduler on `peer_ip` and dfdaemon (host `dfi-node`) with its proxy on
    /// `address`:4001, its socket in `socket_dir` (created here), and its upload and storage
    /// servers on `peer_ip`, where other peers fetch pieces from it.
    pub fn start(dir: &Path, socket_dir: &Path, address: &str, peer_ip: &str) -> Dragonfly {
        let binaries = binaries();
        std::fs::create_dir_all(dir).unwrap();
        let scheduler_port = free_port();
        std::fs::write(
            dir.join("scheduler.yaml"),
            format!(
                "server:\n  advertiseIP: {peer_ip}\n  listenIP: {peer_ip}\n  port: {scheduler_port}\n  host: scheduler-e2e\n  \
                 logDir: {logs}\n  pluginDir: {plugins}\n  cacheDir: {cache}\n  dataDir: {data}\n\
                 job:\n  enable: false\nmetrics:\n  enable: false\n",
                logs = dir.join("scheduler-log").display(),
                plugins = dir.join("scheduler-plugins").display(),
                cache = dir.join("scheduler-cache").display(),
                data = dir.join("scheduler-data").display(),
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("scheduler-dynconfig.yaml"),
            "applications: []\nseedPeerClusterConfig:\n  loadLimit: 2000\nschedulerClusterConfig:\n  candidateParentLimit: 3\n  \
             filterParentLimit: 15\nschedulerClusterClientConfig:\n  loadLimit: 200\n",
        )
        .unwrap();
        let host = Host {
            hostname: "dfi-node".to_owned(),
            peer_ip: peer_ip.to_owned(),
            proxy_ip: address.to_owned(),
            admin_ip: "127.0.0.1".to_owned(),
            netns: None,
        };
        let mut dragonfly = Dragonfly {
            dir: dir.to_owned(),
            socket_dir: socket_dir.to_owned(),
            metrics_port: free_port(),
            scheduler_address: format!("{peer_ip}:{scheduler_port}"),
            binaries,
            host,
            scheduler: None,
            dfdaemon: None,
            upload_limit: None,
        };
        dragonfly.scheduler = Some(spawn_tied(
            Command::new(&dragonfly.binaries.scheduler)
                .arg("--config")
                .arg(dir.join("scheduler.yaml"))
                .arg("--dynconfig")
                .arg(dir.join("scheduler-dynconfig.yaml"))
                .arg("--console"),
            &dir.join("scheduler.log"),
        ));
        let address = dragonfly.scheduler_address.clone();
        dragonfly
            .wait(Duration::from_secs(60), "the scheduler's port", || TcpStream::connect(address.as_str()).is_ok());
        dragonfly.start_dfdaemon();
        dragonfly
    }

    /// Node B: a second dfdaemon (host `dfi-node-b`) in the network namespace `netns`, on `ip`
    /// (its proxy, upload, storage and admin servers), registered with `node_a`'s scheduler, its
    /// socket in `socket_dir` on the host's filesystem.
    pub fn start_peer(dir: &Path, socket_dir: &Path, netns: &'static str, ip: &str, node_a: &Dragonfly) -> Dragonfly {
        std::fs::create_dir_all(dir).unwrap();
        let host = Host {
            hostname: "dfi-node-b".to_owned(),
            peer_ip: ip.to_owned(),
            proxy_ip: ip.to_owned(),
            admin_ip: ip.to_owned(),
            netns: Some(netns),
        };
        let mut dragonfly = Dragonfly {
            dir: dir.to_owned(),
            socket_dir: socket_dir.to_owned(),
            metrics_port: free_port(),
            scheduler_address: node_a.scheduler_address.clone(),
            binaries: binaries(),
            host,
            scheduler: None,
            dfdaemon: None,
            upload_limit: None,
        };
        dragonfly.start_dfdaemon();
        dragonfly
    }

    /// The host ID the scheduler knows this dfdaemon by (what a child's log names as parent).
    pub fn host_id(&self) -> String {
        format!("{}-{}", self.host.peer_ip, self.host.hostname)
    }

    /// Stops dfdaemon (and leaves it stopped until [`Dragonfly::restart_dfdaemon`]).
    pub fn stop_dfdaemon(&mut self) {
        if let Some(mut child) = self.dfdaemon.take() {
            stop(&mut child, Duration::from_secs(15));
        }
    }

    /// Kills dfdaemon at once (SIGKILL), as a node that dies or an OOM kill does: unlike a stop,
    /// which lets it finish the pieces it is serving, the transfers in flight break. Stays
    /// down until [`Dragonfly::restart_dfdaemon`].
    pub fn kill_dfdaemon(&mut self) {
        if let Some(mut child) = self.dfdaemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.socket_dir.join("dfdaemon.sock")
    }

    fn start_dfdaemon(&mut self) {
        let dir = &self.dir;
        let host = &self.host;
        std::fs::create_dir_all(&self.socket_dir).unwrap();
        std::fs::write(
            dir.join("dfdaemon-dynconfig.yaml"),
            format!("scheduler:\n  addrs: ['{}']\n", self.scheduler_address),
        )
        .unwrap();
        // Every port but the proxy's is free-picked; the proxy is where the webhook points pods.
        let config = format!(
            "host:\n  hostname: {hostname}\n  ip: {peer}\n\
             server:\n  pluginDir: {plugins}\n  cacheDir: {cache}\n\
             download:\n  server:\n    socketPath: {socket}\n\
             upload:\n  bandwidthLimit: {upload_limit}\n  server:\n    ip: {peer}\n    port: {upload}\n\
             storage:\n  dir: {storage}\n  keep: false\n  server:\n    ip: {peer}\n    tcpPort: {tcp}\n    quicPort: {quic}\n\
             health:\n  server:\n    ip: {admin}\n    port: {health}\n\
             metrics:\n  server:\n    ip: {admin}\n    port: {metrics}\n\
             stats:\n  server:\n    ip: {admin}\n    port: {stats}\n\
             proxy:\n  server:\n    ip: {proxy}\n    port: {PROXY_PORT}\n  rules:\n    - regex: '.*'\n",
            hostname = host.hostname,
            peer = host.peer_ip,
            admin = host.admin_ip,
            proxy = host.proxy_ip,
            plugins = dir.join("dfdaemon-plugins").display(),
            cache = dir.join("dfdaemon-cache").display(),
            socket = self.socket().display(),
            upload = free_port(),
            upload_limit = self.upload_limit.as_deref().unwrap_or("50GB"),
            storage = dir.join("dfdaemon-storage").display(),
            tcp = free_port(),
            quic = free_port(),
            health = free_port(),
            metrics = self.metrics_port,
            stats = free_port(),
        );
        std::fs::write(dir.join("dfdaemon.yaml"), config).unwrap();
        let _ = std::fs::remove_file(self.socket());
        // In node B's namespace, `ip netns exec` enters it and execs dfdaemon in its place, so the
        // child is dfdaemon itself (and dies with the test, as every spawn_tied child does).
        let mut command = match host.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(self.binaries.client.join("dfdaemon"));
                command
            }
            None => Command::new(self.binaries.client.join("dfdaemon")),
        };
        command
            .arg("--config")
            .arg(dir.join("dfdaemon.yaml"))
            .arg("--dynconfig")
            .arg(dir.join("dfdaemon-dynconfig.yaml"))
            .arg("--log-dir")
            .arg(dir.join("dfdaemon-log"))
            .arg("--console");
        self.dfdaemon = Some(spawn_tied(&mut command, &dir.join("dfdaemon.log")));
        let socket = self.socket();
        let proxy = host.proxy_ip.clone();
        self.wait(Duration::from_secs(60), "dfdaemon's socket and proxy", || {
            socket.exists() && TcpStream::connect((proxy.as_str(), PROXY_PORT)).is_ok()
        });
    }

    /// Stops dfdaemon and starts it again (it deletes and recreates its socket), as a DaemonSet
    /// rollout does.
    pub fn restart_dfdaemon(&mut self) {
        self.stop_dfdaemon();
        self.start_dfdaemon();
    }

    /// Restarts dfdaemon serving pieces to other peers at most `limit` per second (`"4MB"`), or
    /// at its default with `None`: a test that must catch a peer mid-transfer slows it down.
    pub fn restart_dfdaemon_with_upload_limit(&mut self, limit: Option<&str>) {
        self.upload_limit = limit.map(str::to_owned);
        self.restart_dfdaemon();
    }

    /// dfdaemon's Prometheus metrics.
    pub fn metrics(&self) -> String {
        let mut stream = TcpStream::connect((self.host.admin_ip.as_str(), self.metrics_port)).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Runs a Dragonfly tool on the host (the same binary the tools image carries).
    pub fn tool(&self, name: &str) -> Command {
        Command::new(self.binaries.client.join(name))
    }

    fn wait(&mut self, limit: Duration, what: &str, check: impl FnMut() -> bool) {
        let children = &mut [("dfdaemon", &mut self.dfdaemon), ("scheduler", &mut self.scheduler)];
        wait_while_alive(limit, Duration::from_millis(100), what, &self.dir, children, check);
    }
}

impl Drop for Dragonfly {
    fn drop(&mut self) {
        for child in [self.dfdaemon.take(), self.scheduler.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }
}
