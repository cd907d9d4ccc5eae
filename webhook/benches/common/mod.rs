//! What the review benches share: the corpus (webhook/benches/corpus/, written by
//! scripts/bench-corpus.py) compacted as the API server sends it, the engine's default settings
//! with the tools image they inject, and the skim floor's typed parse. Each bench target
//! includes this module (`mod common;`); a subdirectory, so cargo does not take it for a bench.

#![allow(dead_code)] // each bench uses its own part

use dragonfly_injector::config::Config;
use dragonfly_injector::inject::{Settings, ToolsImage};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;

pub fn corpus_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/corpus")
}

/// One corpus body by name (`typical-injected`), compacted.
pub fn corpus(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(format!("{name}.json"));
    let review: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    serde_json::to_vec(&review).unwrap()
}

/// The default config's settings, and an unpinned tools image without a warning.
pub fn engine() -> (Settings, ToolsImage) {
    let settings = Settings::new(&Config::default(), Some("dragonfly-system"));
    let image = ToolsImage {
        reference: "docker.io/dragonflyoss/dragonfly-injector-tools:v0.1.0".into(),
        unpinned_warning: None,
    };
    (settings, image)
}

/// What the skim floor reads: the request's uid, borrowed; nothing else is kept.
#[derive(Deserialize)]
pub struct Skim<'a> {
    #[serde(borrow)]
    pub request: SkimRequest<'a>,
}

#[derive(Deserialize)]
pub struct SkimRequest<'a> {
    pub uid: &'a str,
    #[allow(dead_code)]
    object: IgnoredAny,
}
