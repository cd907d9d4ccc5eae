//! The dist `scripts/cross-build.sh` writes (`target/dist`, or the release tier's
//! `$DRAGONFLY_DIST`): which platforms it covers, by the profile it recorded, and what each holds.

use super::platforms::all_platforms;
use super::{pinned_list, repo_root};
use std::path::{Path, PathBuf};

/// The dist's platforms that have all of `files`.
pub fn dist_platforms_with(dist: &Path, files: &[&str]) -> Vec<String> {
    all_platforms().into_iter().filter(|p| files.iter().all(|f| dist.join(p).join(f).is_file())).collect()
}

/// What the tools image takes from a platform's dist: the copier and the copier's manifest, which
/// lists the tools.
pub const TOOLS_FILES: [&str; 2] = ["dfget-copier", "tools/SHA256SUMS"];

/// The tools a platform's dist carries, as its SHA256SUMS lists them.
pub fn dist_tools(dist: &Path, platform: &str) -> Vec<String> {
    let sums = std::fs::read_to_string(dist.join(platform).join("tools/SHA256SUMS")).unwrap();
    sums.lines().map(|line| line.split_whitespace().nth(1).unwrap().to_owned()).collect()
}

/// The platforms a dist must cover, from the profile scripts/cross-build.sh recorded in it:
/// "test" builds the webhook and the Dragonfly tools for linux/amd64 (the copier for every
/// platform); "release" every platform's webhook and the tools for TOOLS_PLATFORMS.
pub struct DistProfile {
    pub name: String,
    pub webhook: Vec<String>,
    pub tools: Vec<String>,
}

pub fn dist_profile(dist: &Path) -> DistProfile {
    let name = std::fs::read_to_string(dist.join("PROFILE"))
        .expect("target/dist/PROFILE: run scripts/cross-build.sh")
        .trim()
        .to_owned();
    let (webhook, tools) = match name.as_str() {
        "test" => (vec!["linux/amd64".to_owned()], vec!["linux/amd64".to_owned()]),
        "release" => (all_platforms(), pinned_list("TOOLS_PLATFORMS")),
        other => panic!("unknown dist profile {other}"),
    };
    DistProfile { name, webhook, tools }
}

/// The dist scripts/cross-build.sh wrote: `$DRAGONFLY_DIST` (the release tier's), or
/// target/dist (the test tier's).
pub fn dist_dir() -> PathBuf {
    std::env::var_os("DRAGONFLY_DIST").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target/dist"))
}
