//! Every pinned version is written once, in scripts/versions.env. The scripts read it through
//! scripts/lib.sh and pass it to bake; the only other places a version may appear are the
//! Dockerfiles' ARG defaults (which hold when bake passes nothing), and those must equal it.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use std::path::{Path, PathBuf};
use test_kit::{pinned, repo_root};

/// The pinned versions (lists of platforms and tools are checked where they are used).
fn versions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("scripts/versions.env")).unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split_once('=').unwrap_or_else(|| panic!("not KEY=value: {line}")))
        .filter(|(key, _)| key.ends_with("_VERSION") || key.ends_with("_IMAGE"))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// Files that configure builds and tests: scripts, CI, images, the bake file, the chart and the
/// code. Prose (Markdown) may mention versions; it defines none.
fn build_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "corpus" | "fixtures") {
                build_files(&path, out);
            }
        } else if !name.ends_with(".md") && name != "versions.env" && name != "Cargo.lock" && name != "go.sum" {
            out.push(path);
        }
    }
}

#[test]
fn each_pinned_version_is_defined_once() {
    let root = repo_root().canonicalize().unwrap();
    let mut files = Vec::new();
    for dir in [
        "scripts",
        "images",
        ".ci",
        ".github",
        "charts",
        "webhook/src",
        "webhook/tests",
        "webhook/benches",
        "dfget-copier",
        "tests",
    ] {
        build_files(&root.join(dir), &mut files);
    }
    files.push(root.join("docker-bake.hcl"));
    let versions = versions();
    assert!(versions.len() >= 10, "{versions:?}");
    let mut stray = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for (number, line) in text.lines().enumerate() {
            for (key, value) in &versions {
                if !line.contains(value.as_str()) {
                    continue;
                }
                // The Dockerfiles' defaults, checked against versions.env below.
                let allowed = file.extension().is_some_and(|e| e == "Dockerfile") && line.starts_with("ARG ");
                if !allowed {
                    stray.push(format!(
                        "{}:{}: {key} ({value}) restated: {line}",
                        file.strip_prefix(&root).unwrap().display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(stray.is_empty(), "read these from scripts/versions.env instead:\n{}", stray.join("\n"));
}

#[test]
fn the_dockerfile_defaults_equal_the_pinned_versions() {
    for (dockerfile, args) in [
        (
            "images/tools.Dockerfile",
            vec![("BUILDER_IMAGE", "RUST_BUILDER_IMAGE"), ("DRAGONFLY_CLIENT_VERSION", "DRAGONFLY_CLIENT_VERSION")],
        ),
        ("images/webhook.Dockerfile", vec![("BUILDER_IMAGE", "RUST_BUILDER_IMAGE")]),
    ] {
        let text = std::fs::read_to_string(repo_root().join(dockerfile)).unwrap();
        for (arg, key) in args {
            let defaults: Vec<&str> =
                text.lines().filter_map(|line| line.strip_prefix(&format!("ARG {arg}="))).collect();
            assert!(!defaults.is_empty(), "{dockerfile} has no default for {arg}");
            for default in defaults {
                assert_eq!(default, pinned(key), "{dockerfile}: ARG {arg}");
            }
        }
    }
}
