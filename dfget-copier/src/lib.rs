//! Copies verified tools from the image into the shared volume.
//!
//! Every file is first written to a temporary name in the target directory, hashed while it is
//! written, checked against `SHA256SUMS`, fsynced and made executable. Only when every file has
//! passed are they renamed into place, so a failure leaves the target as it was. Files already
//! present with the right digest are left alone.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The webhook's default `tools.mountPath`.
pub const DEFAULT_TARGET: &str = "/dragonfly/bin";
/// Where the tools image keeps its tools and their `SHA256SUMS`.
pub const DEFAULT_SOURCE: &str = "/dragonfly-tools";
pub const MANIFEST: &str = "SHA256SUMS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub from: PathBuf,
    pub to: PathBuf,
}

const USAGE: &str = "usage: dfget-copier [--from DIR] [--to DIR] [--version]\n\
  --from DIR  directory with the tools and their SHA256SUMS (default /dragonfly-tools)\n\
  --to DIR    shared directory to copy them into (default /dragonfly/bin)";

impl Options {
    /// `Ok(None)`: `--version` or `--help` was answered.
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
        let mut options = Options { from: DEFAULT_SOURCE.into(), to: DEFAULT_TARGET.into() };
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            match flag.as_str() {
                "--version" | "-V" => {
                    println!("dfget-copier {}", env!("CARGO_PKG_VERSION"));
                    return Ok(None);
                }
                "--help" | "-h" => {
                    println!("{USAGE}");
                    return Ok(None);
                }
                "--from" | "--to" => {
                    let value =
                        inline.or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a directory\n{USAGE}"))?;
                    if flag == "--from" {
                        options.from = value.into();
                    } else {
                        options.to = value.into();
                    }
                }
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        Ok(Some(options))
    }
}

#[derive(Debug)]
pub struct CopyError {
    pub file: String,
    pub cause: String,
}

impl CopyError {
    fn new(file: impl Into<String>, cause: impl Into<String>) -> Self {
        CopyError { file: file.into(), cause: cause.into() }
    }

    pub fn to_json_line(&self) -> String {
        format!(r#"{{"level":"error","file":{},"error":{}}}"#, json_string(&self.file), json_string(&self.cause))
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One line of `SHA256SUMS`: `<64 hex>  <name>` (the `*` binary marker is accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub sha256: [u8; 32],
}

pub fn parse_manifest(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |why: &str| format!("line {}: {why}", number + 1);
        let (hex, name) = line.split_once(char::is_whitespace).ok_or_else(|| bad("expected '<sha256>  <name>'"))?;
        let name = name.trim_start().trim_start_matches('*');
        if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.starts_with('.') {
            return Err(bad(&format!("{name:?} is not a plain file name")));
        }
        let sha256 = decode_hex(hex).ok_or_else(|| bad("the digest is not 64 hex digits"))?;
        if entries.iter().any(|e| e.name == name) {
            return Err(bad(&format!("{name} is listed twice")));
        }
        entries.push(Entry { name: name.to_owned(), sha256 });
    }
    if entries.is_empty() {
        return Err("lists no file".into());
    }
    Ok(entries)
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn digest_of(path: &Path) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Copied,
    Unchanged,
}

/// Removes the temporary files it holds unless they were renamed into place.
struct Staged {
    files: Vec<(PathBuf, PathBuf)>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (temporary, _) in &self.files {
            let _ = fs::remove_file(temporary);
        }
    }
}

fn stage(entry: &Entry, options: &Options, staged: &mut Staged) -> Result<u64, CopyError> {
    let fail = |cause: String| CopyError::new(&entry.name, cause);
    let source = options.from.join(&entry.name);
    let mut input = File::open(&source).map_err(|e| fail(format!("cannot open {}: {e}", source.display())))?;
    let temporary = options.to.join(format!(".{}.tmp-{}", entry.name, std::process::id()));
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&temporary)
        .map_err(|e| fail(format!("cannot write to {}: {e}", options.to.display())))?;
    staged.files.push((temporary.clone(), options.to.join(&entry.name)));
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let read = input.read(&mut buffer).map_err(|e| fail(format!("cannot read {}: {e}", source.display())))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        output.write_all(&buffer[..read]).map_err(|e| fail(format!("cannot write {}: {e}", temporary.display())))?;
        size += read as u64;
    }
    let actual: [u8; 32] = hasher.finalize().into();
    if actual != entry.sha256 {
        return Err(fail(format!(
            "checksum mismatch: SHA256SUMS says {}, the file is {}",
            hex(&entry.sha256),
            hex(&actual)
        )));
    }
    output.sync_all().map_err(|e| fail(format!("cannot sync {}: {e}", temporary.display())))?;
    // The umask may have narrowed the mode given at creation.
    fs::set_permissions(&temporary, fs::Permissions::from_mode(0o755))
        .map_err(|e| fail(format!("cannot make it executable: {e}")))?;
    Ok(size)
}

/// Copies every tool, writing one JSON line per file and a summary to `log`.
pub fn copy_tools(options: &Options, log: &mut impl Write) -> Result<Vec<(String, Action)>, CopyError> {
    let manifest_path = options.from.join(MANIFEST);
    let manifest = fs::read_to_string(&manifest_path)
        .map_err(|e| CopyError::new(MANIFEST, format!("cannot read {}: {e}", manifest_path.display())))?;
    let entries = parse_manifest(&manifest).map_err(|e| CopyError::new(MANIFEST, e))?;
    let mut staged = Staged { files: Vec::new() };
    let mut results = Vec::new();
    let mut sizes = Vec::new();
    for entry in &entries {
        let target = options.to.join(&entry.name);
        let present = target.is_file() && digest_of(&target).is_ok_and(|digest| digest == entry.sha256);
        if present {
            results.push((entry.name.clone(), Action::Unchanged));
            sizes.push(0);
        } else {
            sizes.push(stage(entry, options, &mut staged)?);
            results.push((entry.name.clone(), Action::Copied));
        }
    }
    // Every file verified: move them into place.
    for (temporary, target) in std::mem::take(&mut staged.files) {
        if let Err(e) = fs::rename(&temporary, &target) {
            let _ = fs::remove_file(&temporary);
            let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            return Err(CopyError::new(name, format!("cannot move into place: {e}")));
        }
    }
    if let Ok(directory) = File::open(&options.to) {
        let _ = directory.sync_all();
    }
    let entries_by_name = entries.iter().map(|e| (e.name.as_str(), e)).collect::<Vec<_>>();
    for ((name, action), size) in results.iter().zip(&sizes) {
        let sha = entries_by_name.iter().find(|(n, _)| n == name).map(|(_, e)| hex(&e.sha256)).unwrap_or_default();
        let action = if *action == Action::Copied { "copied" } else { "unchanged" };
        let _ = writeln!(
            log,
            r#"{{"level":"info","file":{},"action":"{action}","bytes":{size},"sha256":"{sha}"}}"#,
            json_string(name)
        );
    }
    let copied = results.iter().filter(|(_, a)| *a == Action::Copied).count();
    let _ = writeln!(
        log,
        r#"{{"level":"info","msg":"tools ready","directory":{},"copied":{copied},"unchanged":{}}}"#,
        json_string(&options.to.display().to_string()),
        results.len() - copied
    );
    Ok(results)
}
