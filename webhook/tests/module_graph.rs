//! The crate's import graph has no circle: its top-level modules form layers, and each imports
//! only modules in the layers below it. A new module must be placed in `LAYERS`, and an import
//! that points upwards (a runner in a library module, a type the request path needs living with
//! a command) fails here with the file that made it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom: a module may import the ones after it, never the ones before it.
const LAYERS: [&str; 12] = [
    "cli",
    "csi",
    "server",
    "offline",
    "admission",
    "pinning",
    "cluster",
    "inject",
    "logging",
    "metrics",
    "config",
    "image",
];

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file's code (not its comments) names through `crate::`.
fn imported_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::C}`: the first name of each item.
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for item in inner.split(',') {
                    let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                found.insert(name);
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let entry = edges.entry(module.clone()).or_default();
        for imported in imported_modules(&std::fs::read_to_string(&file).unwrap()) {
            if imported != module {
                entry.entry(imported).or_default().push(relative.display().to_string());
            }
        }
    }
    edges
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let edges = graph();
    let modules: BTreeSet<&str> = edges.keys().map(String::as_str).collect();
    let layered: BTreeSet<&str> = LAYERS.into_iter().collect();
    assert_eq!(modules, layered, "every top-level module of src/ has a place in LAYERS, and only those");
    let rank = |module: &str| LAYERS.iter().position(|m| *m == module);
    let mut upward = Vec::new();
    for (module, imports) in &edges {
        for (imported, files) in imports {
            match (rank(module), rank(imported)) {
                (Some(from), Some(to)) if to > from => {}
                _ => upward.push(format!("{module} imports {imported} (in {})", files.join(", "))),
            }
        }
    }
    assert!(upward.is_empty(), "imports that point up a layer or sideways:\n{}", upward.join("\n"));
}

#[test]
fn the_import_scanner_reads_paths_and_groups_but_not_comments() {
    let text = "use crate::{logging, offline::yaml, pinning};\nlet x = crate::image::ImageParts::parse(s); // crate::cli\n/// [`crate::server`]\n";
    let found: Vec<String> = imported_modules(text).into_iter().collect();
    assert_eq!(found, ["image", "logging", "offline", "pinning"]);
}
