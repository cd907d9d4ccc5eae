//! State shared by the webhook and admin routers.

use crate::cluster::NamespaceCache;
use crate::inject::Settings;
use crate::metrics::Metrics;
use crate::pinning::ToolsImageCell;
use crate::server::pool::ReviewPool;
use crate::server::tls::CertResolver;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Readiness starts false; every condition must hold. Shutdown clears it first, so endpoints
/// drop the pod before it stops accepting connections.
#[derive(Debug, Default)]
pub struct Readiness {
    shutting_down: AtomicBool,
}

impl Readiness {
    pub fn start_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
}

pub struct WebhookState {
    pub settings: Settings,
    /// The tools image reference to inject; `None` while no usable reference is known
    /// (pinning `required` and no digest resolved yet).
    pub tools_image: Arc<ToolsImageCell>,
    pub namespaces: Option<NamespaceCache>,
    pub metrics: Arc<Metrics>,
    pub certificate: Arc<CertResolver>,
    pub readiness: Readiness,
    pub pool: ReviewPool,
}

impl WebhookState {
    /// Ready once every condition holds; not shutting down.
    pub fn new(
        settings: Settings,
        tools_image: Arc<ToolsImageCell>,
        namespaces: Option<NamespaceCache>,
        metrics: Arc<Metrics>,
        certificate: Arc<CertResolver>,
        pool: ReviewPool,
    ) -> Self {
        WebhookState { settings, tools_image, namespaces, metrics, certificate, readiness: Readiness::default(), pool }
    }

    /// The unmet readiness conditions; empty when ready.
    pub fn not_ready(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.readiness.shutting_down.load(Ordering::SeqCst) {
            missing.push("shutting down");
        }
        if !self.certificate.is_loaded() {
            missing.push("no serving certificate loaded");
        }
        if self.tools_image.load().is_none() {
            missing.push("no usable tools image reference");
        }
        if self.namespaces.as_ref().is_some_and(|cache| !cache.is_synced()) {
            missing.push("namespace cache not synced");
        }
        missing
    }
}
