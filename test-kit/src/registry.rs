//! A real OCI registry for tests: Debian's `docker-registry` (CNCF Distribution) on a loopback
//! port, with its own config and storage, optionally TLS and htpasswd; and real multi-arch
//! indexes pushed into it with oci-client.

use super::{free_port, wait_until, Leaf};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Registry {
    child: Option<Child>,
    /// `127.0.0.1:<port>`.
    pub host: String,
    dir: tempfile::TempDir,
}

#[derive(Default)]
pub struct RegistryOptions<'a> {
    pub tls: Option<&'a Leaf>,
    /// htpasswd (basic) authentication.
    pub user: Option<(&'a str, &'a str)>,
    /// Token (bearer) authentication through this token server.
    pub token: Option<&'a super::token::TokenServer>,
}

impl Registry {
    pub fn start(options: RegistryOptions<'_>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("127.0.0.1:{}", free_port());
        let mut config = format!(
            "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\n\
             storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
             http:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        if let Some(leaf) = options.tls {
            let (cert, key) = leaf.write_pair(dir.path());
            config.push_str(&format!("  tls: {{certificate: {}, key: {}}}\n", cert.display(), key.display()));
        }
        if let Some((user, password)) = options.user {
            let hash = bcrypt::hash(password, 5).unwrap();
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd: {{realm: test, path: {}}}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        if let Some(token) = options.token {
            std::fs::write(dir.path().join("token.pem"), &token.cert_pem).unwrap();
            config.push_str(&format!(
                "auth:\n  token: {{realm: \"{}\", service: {}, issuer: {}, rootcertbundle: {}}}\n",
                token.realm,
                super::token::SERVICE,
                super::token::ISSUER,
                dir.path().join("token.pem").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("docker-registry is needed (scripts/setup.sh installs it)");
        let registry = Registry { child: Some(child), host, dir };
        let up = wait_until(Duration::from_secs(15), Duration::from_millis(20), || {
            Ok(std::net::TcpStream::connect(&registry.host).is_ok())
        });
        assert!(up.is_ok(), "the registry did not start: {}", registry.log());
        registry
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client that can push to `registry` (plain HTTP unless `ca_pem` is given).
pub fn pushing_client(ca_pem: Option<&str>) -> Client {
    let (protocol, extra_root_certificates) = match ca_pem {
        None => (ClientProtocol::Http, Vec::new()),
        Some(pem) => (
            ClientProtocol::Https,
            vec![Certificate { encoding: CertificateEncoding::Pem, data: pem.as_bytes().to_vec() }],
        ),
    };
    Client::new(ClientConfig { protocol, extra_root_certificates, ..ClientConfig::default() })
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// An index for [`push_index`]: one image per platform (`linux/arm/v7` style) under `tag`, with
/// a BuildKit-style attestation entry when asked. `salt` makes the content unique.
pub struct IndexSpec<'a> {
    pub repository: &'a str,
    pub tag: &'a str,
    pub platforms: &'a [&'a str],
    pub attestation: bool,
    pub salt: &'a str,
}

/// The tools index most tests push: `dragonfly/tools:v1` for amd64 and arm64, no attestation;
/// a test names only what it changes (`IndexSpec { salt: "b", ..IndexSpec::default() }`).
impl Default for IndexSpec<'static> {
    fn default() -> Self {
        IndexSpec {
            repository: "dragonfly/tools",
            tag: "v1",
            platforms: &["linux/amd64", "linux/arm64"],
            attestation: false,
            salt: "a",
        }
    }
}

/// Pushes the images and the index `spec` describes to `host`; returns the index digest.
pub async fn push_index(client: &Client, auth: &RegistryAuth, host: &str, spec: IndexSpec<'_>) -> String {
    let IndexSpec { repository, tag, platforms, attestation, salt } = spec;
    let tagged: Reference = format!("{host}/{repository}:{tag}").parse().unwrap();
    client.store_auth_if_needed(tagged.resolve_registry(), auth).await;
    let mut entries = Vec::new();
    let push_image = async |os: &str, architecture: &str, variant: Option<&str>, content: String| {
        let config = serde_json::to_vec(&json!({"architecture": architecture, "os": os, "variant": variant, "rootfs": {"type": "layers", "diff_ids": []}, "salt": content})).unwrap();
        let layer = format!("layer {content}").into_bytes();
        for blob in [&config, &layer] {
            client.push_blob(&tagged, blob.clone(), &sha256(blob)).await.unwrap();
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer), "size": layer.len()}],
        }))
        .unwrap();
        let digest = sha256(&manifest);
        let by_digest = tagged.clone_with_digest(digest.clone());
        client
            .push_manifest_raw(
                &by_digest,
                manifest.clone(),
                http::HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"),
            )
            .await
            .unwrap();
        (digest, manifest.len())
    };
    for platform in platforms {
        let mut parts = platform.split('/');
        let (os, architecture, variant) = (parts.next().unwrap(), parts.next().unwrap(), parts.next());
        let (digest, size) = push_image(os, architecture, variant, format!("{salt} {platform}")).await;
        let mut descriptor = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
            "platform": {"os": os, "architecture": architecture}});
        if let Some(variant) = variant {
            descriptor["platform"]["variant"] = json!(variant);
        }
        entries.push(descriptor);
    }
    if attestation {
        let (digest, size) = push_image("unknown", "unknown", None, format!("{salt} attestation")).await;
        let subject = entries[0]["digest"].clone();
        entries.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": subject}}));
    }
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}),
    )
    .unwrap();
    client
        .push_manifest_raw(
            &tagged,
            index.clone(),
            http::HeaderValue::from_static("application/vnd.oci.image.index.v1+json"),
        )
        .await
        .unwrap();
    sha256(&index)
}
