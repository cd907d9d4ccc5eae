//! Container images written by the tests, never pulled: a one-layer, FROM-scratch OCI image
//! layout as a tarball, which `ctr images import` loads into the node's containerd. Everything
//! is deterministic (timestamps 0, sorted entries), so the same files give the same digest.

use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// What goes into the image's single layer, by path inside the image (no leading `/`).
enum Entry {
    File { mode: u32, bytes: Vec<u8> },
    Symlink { target: String },
    Dir { mode: u32 },
}

pub struct Image {
    /// The full reference `ctr import` records, `registry.local/e2e/busybox:1`.
    pub name: String,
    /// `amd64`, `arm64`: the image is for linux on that architecture.
    pub architecture: String,
    entries: BTreeMap<String, Entry>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<String>,
    user: Option<String>,
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

impl Image {
    pub fn new(name: &str) -> Image {
        Image {
            name: name.to_owned(),
            architecture: "amd64".to_owned(),
            entries: BTreeMap::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            user: None,
        }
    }

    pub fn file(mut self, path: &str, mode: u32, bytes: Vec<u8>) -> Image {
        self.add_parents(path);
        self.entries.insert(path.trim_start_matches('/').to_owned(), Entry::File { mode, bytes });
        self
    }

    /// A file copied from the host.
    pub fn host_file(self, path: &str, mode: u32, from: &Path) -> Image {
        let bytes = std::fs::read(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        self.file(path, mode, bytes)
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Image {
        self.add_parents(path);
        self.entries.insert(path.trim_start_matches('/').to_owned(), Entry::Symlink { target: target.to_owned() });
        self
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Image {
        self.add_parents(path);
        self.entries.insert(path.trim_start_matches('/').trim_end_matches('/').to_owned(), Entry::Dir { mode });
        self
    }

    pub fn entrypoint(mut self, args: &[&str]) -> Image {
        self.entrypoint = args.iter().map(|a| a.to_string()).collect();
        self
    }

    pub fn cmd(mut self, args: &[&str]) -> Image {
        self.cmd = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// An `ENV` line, `KEY=value`.
    pub fn env(mut self, variable: &str) -> Image {
        self.env.push(variable.to_owned());
        self
    }

    pub fn user(mut self, user: &str) -> Image {
        self.user = Some(user.to_owned());
        self
    }

    fn add_parents(&mut self, path: &str) {
        let path = Path::new(path.trim_start_matches('/'));
        for parent in path.ancestors().skip(1) {
            let parent = parent.to_string_lossy().into_owned();
            if !parent.is_empty() {
                self.entries.entry(parent).or_insert(Entry::Dir { mode: 0o755 });
            }
        }
    }

    fn layer(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            match entry {
                Entry::File { mode, bytes } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(bytes.len() as u64);
                    builder.append_data(&mut header, path, bytes.as_slice()).unwrap();
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target).unwrap();
                }
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), std::io::empty()).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    /// Writes the image as an OCI image layout tarball at `out`; returns the manifest digest.
    pub fn write_layout(&self, out: &Path) -> String {
        let layer = self.layer();
        let diff_id = sha256(&layer);
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &layer).unwrap();
        let compressed = gz.finish().unwrap();
        let mut config = json!({
            "architecture": self.architecture,
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        if !self.entrypoint.is_empty() {
            config["config"]["Entrypoint"] = json!(self.entrypoint);
        }
        if !self.cmd.is_empty() {
            config["config"]["Cmd"] = json!(self.cmd);
        }
        if !self.env.is_empty() {
            config["config"]["Env"] = json!(self.env);
        }
        if let Some(user) = &self.user {
            config["config"]["User"] = json!(user);
        }
        let config = serde_json::to_vec(&config).unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&compressed), "size": compressed.len()}],
        }))
        .unwrap();
        let manifest_digest = sha256(&manifest);
        let tag = self.name.rsplit_once(':').map(|(_, tag)| tag).unwrap_or("latest");
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "platform": {"os": "linux", "architecture": self.architecture},
                "annotations": {"io.containerd.image.name": self.name, "org.opencontainers.image.ref.name": tag},
            }],
        }))
        .unwrap();

        let mut builder = tar::Builder::new(std::fs::File::create(out).unwrap());
        let mut add = |path: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(0);
            header.set_mode(0o644);
            header.set_size(bytes.len() as u64);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, path, bytes).unwrap();
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        add("index.json", &index);
        for blob in [&config, &compressed, &manifest] {
            add(&format!("blobs/sha256/{}", &sha256(blob)["sha256:".len()..]), blob);
        }
        builder.finish().unwrap();
        manifest_digest
    }
}
