//! Prometheus metrics, served on the admin port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `injected`, `unchanged`, `skipped` or `error`.
    pub outcome: &'static str,
    /// The skip reason or error label; empty otherwise.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Histogram,
    pub warnings: Counter,
    pub certificate_expiry: Gauge,
    pub certificate_reloads: Family<ResultLabels, Counter>,
    pub ready: Gauge,
}

/// Sub-millisecond buckets: an injection takes tens of microseconds.
const DURATION_BUCKETS: [f64; 14] =
    [0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dragonfly_injector");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("admission_requests", "AdmissionReviews answered, by outcome and reason", requests.clone());
        let duration = Histogram::new(DURATION_BUCKETS);
        registry.register("admission_duration_seconds", "Time to review one AdmissionReview", duration.clone());
        let warnings = Counter::default();
        registry.register("admission_warnings", "Warnings returned to the API server", warnings.clone());
        let certificate_expiry = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, as a Unix time",
            certificate_expiry.clone(),
        );
        let certificate_reloads = Family::<ResultLabels, Counter>::default();
        registry.register("tls_certificate_reloads", "Serving certificate loads, by result", certificate_reloads.clone());
        let ready = Gauge::default();
        registry.register("ready", "1 when the webhook reports ready", ready.clone());
        let build = Family::<VersionLabels, Gauge>::default();
        build.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "The running version", build);
        Metrics { registry, requests, duration, warnings, certificate_expiry, certificate_reloads, ready }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    pub fn count_request(&self, outcome: &'static str, reason: &'static str) {
        self.requests.get_or_create(&RequestLabels { outcome, reason }).inc();
    }
}
