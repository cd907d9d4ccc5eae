//! `docker buildx bake` for real, for the tests: buildx and buildkitd from scripts/buildkit.sh,
//! a BuildKit daemon of the test's own on a unix socket as a remote builder, the repository's
//! docker-bake.hcl, and the binaries scripts/cross-build.sh left in target/dist.

use super::cluster::spawn_tied;
use super::dist::{dist_dir, dist_platforms_with, TOOLS_FILES};
use super::{cached_tool, repo_root, succeed, text, wait_until};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

pub fn buildkit_dir() -> PathBuf {
    cached_tool("buildkit.sh")
}

/// `docker buildx` with the plugin from scripts/buildkit.sh, in a Docker config of its own
/// (builders are recorded there); the standalone `buildx` where there is no docker CLI.
pub struct Buildx {
    config: tempfile::TempDir,
    pub tools: PathBuf,
    docker: bool,
}

impl Buildx {
    /// buildx and buildctl as scripts/buildkit.sh cached them, with a Docker config of its own.
    pub fn from_cache() -> Buildx {
        let tools = buildkit_dir();
        let config = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(tools.join("cli-plugins"), config.path().join("cli-plugins")).unwrap();
        let docker = Command::new("docker").arg("--version").output().is_ok_and(|o| o.status.success());
        Buildx { config, tools, docker }
    }

    pub fn command(&self) -> Command {
        let mut command = if self.docker {
            let mut command = Command::new("docker");
            command.arg("buildx");
            command
        } else {
            Command::new(self.tools.join("buildx"))
        };
        command.current_dir(repo_root()).env("DOCKER_CONFIG", self.config.path());
        // Only what a test sets reaches the bake file.
        for variable in [
            "REGISTRY",
            "TAG",
            "DRAGONFLY_CLIENT_VERSION",
            "RUST_BUILDER_IMAGE",
            "WEBHOOK_PLATFORMS",
            "TOOLS_PLATFORMS",
            "DIST",
            "CA_CERTIFICATES",
            "SOURCE_DATE_EPOCH",
            "REVISION",
            "SOURCE",
            "PROVENANCE",
        ] {
            command.env_remove(variable);
        }
        command
    }

    pub fn print(&self, vars: &[(&str, &str)]) -> Value {
        let output = succeed(self.command().args(["bake", "--print"]).envs(vars.iter().copied()));
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

/// A BuildKit daemon of its own: state and socket in a temporary directory, the OCI worker with
/// the native snapshotter (nothing is ever run: the Dockerfiles only copy), and the loopback
/// registry known as plain HTTP.
pub struct Buildkitd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub name: String,
}

impl Buildkitd {
    pub fn start(buildx: &Buildx, registry: &str, name: &str) -> Buildkitd {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("buildkitd.toml");
        std::fs::write(
            &config,
            format!(
                "[worker.oci]\n  enabled = true\n  snapshotter = \"native\"\n  gc = false\n\
                 [worker.containerd]\n  enabled = false\n[registry.\"{registry}\"]\n  http = true\n"
            ),
        )
        .unwrap();
        let socket = dir.path().join("buildkitd.sock");
        let child = spawn_tied(
            Command::new(buildx.tools.join("buildkitd"))
                .arg("--config")
                .arg(&config)
                .arg("--root")
                .arg(dir.path().join("root"))
                .arg("--addr")
                .arg(format!("unix://{}", socket.display())),
            &dir.path().join("buildkitd.log"),
        );
        let mut daemon = Buildkitd { child, dir, name: name.to_owned() };
        let up = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            let workers = Command::new(buildx.tools.join("buildctl"))
                .arg("--addr")
                .arg(format!("unix://{}", socket.display()))
                .args(["debug", "workers"])
                .output()
                .unwrap();
            if workers.status.success() && text(&workers.stdout).lines().count() > 1 {
                return Ok(true);
            }
            match daemon.child.try_wait().unwrap() {
                Some(status) => Err(format!("buildkitd exited ({status})")),
                None => Ok(false),
            }
        });
        if let Err(why) = up {
            panic!("buildkitd did not come up ({why:?}): {}", daemon.log());
        }
        succeed(
            buildx
                .command()
                .args(["create", "--name", name, "--driver", "remote"])
                .arg(format!("unix://{}", socket.display())),
        );
        daemon
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("buildkitd.log")).unwrap_or_default()
    }
}

