//! The images, built and published for real: `docker buildx bake --push` with the repository's
//! docker-bake.hcl, the binaries scripts/cross-build.sh made (named context `dist`), a BuildKit
//! daemon on a unix socket in a temporary directory as a remote builder, and the loopback
//! docker-registry as the destination. buildx and buildkitd come from scripts/buildkit.sh (Go
//! module proxy); the Docker CLI only hosts the buildx plugin, no engine is involved.
//!
//! What was pushed is then read back from the registry: the index, each platform's manifest
//! and config, and every layer, byte for byte against the dist. The amd64 tools image is run as
//! the kubelet would run it (uid 65532, read-only root, an empty shared directory), and a
//! rebuild from a fresh daemon must give the same digests.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use test_kit::bake::{bake, Buildkitd, Buildx};
use test_kit::dist::{dist_dir, dist_platforms_with, dist_profile, dist_tools, TOOLS_FILES};
use test_kit::platforms::{all_platforms, platform as platform_entry};
use test_kit::registry::{Registry, RegistryOptions};
use test_kit::{pinned, pinned_default_list, pinned_list, repo_root, succeed, text};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The platforms the dist holds all of `files` for.
fn platforms_with(dist: &Path, image: &str, files: &[&str]) -> Vec<String> {
    let platforms = dist_platforms_with(dist, files);
    for platform in all_platforms().iter().filter(|p| !platforms.contains(p)) {
        eprintln!("{platform}: the dist lacks one of {files:?}, so the {image} image leaves it out");
    }
    platforms
}

/// A file from a layer: mode, modification time, owner and bytes.
#[derive(Debug)]
struct Entry {
    mode: u32,
    mtime: u64,
    uid: u64,
    bytes: Vec<u8>,
}

struct Registered {
    client: Client,
    host: String,
}

impl Registered {
    fn reference(&self, repository: &str, digest_or_tag: &str) -> Reference {
        let separator = if digest_or_tag.starts_with("sha256:") { "@" } else { ":" };
        format!("{}/dragonflyoss/{repository}{separator}{digest_or_tag}", self.host).parse().unwrap()
    }

    async fn json(&self, repository: &str, digest: &str, media_type: &str) -> Value {
        let (bytes, actual) = self
            .client
            .pull_manifest_raw(&self.reference(repository, digest), &RegistryAuth::Anonymous, &[media_type])
            .await
            .unwrap();
        assert_eq!(actual, digest);
        serde_json::from_slice(&bytes).unwrap()
    }

    async fn blob(&self, repository: &str, digest: &str) -> Vec<u8> {
        let mut out = Vec::new();
        self.client.pull_blob(&self.reference(repository, digest), digest, &mut out).await.unwrap();
        out
    }

    /// Every regular file of the image's layers, by path.
    async fn files(&self, repository: &str, manifest: &Value) -> BTreeMap<String, Entry> {
        let mut files = BTreeMap::new();
        for layer in manifest["layers"].as_array().unwrap() {
            let media_type = layer["mediaType"].as_str().unwrap();
            let blob = self.blob(repository, layer["digest"].as_str().unwrap()).await;
            let tar: Box<dyn Read> = match media_type {
                "application/vnd.oci.image.layer.v1.tar+gzip" => Box::new(flate2::read::GzDecoder::new(&blob[..])),
                "application/vnd.oci.image.layer.v1.tar" => Box::new(&blob[..]),
                other => panic!("unexpected layer type {other}"),
            };
            let mut archive = tar::Archive::new(tar);
            for entry in archive.entries().unwrap() {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                let path = entry.path().unwrap().to_string_lossy().trim_start_matches("./").to_owned();
                if header.entry_type().is_file() {
                    let mut bytes = Vec::new();
                    entry.read_to_end(&mut bytes).unwrap();
                    files.insert(
                        path,
                        Entry {
                            mode: header.mode().unwrap() & 0o7777,
                            mtime: header.mtime().unwrap(),
                            uid: header.uid().unwrap(),
                            bytes,
                        },
                    );
                } else {
                    assert_eq!(header.mtime().unwrap(), 0, "{path}: timestamps are rewritten to SOURCE_DATE_EPOCH");
                }
            }
        }
        files
    }
}

