//! Shared by the copier's tests: a tools directory with its SHA256SUMS, and directory listings.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;

/// Writes `files` into `from` with the `SHA256SUMS` the tools image ships beside them.
pub fn write_tools(from: &Path, files: &[(&str, &[u8])]) {
    let mut manifest = String::new();
    for (name, content) in files {
        fs::write(from.join(name), content).unwrap();
        manifest.push_str(&format!("{:x}  {name}\n", Sha256::digest(content)));
    }
    fs::write(from.join("SHA256SUMS"), manifest).unwrap();
}

/// The names in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// A pinned value from scripts/versions.env, where each version and platform list is written
/// once.
pub fn pinned(key: &str) -> String {
    let versions = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/versions.env")).unwrap();
    versions
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{key} is not in scripts/versions.env"))
}

/// The platforms the dist must carry the Dragonfly tools for, from the profile
/// scripts/cross-build.sh recorded in it ("test": linux/amd64; "release": TOOLS_PLATFORMS).
pub fn dist_tools_platforms(dist: &Path) -> Vec<String> {
    let profile = fs::read_to_string(dist.join("PROFILE")).expect("no PROFILE in the dist: run scripts/cross-build.sh");
    match profile.trim() {
        "test" => vec!["linux/amd64".to_owned()],
        "release" => pinned("TOOLS_PLATFORMS").split_whitespace().map(str::to_owned).collect(),
        other => panic!("unknown dist profile {other}"),
    }
}
