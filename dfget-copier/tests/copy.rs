//! The copier against real directories.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

mod common;

use common::{listing, write_tools};
use dfget_copier::{copy_tools, parse_manifest, Action, Options};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

struct Dirs {
    root: PathBuf,
    options: Options,
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn dirs(test: &str, files: &[(&str, &[u8])]) -> Dirs {
    let root = std::env::temp_dir().join(format!("dfget-copier-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let (from, to) = (root.join("image"), root.join("shared"));
    fs::create_dir_all(&from).unwrap();
    fs::create_dir_all(&to).unwrap();
    write_tools(&from, files);
    Dirs { root, options: Options { from, to } }
}

#[test]
fn copies_verified_executables_and_logs_json_lines() {
    let dirs = dirs("copies", &[("dfget", b"#!/bin/sh\necho dfget\n"), ("dfcache", b"cache")]);
    let mut log = Vec::new();
    let results = copy_tools(&dirs.options, &mut log).unwrap();
    assert_eq!(results, [("dfget".to_owned(), Action::Copied), ("dfcache".to_owned(), Action::Copied)]);
    assert_eq!(listing(&dirs.options.to), ["dfcache", "dfget"]);
    let copied = dirs.options.to.join("dfget");
    assert_eq!(fs::read(&copied).unwrap(), b"#!/bin/sh\necho dfget\n");
    assert_eq!(fs::metadata(&copied).unwrap().permissions().mode() & 0o777, 0o755);
    let log = String::from_utf8(log).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(lines[0].starts_with(r#"{"level":"info","file":"dfget","action":"copied","bytes":21,"sha256":""#), "{log}");
    assert!(lines[2].contains(r#""copied":2,"unchanged":0"#), "{log}");
    let output = std::process::Command::new(&copied).output().unwrap();
    assert_eq!(output.stdout, b"dfget\n", "the copy runs");
}

#[test]
fn identical_files_already_present_are_left_alone() {
    let dirs = dirs("unchanged", &[("dfget", b"v1")]);
    copy_tools(&dirs.options, &mut Vec::new()).unwrap();
    let target = dirs.options.to.join("dfget");
    let before = fs::metadata(&target).unwrap().modified().unwrap();
    let mut log = Vec::new();
    let results = copy_tools(&dirs.options, &mut log).unwrap();
    assert_eq!(results, [("dfget".to_owned(), Action::Unchanged)]);
    assert_eq!(fs::metadata(&target).unwrap().modified().unwrap(), before);
    assert!(String::from_utf8(log).unwrap().contains(r#""copied":0,"unchanged":1"#));
}

#[test]
fn a_checksum_mismatch_fails_and_leaves_nothing_behind() {
    let dirs = dirs("mismatch", &[("dfcache", b"fine"), ("dfget", b"original")]);
    fs::write(dirs.options.from.join("dfget"), b"tampered").unwrap();
    let error = copy_tools(&dirs.options, &mut Vec::new()).unwrap_err();
    assert_eq!(error.file, "dfget");
    assert!(error.cause.contains("checksum mismatch"), "{}", error.cause);
    assert!(listing(&dirs.options.to).is_empty(), "not even the good file: {:?}", listing(&dirs.options.to));
    let line = error.to_json_line();
    assert!(line.starts_with(r#"{"level":"error","file":"dfget","error":"checksum mismatch"#), "{line}");
}

#[test]
fn a_missing_source_or_unwritable_target_is_named() {
    let dirs = dirs("missing", &[("dfget", b"x")]);
    fs::remove_file(dirs.options.from.join("dfget")).unwrap();
    let error = copy_tools(&dirs.options, &mut Vec::new()).unwrap_err();
    assert_eq!(error.file, "dfget");
    assert!(error.cause.contains("cannot open") && error.cause.contains("No such file"), "{}", error.cause);

    let dirs = self::dirs("target", &[("dfget", b"x")]);
    let options = Options { to: dirs.options.to.join("not-a-directory"), ..dirs.options.clone() };
    fs::write(&options.to, b"a file").unwrap();
    let error = copy_tools(&options, &mut Vec::new()).unwrap_err();
    assert!(error.cause.contains("cannot write to"), "{}", error.cause);

    let options = Options { from: dirs.root.join("nowhere"), ..dirs.options.clone() };
    let error = copy_tools(&options, &mut Vec::new()).unwrap_err();
    assert_eq!(error.file, "SHA256SUMS");
}

#[test]
fn manifests_are_strict() {
    let digest = "a".repeat(64);
    assert_eq!(parse_manifest(&format!("{digest} *dfget\n")).unwrap()[0].name, "dfget");
    for bad in [
        String::new(),
        format!("{digest}  ../etc/passwd"),
        format!("{digest}  a/b"),
        "abc  dfget".into(),
        format!("{digest}  .hidden"),
        format!("{digest}  x\n{digest}  x"),
    ] {
        assert!(parse_manifest(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_binary_reports_its_version_and_rejects_unknown_flags() {
    let binary = env!("CARGO_BIN_EXE_dfget-copier");
    let version = std::process::Command::new(binary).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(String::from_utf8(version.stdout).unwrap(), format!("dfget-copier {}\n", env!("CARGO_PKG_VERSION")));
    let bad = std::process::Command::new(binary).arg("--bogus").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));

    let dirs = dirs("binary", &[("dfget", b"tool")]);
    let run = std::process::Command::new(binary)
        .arg("--from")
        .arg(&dirs.options.from)
        .arg(format!("--to={}", dirs.options.to.display()))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(fs::read(dirs.options.to.join("dfget")).unwrap(), b"tool");
    fs::write(dirs.options.from.join("dfget"), b"changed").unwrap();
    fs::remove_file(dirs.options.to.join("dfget")).unwrap();
    let failed = std::process::Command::new(binary)
        .arg("--from")
        .arg(&dirs.options.from)
        .arg("--to")
        .arg(&dirs.options.to)
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8(failed.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(r#""file":"dfget""#) && stderr.contains("checksum mismatch"), "{stderr}");
}

/// Runs the copier with its target mounted as `mount` sets up, in a private mount namespace
/// (root only, as CI is), and lists the target before the namespace goes away.
fn run_with_mounted_target(dirs: &Dirs, mount: &str) -> (Option<i32>, String, String) {
    let binary = env!("CARGO_BIN_EXE_dfget-copier");
    let (from, to) = (dirs.options.from.display(), dirs.options.to.display());
    let script = format!("{mount} || exit 99; {binary} --from {from} --to {to}; status=$?; ls -A {to}; exit $status");
    let output = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux) runs the copier in a mount namespace");
    assert_ne!(
        output.status.code(),
        Some(99),
        "could not mount (root needed): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
}

#[test]
fn a_full_target_fails_with_one_line_and_leaves_nothing() {
    let big = vec![7u8; 1 << 20];
    let dirs = dirs("full", &[("dfcache", b"fits"), ("dfget", &big)]);
    let to = dirs.options.to.display();
    let (code, stdout, stderr) = run_with_mounted_target(&dirs, &format!("mount -t tmpfs -o size=256k tmpfs {to}"));
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(r#""file":"dfget""#) && stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(stdout, "", "the staged dfcache and the partial dfget are gone");
}

#[test]
fn a_read_only_target_fails_with_one_line_and_leaves_nothing() {
    let dirs = dirs("read-only", &[("dfget", b"tool")]);
    let to = dirs.options.to.display();
    let (code, stdout, stderr) =
        run_with_mounted_target(&dirs, &format!("mount --bind {to} {to} && mount -o remount,bind,ro {to}"));
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(r#""file":"dfget""#) && stderr.contains("Read-only file system"), "{stderr}");
    assert_eq!(stdout, "");
}
