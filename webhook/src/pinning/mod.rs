//! Pins the tools image to the digest of its multi-arch index, so every node pulls its own
//! architecture of one build and a tag moved in the registry changes nothing running until the
//! webhook deliberately picks the new digest up. Resolution runs in the background, never on the
//! admission path; the last good digest keeps being served while the registry is slow, down or
//! rate-limiting.

pub mod command;
pub mod credentials;
pub mod index;
pub mod resolver;
mod setup;

use crate::cluster::NodeCache;
use crate::config::{Pinning, RegistryConfig, ToolsConfig};
use crate::image::ImageParts;
use crate::inject::ToolsImage;
use crate::metrics::Metrics;
use arc_swap::ArcSwapOption;
use resolver::{ResolveError, Resolved, Resolver};
pub use setup::SetupError;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;

/// What the request path reads: `None` while no usable reference is known (pinning `required`
/// and no digest resolved yet).
pub type ToolsImageCell = ArcSwapOption<ToolsImage>;

/// What to inject before any resolution, and whether resolution is needed at all.
pub fn initial(tools: &ToolsConfig) -> (Option<ToolsImage>, bool) {
    let image = tools.image.as_str().to_owned();
    let has_digest = ImageParts::parse(&image).is_ok_and(|parts| parts.digest.is_some());
    match tools.pinning {
        _ if has_digest => (Some(ToolsImage { reference: image, unpinned_warning: None }), false),
        Pinning::Off => (Some(ToolsImage { reference: image, unpinned_warning: None }), false),
        Pinning::Preferred => {
            let warning = format!(
                "the tools image {image} is not pinned to a digest yet (its registry has not answered); nodes may pull different builds"
            );
            (Some(ToolsImage { reference: image, unpinned_warning: Some(warning) }), true)
        }
        Pinning::Required => (None, true),
    }
}

/// Starts pinning the configured tools image: returns the cell the request path reads and, when
/// the reference needs resolving, the background task that keeps it pinned. `nodes` (with
/// cluster access) adds the check of the nodes' platforms against the index.
pub fn spawn(
    tools: &ToolsConfig,
    registry: &RegistryConfig,
    metrics: Arc<Metrics>,
    nodes: Option<NodeCache>,
) -> Result<(Arc<ToolsImageCell>, Option<JoinHandle<()>>), SetupError> {
    let (first_image, needs_resolution) = initial(tools);
    let cell = Arc::new(ToolsImageCell::new(first_image.map(Arc::new)));
    if !needs_resolution {
        // A digest given in the config is exported as it is; `pinning: off` has none.
        let digest = ImageParts::parse(tools.image.as_str()).ok().and_then(|p| p.digest).unwrap_or_default();
        metrics.set_tools_image(tools.image.as_str(), digest);
        return Ok((cell, None));
    }
    let pinner = Pinner {
        resolver: Resolver::new(registry)?,
        image: tools.image.to_string(),
        refresh_interval: tools.refresh_interval.0,
        architectures: tools.architectures.iter().map(|p| p.as_str().to_owned()).collect(),
        cell: cell.clone(),
        metrics,
        nodes: nodes.filter(|_| tools.check_node_architectures),
    };
    Ok((cell, Some(tokio::spawn(pinner.run()))))
}

pub struct Pinner {
    pub resolver: Resolver,
    pub image: String,
    pub refresh_interval: Duration,
    pub architectures: Vec<String>,
    pub cell: Arc<ToolsImageCell>,
    pub metrics: Arc<Metrics>,
    /// With cluster access: the nodes' platforms, compared with the index on every refresh.
    pub nodes: Option<NodeCache>,
}

/// Retry delays: 1 s doubling up to the refresh interval (at most 5 minutes), each scaled by a
/// random factor in [0.5, 1.0) so that replicas do not retry in step.
pub fn backoff(failures: u32, refresh_interval: Duration) -> Duration {
    let ceiling = refresh_interval.min(Duration::from_secs(300)).max(Duration::from_secs(1));
    let base = Duration::from_secs(1).saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(ceiling);
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    base.mul_f64(0.5 + (random % 1000) as f64 / 2000.0)
}

