//! Shared by the copier's tests: a tools directory with its SHA256SUMS, and directory listings.

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
