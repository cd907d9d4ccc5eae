//! `scripts/setup.sh --check`, the preflight a new machine meets first: on a machine that
//! `scripts/setup.sh` has set up it passes in seconds, and with one needed piece hidden (a file,
//! a command, a toolchain) it fails naming exactly that piece and what provides it. The pieces are
//! hidden in a private mount namespace (`unshare -m`), so the machine itself is never touched.
//! The check's list is lib.sh's `requirements` table, the same one setup installs from.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use std::process::{Command, Output};
use test_kit::repo_root;

/// Runs `setup.sh --check` after the shell commands in `hide`, inside a private mount namespace.
fn check_with(hide: &str) -> Output {
    run_with(hide, "--check")
}

/// Runs `setup.sh ARGS` after the shell commands in `hide`, inside a private mount namespace.
fn run_with(hide: &str, args: &str) -> Output {
    let script = format!("set -e; {hide}\nexec scripts/setup.sh {args}");
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .current_dir(repo_root())
        .output()
        .expect("unshare runs (the suite runs as root)")
}

/// The lines the check logged about missing pieces.
fn missing_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.starts_with("setup.sh: missing: "))
        .map(str::to_owned)
        .collect()
}

/// The missing-piece lines of a check that must fail with `hide` applied.
fn fails_naming(hide: &str) -> Vec<String> {
    let output = check_with(hide);
    assert!(!output.status.success(), "passed with: {hide}");
    missing_lines(&output)
}

#[test]
fn passes_on_a_set_up_machine() {
    let output = check_with("");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(missing_lines(&output).is_empty());
}

#[test]
fn a_hidden_header_is_named_with_its_package() {
    // protoc's well-known types: the file a new machine lacked, because libprotobuf-dev is only
    // a Recommends of protobuf-compiler.
    assert_eq!(
        fails_naming("mount -t tmpfs none /usr/include/google/protobuf"),
        ["setup.sh: missing: /usr/include/google/protobuf/duration.proto (Debian package libprotobuf-dev)"]
    );
}

#[test]
fn a_hidden_command_is_named_with_its_package() {
    // A file that is there but does not run (here /dev/null over it) counts as missing.
    assert_eq!(
        fails_naming("mount --bind /dev/null \"$(command -v protoc)\""),
        ["setup.sh: missing: protoc (Debian package protobuf-compiler)"]
    );
}

#[test]
fn a_foreign_c_library_is_named_with_its_package() {
    // Generated per platform from ALL_PLATFORMS: the s390x copier links against this one.
    assert_eq!(
        fails_naming("mount -t tmpfs none /usr/s390x-linux-gnu/lib"),
        ["setup.sh: missing: /usr/s390x-linux-gnu/lib/libc.a (Debian package libc6-dev-s390x-cross)"]
    );
}

#[test]
fn an_old_or_missing_go_is_named_with_the_version_needed() {
    let lines = fails_naming("mount -t tmpfs none /usr/local/go");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let floor = test_kit::pinned("GO_MIN_VERSION");
    // "found none", or an older go elsewhere on PATH (Debian 12's golang-go is 1.19).
    assert!(lines[0].starts_with(&format!("setup.sh: missing: go >= {floor}, found ")), "{lines:?}");
}

#[test]
fn setup_without_go_stops_before_installing_or_building_anything() {
    // The toolchains are checked before apt: on a new machine without them, setup ends in a
    // second rather than after minutes of packages.
    let output = run_with("mount -t tmpfs none /usr/local/go", "");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines = missing_lines(&output);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("setup.sh: missing: go >= "), "{stderr}");
    assert!(stderr.contains("setup.sh: stopping: install what is missing above"), "{stderr}");
    assert!(!stderr.contains("installing") && !stderr.contains("done in"), "{stderr}");
}

/// The highest rust-version of the workspace's members, as lib.sh's rust_min_version reads it.
fn rust_floor() -> String {
    ["webhook", "dfget-copier"]
        .iter()
        .filter_map(|member| {
            let manifest = std::fs::read_to_string(repo_root().join(member).join("Cargo.toml")).unwrap();
            let line = manifest.lines().find_map(|line| line.strip_prefix("rust-version = "))?;
            Some(line.trim_matches('"').to_owned())
        })
        .max_by_key(|version| version.split('.').map(|part| part.parse::<u32>().unwrap()).collect::<Vec<_>>())
        .unwrap()
}

#[test]
fn an_old_cargo_is_named_with_the_rust_version_the_workspace_needs() {
    // A cargo that reports 1.80 ahead of the real one on PATH (in a directory of the test's own:
    // not a mount over /tmp, where the clone itself may live; HOME elsewhere, so lib.sh does not
    // put rustup's cargo first again).
    let old = tempfile::tempdir().unwrap();
    std::fs::write(old.path().join("cargo"), "#!/bin/sh\necho cargo 1.80.0\n").unwrap();
    std::fs::set_permissions(old.path().join("cargo"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let lines = fails_naming(&format!("export PATH={}:$PATH HOME=/nonexistent", old.path().display()));
    let floor = rust_floor();
    assert!(
        lines.iter().any(|line| line.starts_with(&format!("setup.sh: missing: cargo >= {floor}, found 1.80.0"))),
        "{lines:?}"
    );
}