impl Drop for Buildkitd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the bake file's `targets` with `--push` and returns the digest of each target's index,
/// from buildx's metadata file.
pub fn bake(
    buildx: &Buildx,
    daemon: &Buildkitd,
    targets: &[&str],
    vars: &[(&str, &str)],
    readable: &[&Path],
) -> BTreeMap<String, String> {
    let metadata = daemon.dir.path().join(format!("metadata-{}.json", std::process::id()));
    let mut command = buildx.command();
    command
        .args(["bake", "--push", "--progress", "plain", "--builder", &daemon.name])
        .arg("--metadata-file")
        .arg(&metadata);
    command.args(targets);
    for path in readable {
        command.arg(format!("--allow=fs.read={}", path.display()));
    }
    command.envs(vars.iter().copied()).env("BUILDX_METADATA_PROVENANCE", "disabled");
    let output = command.output().unwrap();
    assert!(output.status.success(), "bake failed:\n{}\nbuildkitd:\n{}", text(&output.stderr), daemon.log());
    let metadata: Value = serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    targets
        .iter()
        .map(|target| {
            let digest = metadata[target]["containerimage.digest"]
                .as_str()
                .unwrap_or_else(|| panic!("no digest for {target}: {metadata}"));
            (target.to_string(), digest.to_owned())
        })
        .collect()
}

/// Both images as the tests publish them: repository and index digest of each.
pub struct Published {
    pub tools: (String, String),
    /// `None` when the dist has no webhook binary.
    pub webhook: Option<(String, String)>,
}

/// Publishes the tools image and, where the dist has the webhook's binary, the webhook image,
/// baked from the dist, to `registry` as `<registry>/dragonflyoss/<image>:<tag>`; `None` when
/// the dist has no complete tools platform (scripts/cross-build.sh not run).
pub fn publish_images(registry: &str, tag: &str) -> Option<Published> {
    let dist = std::fs::canonicalize(dist_dir()).ok()?;
    let platforms = dist_platforms_with(&dist, &TOOLS_FILES);
    if platforms.is_empty() {
        return None;
    }
    let webhook_platforms = dist_platforms_with(&dist, &["dragonfly-injector"]);
    let buildx = Buildx::from_cache();
    let daemon = Buildkitd::start(&buildx, registry, &format!("publish-{}", std::process::id()));
    let prefix = format!("{registry}/dragonflyoss");
    let dist_text = dist.display().to_string();
    let (platform_list, webhook_list) = (platforms.join(","), webhook_platforms.join(","));
    let ca_dir = Path::new("/etc/ssl/certs");
    let vars = [
        ("REGISTRY", prefix.as_str()),
        ("TAG", tag),
        ("DIST", dist_text.as_str()),
        ("CA_CERTIFICATES", "/etc/ssl/certs"),
        ("TOOLS_PLATFORMS", platform_list.as_str()),
        ("WEBHOOK_PLATFORMS", webhook_list.as_str()),
    ];
    let targets: &[&str] = if webhook_platforms.is_empty() { &["tools"] } else { &["tools", "webhook"] };
    let digests = bake(&buildx, &daemon, targets, &vars, &[&dist, ca_dir]);
    Some(Published {
        tools: (format!("{prefix}/dragonfly-injector-tools"), digests["tools"].clone()),
        webhook: digests.get("webhook").map(|digest| (format!("{prefix}/dragonfly-injector"), digest.clone())),
    })
}
