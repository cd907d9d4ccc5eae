//! The documentation holds together: every relative link in the Markdown files points at a file
//! that exists and, with a `#fragment`, at a heading that file has (GitHub's anchors); and the
//! README opens with its title and then the two commands, nothing else in that block.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn markdown_files() -> Vec<PathBuf> {
    let root = test_kit::repo_root();
    let mut files: Vec<PathBuf> =
        ["README.md", "CONTRIBUTING.md", "BENCHMARKS.md", "images/README.md"].iter().map(|f| root.join(f)).collect();
    files.push(root.join("charts/dragonfly-injector/README.md"));
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files
}

/// Lines outside fenced code blocks, with inline code spans removed.
fn prose(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || line.starts_with("    ") && !line.trim_start().starts_with(['-', '|', '[']) {
            continue;
        }
        let mut kept = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                kept.push_str(part);
            }
        }
        out.push(kept);
    }
    out
}

/// `[text](target)` targets, in order.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in prose(text) {
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            match after.find(')') {
                Some(end) => {
                    found.push(after[..end].to_owned());
                    rest = &after[end..];
                }
                None => break,
            }
        }
    }
    found
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens; a repeated
/// heading gets `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let Some(heading) = line.strip_prefix('#').filter(|_| !fenced) else { continue };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut candidate = slug.clone();
        let mut n = 0;
        while seen.contains(&candidate) {
            n += 1;
            candidate = format!("{slug}-{n}");
        }
        seen.insert(candidate);
    }
    seen
}

#[test]
fn every_relative_link_reaches_a_file_and_heading_that_exist() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = link.split_once('#').map_or((link.as_str(), None), |(p, f)| (p, Some(f)));
            let target = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            checked += 1;
            if !target.exists() {
                broken.push(format!("{}: {link} (no {})", file.display(), target.display()));
                continue;
            }
            if let Some(fragment) = fragment {
                let headings = anchors(&std::fs::read_to_string(&target).unwrap_or_default());
                if !headings.contains(fragment) {
                    broken.push(format!("{}: {link} (no heading #{fragment} in {})", file.display(), target.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 20, "only {checked} links found: the link reader is broken");
}

#[test]
fn the_reader_finds_links_and_anchors_as_github_makes_them() {
    let text = "# Title\n\nSee [a](docs/a.md#the-readmes-two-commands) and `[not](x.md)`.\n\
                ```\n[fenced](y.md)\n```\n## The README's two commands\n## Beside Dragonfly's own chart\n\
                ## `dragonfly-injector csi`\n## Again\n## Again\n";
    assert_eq!(links(text), vec!["docs/a.md#the-readmes-two-commands"]);
    let found = anchors(text);
    for anchor in [
        "title",
        "the-readmes-two-commands",
        "beside-dragonflys-own-chart",
        "dragonfly-injector-csi",
        "again",
        "again-1",
    ] {
        assert!(found.contains(anchor), "{anchor} in {found:?}");
    }
}

#[test]
fn the_readme_opens_with_its_title_then_the_two_commands_alone() {
    let readme = std::fs::read_to_string(test_kit::repo_root().join("README.md")).unwrap();
    let mut lines = readme.lines().filter(|l| !l.trim().is_empty());
    assert_eq!(lines.next(), Some("# Dragonfly Injector"));
    assert_eq!(lines.next(), Some("```sh"));
    assert_eq!(lines.next(), Some("scripts/demo.sh"));
    assert_eq!(lines.next(), Some("scripts/test.sh"));
    assert_eq!(lines.next(), Some("```"));
    let length = readme.lines().count();
    assert!(length <= 160, "the README is for users: {length} lines; move the rest to docs/");
    assert!(Path::new(&test_kit::repo_root().join("CONTRIBUTING.md")).exists());
}