impl Pinner {
    /// Resolves now, then on every refresh interval, until the task is dropped.
    pub async fn run(self) {
        let mut last: Option<Resolved> = None;
        let mut failures = 0u32;
        loop {
            let wait = match self.refresh(&mut last).await {
                Ok(()) => {
                    failures = 0;
                    self.refresh_interval
                }
                Err(_) => {
                    failures += 1;
                    backoff(failures, self.refresh_interval)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One resolution: on success the injected reference follows the tag; on failure `last`
    /// (and what is injected) stays as it was.
    pub async fn refresh(&self, last: &mut Option<Resolved>) -> Result<(), ResolveError> {
        match self.resolver.resolve(&self.image, last.as_ref()).await {
            Ok(resolved) => {
                self.apply(&resolved, last.as_ref());
                self.check_nodes(&resolved);
                *last = Some(resolved);
                Ok(())
            }
            Err(error) => {
                self.record_failure(&error, last.as_ref());
                Err(error)
            }
        }
    }

    fn apply(&self, resolved: &Resolved, previous: Option<&Resolved>) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        self.metrics.tools_image_resolved_at.set(i64::try_from(now).unwrap_or(i64::MAX));
        if previous.is_some_and(|p| p.digest == resolved.digest) {
            return;
        }
        self.cell.store(Some(Arc::new(ToolsImage { reference: resolved.pinned.clone(), unpinned_warning: None })));
        self.metrics.set_tools_image(&self.image, &resolved.digest);
        let missing = if resolved.is_index {
            index::missing(&self.architectures, &resolved.platforms)
        } else {
            self.architectures.clone()
        };
        self.metrics.set_missing_platforms(&self.architectures, &missing);
        let platforms: Vec<&str> = resolved.platforms.iter().map(String::as_str).collect();
        tracing::info!(
            image = %self.image,
            digest = %resolved.digest,
            previous = previous.map(|p| p.digest.as_str()).unwrap_or("none"),
            platforms = platforms.join(","),
            "tools image pinned"
        );
        if !resolved.is_index {
            tracing::warn!(image = %self.image, digest = %resolved.digest, "the tools image is a single-platform manifest, not a multi-arch index: nodes of other architectures cannot run it");
        } else if !missing.is_empty() {
            tracing::warn!(image = %self.image, digest = %resolved.digest, missing = missing.join(","), "the tools image index lacks required platforms; pods on such nodes will fail to start their init container");
        }
    }

    fn check_nodes(&self, resolved: &Resolved) {
        let Some(nodes) = self.nodes.as_ref().and_then(|cache| cache.platforms()) else { return };
        let missing = index::missing_for_nodes(&nodes, &resolved.platforms);
        if self.metrics.set_missing_node_platforms(&nodes, &missing) && !missing.is_empty() {
            tracing::warn!(image = %self.image, digest = %resolved.digest, missing = missing.join(","), "the cluster has nodes whose platform the tools image lacks; injected pods scheduled there will not start");
        }
    }

    fn record_failure(&self, error: &ResolveError, last: Option<&Resolved>) {
        self.metrics.count_resolution_failure(error.label());
        match last {
            Some(last) => {
                tracing::warn!(image = %self.image, reason = error.label(), %error, serving = %last.pinned, "cannot resolve the tools image; keeping the last good digest")
            }
            None => {
                tracing::error!(image = %self.image, reason = error.label(), %error, "cannot resolve the tools image")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_mode_and_a_given_digest_decide_the_start() {
        let tools = |yaml: &str| Config::from_yaml(yaml).unwrap().tools;
        let (image, resolve) = initial(&tools("tools: {image: r.io/t:v1, pinning: required}\n"));
        assert_eq!((image, resolve), (None, true));
        let (image, resolve) = initial(&tools("tools: {image: r.io/t:v1}\n"));
        assert!(resolve);
        let image = image.unwrap();
        assert_eq!(image.reference, "r.io/t:v1");
        assert!(image.unpinned_warning.unwrap().contains("not pinned"));
        let (image, resolve) = initial(&tools("tools: {image: r.io/t:v1, pinning: \"off\"}\n"));
        assert_eq!((image.unwrap().unpinned_warning, resolve), (None, false));
        let pinned = format!("r.io/t:v1@sha256:{}", "a".repeat(64));
        let (image, resolve) = initial(&tools(&format!("tools: {{image: \"{pinned}\", pinning: required}}\n")));
        assert_eq!((image.unwrap().reference, resolve), (pinned, false));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stays_under_the_ceiling() {
        let refresh = Duration::from_secs(300);
        for failures in 1..6 {
            let base = Duration::from_secs(1 << (failures - 1));
            let delay = backoff(failures, refresh);
            assert!(delay >= base / 2 && delay < base, "{failures}: {delay:?}");
        }
        assert!(backoff(40, refresh) < refresh);
        assert!(backoff(40, Duration::from_secs(10)) < Duration::from_secs(10));
    }
}
