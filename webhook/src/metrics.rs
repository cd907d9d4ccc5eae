//! Prometheus metrics, served on the admin port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;

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
pub struct ImageLabels {
    pub image: String,
    pub digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabels {
    pub platform: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
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
    pub tools_image: Family<ImageLabels, Gauge>,
    pub tools_image_missing_platforms: Family<PlatformLabels, Gauge>,
    pub tools_image_resolution_failures: Family<ReasonLabels, Counter>,
    /// Unix time of the last successful resolution; 0 before the first.
    pub tools_image_resolved_at: Gauge,
    pub tools_image_unpinned_injections: Counter,
    pub tools_image_missing_node_platforms: Family<PlatformLabels, Gauge>,
    pub connections_refused: Counter,
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
        registry.register(
            "tls_certificate_reloads",
            "Serving certificate loads, by result",
            certificate_reloads.clone(),
        );
        let ready = Gauge::default();
        registry.register("ready", "1 when the webhook reports ready", ready.clone());
        let tools_image = Family::<ImageLabels, Gauge>::default();
        registry.register(
            "tools_image_info",
            "The tools image reference being injected, by digest (1 for the current one)",
            tools_image.clone(),
        );
        let tools_image_missing_platforms = Family::<PlatformLabels, Gauge>::default();
        registry.register(
            "tools_image_missing_platforms",
            "1 for each configured platform the resolved tools image lacks",
            tools_image_missing_platforms.clone(),
        );
        let tools_image_resolution_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tools_image_resolution_failures",
            "Failed resolutions of the tools image tag, by reason",
            tools_image_resolution_failures.clone(),
        );
        let tools_image_resolved_at = Gauge::default();
        registry.register(
            "tools_image_last_resolution_timestamp_seconds",
            "Unix time of the last successful resolution of the tools image (0: never); alert on time() minus it",
            tools_image_resolved_at.clone(),
        );
        let tools_image_unpinned_injections = Counter::default();
        registry.register(
            "tools_image_unpinned_injections",
            "Pods injected with the tools image by tag because no digest was known yet",
            tools_image_unpinned_injections.clone(),
        );
        let tools_image_missing_node_platforms = Family::<PlatformLabels, Gauge>::default();
        registry.register(
            "tools_image_missing_node_platforms",
            "1 for each platform of the cluster's nodes that the resolved tools image lacks",
            tools_image_missing_node_platforms.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed at once because the port's connection limit was reached",
            connections_refused.clone(),
        );
        let build = Family::<VersionLabels, Gauge>::default();
        build.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "The running version", build);
        Metrics {
            registry,
            requests,
            duration,
            warnings,
            certificate_expiry,
            certificate_reloads,
            ready,
            tools_image,
            tools_image_missing_platforms,
            tools_image_resolution_failures,
            tools_image_resolved_at,
            tools_image_unpinned_injections,
            tools_image_missing_node_platforms,
            connections_refused,
        }
    }
}

impl Metrics {
    /// OpenMetrics text, for scrapers that ask for it.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    /// The Prometheus text format (0.0.4), what a plain scrape and `promtool check metrics`
    /// expect: a counter's HELP and TYPE name its `_total` samples, and there is no `# EOF`.
    pub fn encode_prometheus(&self) -> String {
        let open_metrics = self.encode();
        let counters: BTreeSet<&str> =
            open_metrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
        let mut text = String::with_capacity(open_metrics.len());
        for line in open_metrics.lines() {
            let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
                let rest = line.strip_prefix(prefix)?;
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
            });
            match renamed {
                Some(line) => text.push_str(line.trim_end()),
                None if line == "# EOF" || line.starts_with("# UNIT ") => continue,
                None => text.push_str(line),
            }
            text.push('\n');
        }
        text
    }

    /// Creates the series of every known label value at zero, so that `rate()` and `absent()`
    /// alerts have something to work on before the first event.
    pub fn register_known(&self, requests: &[(&'static str, &'static str)], resolution_failures: &[&'static str]) {
        for &(outcome, reason) in requests {
            let _ = self.requests.get_or_create(&RequestLabels { outcome, reason });
        }
        for &reason in resolution_failures {
            let _ = self.tools_image_resolution_failures.get_or_create(&ReasonLabels { reason });
        }
        for result in ["success", "failure"] {
            let _ = self.certificate_reloads.get_or_create(&ResultLabels { result });
        }
    }

    /// Exports `digest` as the current one for `image`, dropping the previous series.
    pub fn set_tools_image(&self, image: &str, digest: &str) {
        self.tools_image.clear();
        self.tools_image.get_or_create(&ImageLabels { image: image.to_owned(), digest: digest.to_owned() }).set(1);
    }

    pub fn set_missing_platforms(&self, configured: &[String], missing: &[String]) {
        for platform in configured {
            let value = i64::from(missing.contains(platform));
            self.tools_image_missing_platforms.get_or_create(&PlatformLabels { platform: platform.clone() }).set(value);
        }
    }

    /// Exports which node platforms the image lacks; returns whether that changed.
    pub fn set_missing_node_platforms(&self, nodes: &BTreeSet<String>, missing: &[String]) -> bool {
        let mut changed = false;
        for platform in nodes {
            let value = i64::from(missing.contains(platform));
            let gauge =
                self.tools_image_missing_node_platforms.get_or_create(&PlatformLabels { platform: platform.clone() });
            changed |= gauge.set(value) != value;
        }
        changed
    }

    pub fn count_resolution_failure(&self, reason: &'static str) {
        self.tools_image_resolution_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn count_request(&self, outcome: &'static str, reason: &'static str) {
        self.requests.get_or_create(&RequestLabels { outcome, reason }).inc();
    }
}
