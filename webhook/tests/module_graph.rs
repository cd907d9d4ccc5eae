//! The crate's import graph has no circle: its top-level modules form layers, and each imports
//! only modules in the layers below it. A new module must be placed in `LAYERS`, and an import
//! that points upwards (a runner in a library module, a type the request path needs living with
//! a command) fails here with the file that made it. Inside a module, no two files (or
//! subdirectories) name each other in a circle either.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom: a module may import the ones after it, never the ones before it.
const LAYERS: [&str; 13] = [
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
    "labels",
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

/// Inside each directory module: which of its files (a subdirectory counts as one) the code of
/// each names through `super::` (or `super::super::` from a subdirectory's files) or its absolute
/// `crate::` path. Keyed by directory, then file, then the siblings it names.
fn sibling_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut graphs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let parts: Vec<String> =
            relative.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned()).collect();
        let text = std::fs::read_to_string(file).unwrap();
        let code: String =
            text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
        // Each directory above the file: the file's node there, and how its code names siblings.
        for depth in 1..parts.len() {
            let dir = parts[..depth].join("/");
            let node = parts[depth].clone();
            if node == "mod" && depth == parts.len() - 1 {
                continue;
            }
            let below = parts.len() - 1 - depth; // directories between `dir` and the file
            let is_mod = parts.last().is_some_and(|p| p == "mod");
            let ups = below + usize::from(!is_mod);
            let relative_prefix = "super::".repeat(ups.max(1));
            let absolute_prefix = format!("crate::{}::", parts[..depth].join("::"));
            let siblings: BTreeSet<String> = std::fs::read_dir(src.join(&dir))
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().trim_end_matches(".rs").to_owned())
                .filter(|n| n != "mod" && *n != node)
                .collect();
            for prefix in [relative_prefix.as_str(), absolute_prefix.as_str()] {
                for (at, _) in code.match_indices(prefix) {
                    // `super::super::x` also contains `super::x`: only the exact depth counts.
                    if prefix.starts_with("super") && code[..at].ends_with("super::") {
                        continue;
                    }
                    let after = &code[at + prefix.len()..];
                    let names: Vec<String> = match after.strip_prefix('{') {
                        // `use super::{a, b::C}`: the first name of each item.
                        Some(group) => group[..group.find('}').unwrap_or(group.len())]
                            .split(',')
                            .map(|item| item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect())
                            .collect(),
                        None => vec![after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()],
                    };
                    for name in names.into_iter().filter(|n| siblings.contains(n)) {
                        graphs.entry(dir.clone()).or_default().entry(node.clone()).or_default().insert(name);
                    }
                }
            }
        }
    }
    graphs
}

#[test]
fn no_two_files_of_a_module_import_each_other() {
    let mut circles = Vec::new();
    for (dir, graph) in sibling_graph() {
        // Any path back to where it started: reachability from each node.
        for start in graph.keys() {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<&String> = graph[start].iter().collect();
            while let Some(node) = stack.pop() {
                if node == start {
                    circles.push(format!("{dir}: {start} reaches itself through {:?}", graph[start]));
                    break;
                }
                if seen.insert(node.clone()) {
                    stack.extend(graph.get(node).into_iter().flatten());
                }
            }
        }
    }
    assert!(circles.is_empty(), "files that import each other, in a circle:\n{}", circles.join("\n"));
}

#[test]
fn the_sibling_scanner_sees_the_edges_that_exist() {
    let graph = sibling_graph();
    // server/managed/mod.rs names super::tls; pinning/resolver.rs names super::credentials.
    assert!(graph["server"]["managed"].contains("tls"), "{:?}", graph["server"]);
    assert!(graph["pinning"]["resolver"].contains("credentials"), "{:?}", graph["pinning"]);
}