fn platform_of(descriptor: &Value) -> String {
    let platform = &descriptor["platform"];
    let mut name = format!("{}/{}", platform["os"].as_str().unwrap(), platform["architecture"].as_str().unwrap());
    if let Some(variant) = platform["variant"].as_str() {
        name = format!("{name}/{variant}");
    }
    name
}

fn copy_dir_fresh(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir_fresh(&entry.path(), &target);
        } else {
            // New inode, new timestamps: only the bytes and the mode carry over.
            std::fs::write(&target, std::fs::read(entry.path()).unwrap()).unwrap();
            std::fs::set_permissions(&target, entry.metadata().unwrap().permissions()).unwrap();
        }
    }
}

#[test]
fn the_bake_file_defaults_publish_what_the_webhook_and_chart_expect() {
    let buildx = Buildx::from_cache();
    let printed = buildx.print(&[]);
    assert_eq!(printed["group"]["default"]["targets"], serde_json::json!(["tools", "webhook"]));
    let (tools, webhook) = (&printed["target"]["tools"], &printed["target"]["webhook"]);
    assert_eq!(
        tools["tags"],
        serde_json::json!([dragonfly_injector::config::DEFAULT_TOOLS_IMAGE]),
        "the webhook's default tools image"
    );
    let chart_values = std::fs::read_to_string(repo_root().join("charts/dragonfly-injector/values.yaml")).unwrap();
    assert!(
        chart_values.contains("repository: docker.io/dragonflyoss/dragonfly-injector\n"),
        "the chart's webhook image"
    );
    assert_eq!(
        webhook["tags"],
        serde_json::json!([format!("docker.io/dragonflyoss/dragonfly-injector:v{}", env!("CARGO_PKG_VERSION"))])
    );
    assert_eq!(
        tools["platforms"],
        serde_json::json!(pinned_default_list("TOOLS_PLATFORMS")),
        "the platforms with a static Dragonfly client"
    );
    assert_eq!(webhook["platforms"], serde_json::json!(pinned_default_list("ALL_PLATFORMS")));
    // Versions are not restated in the bake file: the Dockerfiles' ARG defaults hold.
    assert!(
        tools["args"].get("DRAGONFLY_CLIENT_VERSION").is_none() && tools["args"].get("BUILDER_IMAGE").is_none(),
        "{tools}"
    );
    for target in [tools, webhook] {
        assert_eq!(target["output"][0]["rewrite-timestamp"], "true");
        assert_eq!(target["output"][0]["oci-mediatypes"], "true");
        assert_eq!(target["args"]["SOURCE_DATE_EPOCH"], "0");
        assert_eq!(target["attest"][0], serde_json::json!({"type": "provenance", "disabled": true}));
        assert!(
            target.get("contexts").is_none_or(|c| c.as_object().unwrap().is_empty()),
            "by default everything is built inside Docker: {target}"
        );
        let annotations = target["annotations"].as_array().unwrap();
        for key in ["source", "version", "revision"] {
            assert!(
                annotations.iter().any(|a| a
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("index,manifest:org.opencontainers.image.{key}="))),
                "{key}"
            );
        }
    }

    let printed = buildx.print(&[
        ("DIST", "target/dist"),
        ("CA_CERTIFICATES", "/etc/ssl/certs"),
        ("TOOLS_PLATFORMS", "linux/s390x"),
        ("PROVENANCE", "true"),
        ("REGISTRY", "r.example/x"),
        ("TAG", "v9"),
    ]);
    let (tools, webhook) = (&printed["target"]["tools"], &printed["target"]["webhook"]);
    assert_eq!(tools["contexts"], serde_json::json!({"dist": "target/dist"}));
    assert_eq!(webhook["contexts"], serde_json::json!({"dist": "target/dist", "ca-certificates": "/etc/ssl/certs"}));
    assert_eq!(tools["platforms"], serde_json::json!(["linux/s390x"]));
    assert_eq!(tools["tags"], serde_json::json!(["r.example/x/dragonfly-injector-tools:v9"]));
    assert_eq!(tools["attest"][0], serde_json::json!({"type": "provenance", "mode": "max"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bake_pushes_reproducible_multi_arch_images_holding_the_cross_built_binaries() {
    test_kit::install_crypto();
    let dist =
        std::fs::canonicalize(dist_dir()).expect("no dist: run scripts/cross-build.sh first (scripts/test.sh does)");
    let tools_platforms = platforms_with(&dist, "tools", &TOOLS_FILES);
    let webhook_platforms = platforms_with(&dist, "webhook", &["dragonfly-injector"]);
    let profile = dist_profile(&dist);
    assert_eq!(webhook_platforms, profile.webhook, "the {} dist's webhook platforms", profile.name);
    assert_eq!(tools_platforms, profile.tools, "the {} dist's tools platforms", profile.name);
    let registry = Registry::start(RegistryOptions::default());
    let buildx = Buildx::from_cache();
    let daemon = Buildkitd::start(&buildx, &registry.host, &format!("images-test-{}", std::process::id()));
    let registry_prefix = format!("{}/dragonflyoss", registry.host);
    let (tools_list, webhook_list) = (tools_platforms.join(","), webhook_platforms.join(","));
    let ca_dir = Path::new("/etc/ssl/certs");
    let vars = |tag: &'static str, dist: &Path, epoch: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("REGISTRY", registry_prefix.clone()),
            ("TAG", tag.to_owned()),
            ("TOOLS_PLATFORMS", tools_list.clone()),
            ("WEBHOOK_PLATFORMS", webhook_list.clone()),
            ("DIST", dist.display().to_string()),
            ("CA_CERTIFICATES", ca_dir.display().to_string()),
            ("SOURCE_DATE_EPOCH", epoch.to_owned()),
            ("REVISION", "0123456789abcdef".to_owned()),
        ]
    };
    let run_bake = |daemon: &Buildkitd, vars: Vec<(&'static str, String)>, dist: &Path| {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        bake(&buildx, daemon, &["tools", "webhook"], &vars, &[dist, ca_dir])
    };
    let first = run_bake(&daemon, vars("test", &dist, "0"), &dist);

    let registered = Registered {
        client: Client::new(ClientConfig { protocol: ClientProtocol::Http, ..ClientConfig::default() }),
        host: registry.host.clone(),
    };
    let ca_bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap();
    let work = tempfile::tempdir().unwrap();
    // Each platform's webhook binary, as its image carries it.
    let webhook_binary = |platform: &str| work.path().join(platform.replace('/', "_")).join("dragonfly-injector");
    let mut amd64_tools = BTreeMap::new();
    for (target, repository) in [("tools", "dragonfly-injector-tools"), ("webhook", "dragonfly-injector")] {
        let digest = &first[target];
        let index = registered.json(repository, digest, INDEX).await;
        assert_eq!(index["mediaType"], INDEX, "{target}");
        for (key, value) in [
            ("source", "https://github.com/dragonflyoss/dragonfly-injector"),
            ("version", "test"),
            ("revision", "0123456789abcdef"),
        ] {
            assert_eq!(
                index["annotations"][format!("org.opencontainers.image.{key}")],
                value,
                "{target}: index annotation {key}"
            );
        }
        let entries = index["manifests"].as_array().unwrap();
        let mut found: Vec<String> = entries.iter().map(platform_of).collect();
        found.sort();
        let mut expected = if target == "tools" { tools_platforms.clone() } else { webhook_platforms.clone() };
        expected.sort();
        assert_eq!(found, expected, "{target}: exactly the platforms asked for, and no attestation entries");

        for descriptor in entries {
            let platform = platform_of(descriptor);
            let manifest = registered.json(repository, descriptor["digest"].as_str().unwrap(), MANIFEST).await;
            assert_eq!(
                manifest["annotations"]["org.opencontainers.image.version"], "test",
                "{target} {platform}: manifest annotation"
            );
            let config: Value = serde_json::from_slice(
                &registered.blob(repository, manifest["config"]["digest"].as_str().unwrap()).await,
            )
            .unwrap();
            let mut parts = platform.split('/');
            assert_eq!(config["os"], parts.next().unwrap(), "{target} {platform}");
            assert_eq!(config["architecture"], parts.next().unwrap(), "{target} {platform}");
            assert_eq!(config["variant"].as_str(), parts.next(), "{target} {platform}");
            assert_eq!(
                config["created"], "1970-01-01T00:00:00Z",
                "{target} {platform}: created comes from SOURCE_DATE_EPOCH"
            );
            assert_eq!(config["config"]["User"], "65532:65532", "{target} {platform}");
            assert_eq!(
                config["config"]["Labels"]["org.opencontainers.image.revision"], "0123456789abcdef",
                "{target} {platform}"
            );
            assert_eq!(
                config["config"]["Labels"]["org.opencontainers.image.source"],
                "https://github.com/dragonflyoss/dragonfly-injector"
            );
            assert_eq!(config["config"]["Labels"]["org.opencontainers.image.version"], "test");

            let compressed: u64 =
                manifest["layers"].as_array().unwrap().iter().map(|l| l["size"].as_u64().unwrap()).sum();
            eprintln!("{repository} {platform}: {compressed} bytes of compressed layers");
            let files = registered.files(repository, &manifest).await;
            let from_dist = |path: &str| std::fs::read(dist.join(&platform).join(path)).unwrap();
            let mut names: Vec<&str> = files.keys().map(String::as_str).collect();
            names.sort();
            if target == "tools" {
                assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/dfget-copier"]));
                assert_eq!(
                    config["config"]["Labels"]["io.d7y.dfget.version"],
                    pinned("DRAGONFLY_CLIENT_VERSION"),
                    "{platform}"
                );
                let tools = dist_tools(&dist, &platform);
                assert_eq!(
                    tools,
                    pinned_list("DRAGONFLY_TOOLS"),
                    "{platform}: every Dragonfly tool, verified by the manifest"
                );
                let mut expected = vec!["dfget-copier".to_owned(), "dragonfly-tools/SHA256SUMS".to_owned()];
                expected.extend(tools.iter().map(|tool| format!("dragonfly-tools/{tool}")));
                expected.sort();
                assert_eq!(names, expected, "{platform}: the tools image holds nothing else");
                assert_eq!(files["dfget-copier"].bytes, from_dist("dfget-copier"), "{platform}: the copier");
                assert_eq!(files["dfget-copier"].mode & 0o111, 0o111, "{platform}: the copier is executable");
                assert_eq!(
                    files["dragonfly-tools/SHA256SUMS"].bytes,
                    from_dist("tools/SHA256SUMS"),
                    "{platform}: the manifest"
                );
                for tool in &tools {
                    let file = &files[&format!("dragonfly-tools/{tool}")];
                    assert_eq!(file.bytes, from_dist(&format!("tools/{tool}")), "{platform}: {tool}");
                    assert_eq!(file.mode & 0o111, 0o111, "{platform}: {tool} is executable");
                }
            } else {
                assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/dragonfly-injector"]));
                assert_eq!(config["config"]["Cmd"], serde_json::json!(["serve"]));
                assert_eq!(
                    names,
                    ["dragonfly-injector", "etc/ssl/certs/ca-certificates.crt"],
                    "{platform}: the webhook image holds nothing else"
                );
                assert_eq!(
                    files["dragonfly-injector"].bytes,
                    from_dist("dragonfly-injector"),
                    "{platform}: the webhook binary"
                );
                assert_eq!(files["etc/ssl/certs/ca-certificates.crt"].bytes, ca_bundle, "{platform}: the CA bundle");
                // The binary the image carries runs on its architecture (under qemu-user here).
                let binary = webhook_binary(&platform);
                std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
                std::fs::write(&binary, &files["dragonfly-injector"].bytes).unwrap();
                std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
                let version = succeed(platform_entry(&platform).command(&binary).arg("--version"));
                assert_eq!(
                    text(&version.stdout),
                    format!("dragonfly-injector {}\n", env!("CARGO_PKG_VERSION")),
                    "{platform}"
                );
            }
            for (path, entry) in &files {
                assert_eq!(entry.mtime, 0, "{target} {platform} {path}: timestamps rewritten to SOURCE_DATE_EPOCH");
                assert_eq!(entry.uid, 0, "{target} {platform} {path}: owned by root, run as 65532");
            }
            if platform == "linux/amd64" && target == "tools" {
                amd64_tools = files;
            }
        }
    }

    // The webhook binary from the amd64 image resolves the tools image to the pushed digest.
    let webhook = webhook_binary("linux/amd64");
    let tools_image = format!("{registry_prefix}/dragonfly-injector-tools:test");
    let resolved = succeed(Command::new(&webhook).args(["resolve", "--plain-http", &registry.host, &tools_image]));
    let resolved = text(&resolved.stdout);
    assert!(resolved.contains(&format!("digest:    {}\n", first["tools"])), "{resolved}");
    let mut listed = tools_platforms.clone();
    listed.sort();
    assert!(resolved.contains(&format!("platforms: {}\n", listed.join(", "))), "{resolved}");
    assert!(resolved.contains("kind:      index (multi-arch)"), "{resolved}");
    // What it reports missing is the webhook's default `tools.architectures` (versions.env's
    // TOOLS_PLATFORMS, the config test holds them equal) less the index: none for the release
    // tier's dist, which carries the tools of every default platform.
    let missing: Vec<String> =
        test_kit::pinned_default_list("TOOLS_PLATFORMS").into_iter().filter(|p| !tools_platforms.contains(p)).collect();
    let missing = if missing.is_empty() { "none".to_owned() } else { missing.join(", ") };
    assert!(resolved.contains(&format!("missing:   {missing}\n")), "{resolved}");

    // The amd64 tools image, run as the kubelet runs the injected init container: its layers as
    // a read-only root, uid 65532, an empty shared directory at the webhook's mount path. The
    // copied dfget then runs in a root holding nothing but the image.
    let rootfs = work.path().join("rootfs");
    for (path, entry) in &amd64_tools {
        let target = rootfs.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, &entry.bytes).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(entry.mode)).unwrap();
    }
    std::fs::create_dir_all(rootfs.join("dragonfly/bin")).unwrap();
    let root = rootfs.display();
    let tools = pinned("DRAGONFLY_TOOLS");
    let script = format!(
        "mount --bind {root} {root} && mount -o remount,bind,ro {root} && mount -t tmpfs -o mode=0777 tmpfs {root}/dragonfly/bin \
         && chroot --userspec=65532:65532 {root} /dfget-copier --to /dragonfly/bin \
         && for tool in {tools}; do chroot --userspec=65532:65532 {root} /dragonfly/bin/$tool --version || exit 1; done \
         && if touch {root}/dragonfly-tools/x 2>/dev/null; then echo root-is-writable; exit 1; fi"
    );
    let ran = succeed(Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]));
    let stdout = text(&ran.stdout);
    for tool in pinned_list("DRAGONFLY_TOOLS") {
        assert!(stdout.contains(&format!(r#""file":"{tool}","action":"copied""#)), "{tool}: {stdout}");
        assert!(
            stdout.contains(&format!("{tool} {}", pinned("DRAGONFLY_CLIENT_VERSION"))),
            "the copied {tool} runs: {stdout}"
        );
    }
    assert!(stdout.contains(r#""msg":"tools ready""#), "{stdout}");

    // Reproducible: a fresh daemon (no cache) and the dist copied anew (new inodes and
    // timestamps) give the same digests; another tag or SOURCE_DATE_EPOCH does not.
    drop(daemon);
    let copy = work.path().join("dist");
    copy_dir_fresh(&dist, &copy);
    let fresh = Buildkitd::start(&buildx, &registry.host, &format!("images-test-fresh-{}", std::process::id()));
    let second = run_bake(&fresh, vars("again", &copy, "0"), &copy);
    // The tag is in the index annotations, so the version must match to compare digests.
    let third = run_bake(&fresh, vars("test", &copy, "0"), &copy);
    assert_eq!(third, first, "the same inputs give the same index digests");
    assert_ne!(second["tools"], first["tools"], "the version annotation is part of the index");
    let later = run_bake(&fresh, vars("test", &copy, "1700000000"), &copy);
    assert_ne!(later["tools"], first["tools"], "SOURCE_DATE_EPOCH reaches the image");
    let tools = registered.json("dragonfly-injector-tools", &later["tools"], INDEX).await;
    let manifest =
        registered.json("dragonfly-injector-tools", tools["manifests"][0]["digest"].as_str().unwrap(), MANIFEST).await;
    let config: Value = serde_json::from_slice(
        &registered.blob("dragonfly-injector-tools", manifest["config"]["digest"].as_str().unwrap()).await,
    )
    .unwrap();
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    drop(fresh);
}
