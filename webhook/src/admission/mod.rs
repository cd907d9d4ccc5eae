//! One AdmissionReview in, one out. Pure: the namespace labels come from a lookup the caller
//! provides (the watch cache in the server, command-line labels in `inject`).

pub mod wire;

use crate::inject::{self, Decision, NamespaceLabels, Outcome, PodContext, RequestFacts, Settings, ToolsImage};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use wire::ReviewIn;

/// Prefix of every warning returned to the API server (kubectl prints them to the user).
pub const WARNING_PREFIX: &str = "dragonfly-injector: ";

/// A request that is not a usable AdmissionReview: answered with HTTP 400 and this message.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("body is not an AdmissionReview ({0})")]
    NotAdmissionReview(String),
    #[error("unsupported AdmissionReview apiVersion {0:?}; this webhook speaks admission.k8s.io/v1")]
    UnsupportedVersion(String),
    #[error("AdmissionReview has no request")]
    MissingRequest,
    #[error("AdmissionReview request has no uid")]
    MissingUid,
}

crate::labels::metric_labels!(ReviewError {
    NotJson => "not_json",
    NotAdmissionReview => "not_admission_review",
    UnsupportedVersion => "unsupported_version",
    MissingRequest => "missing_request",
    MissingUid => "missing_uid",
});

/// What happened, for the log line and the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub uid: String,
    pub namespace: String,
    /// `metadata.name`, or `generateName` for pods from controllers.
    pub pod: String,
    pub outcome: Outcome,
    pub warnings: Vec<String>,
    pub dry_run: bool,
    /// Injected with a tag because no digest was known yet.
    pub unpinned: bool,
}

pub struct Reviewed {
    pub body: Vec<u8>,
    pub summary: Summary,
}

/// Answers a namespace's labels, or `None` when they are unknown (no cluster access).
pub type LabelsOf<'a> = dyn Fn(&str) -> Option<Arc<BTreeMap<String, String>>> + 'a;

/// Reviews one AdmissionReview body, looking namespaces' labels up with `labels_of`.
pub fn review(
    body: &[u8],
    settings: &Settings,
    tools_image: &ToolsImage,
    labels_of: &LabelsOf<'_>,
) -> Result<Reviewed, ReviewError> {
    let review: ReviewIn = serde_json::from_slice(body).map_err(ReviewError::NotJson)?;
    match review.kind.as_deref() {
        Some(wire::KIND) => {}
        Some(other) => return Err(ReviewError::NotAdmissionReview(format!("kind {other:?}"))),
        None => return Err(ReviewError::NotAdmissionReview("no kind".into())),
    }
    match review.api_version.as_deref() {
        Some(wire::API_VERSION) => {}
        other => return Err(ReviewError::UnsupportedVersion(other.unwrap_or_default().to_owned())),
    }
    let request = review.request.ok_or(ReviewError::MissingRequest)?;
    let uid = request.uid.filter(|uid| !uid.is_empty()).ok_or(ReviewError::MissingUid)?;

    let object = request.object.map(|object| object.0);
    let metadata = object.as_ref().and_then(|o| o.get("metadata"));
    let text = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Value::as_str).map(str::to_owned);
    let pod = text("name").or_else(|| text("generateName")).unwrap_or_default();
    // Pods created by controllers carry no metadata.namespace at admission time.
    let namespace = request.namespace.filter(|ns| !ns.is_empty()).or_else(|| text("namespace")).unwrap_or_default();

    let facts = RequestFacts {
        is_pod: request.kind.as_ref().is_some_and(|k| k.group.is_empty() && k.kind == "Pod"),
        sub_resource: request.sub_resource.as_deref(),
        operation: request.operation.as_deref(),
    };
    let mut warnings = Vec::new();
    let mut decision = match inject::check_request(facts, object, &mut warnings) {
        Err(reason) => Decision::skipped(reason, warnings),
        Ok(pod) => {
            let labels = labels_of(&namespace);
            let namespace_labels = labels.as_deref().map_or(NamespaceLabels::Unknown, NamespaceLabels::Known);
            let context = PodContext { namespace: &namespace, namespace_labels, tools_image: &tools_image.reference };
            inject::evaluate_owned(pod, &context, settings)
        }
    };
    let mut patch = None;
    if matches!(decision.outcome, Outcome::Injected(_)) {
        let json = serde_json::to_vec(&decision.ops).expect("patch operations serialise");
        let limit = settings.limits.patch_bytes.0;
        match inject::over_limit("bytes of patch", json.len(), limit, "patchBytes", &mut decision.warnings) {
            Ok(()) => patch = Some(json),
            Err(reason) => decision.outcome = Outcome::Skipped(reason),
        }
    }
    drop(decision.ops);
    let injected = patch.is_some();
    let unpinned = injected && tools_image.unpinned_warning.is_some();
    if let Some(warning) = tools_image.unpinned_warning.as_ref().filter(|_| injected) {
        decision.warnings.push(warning.clone());
    }
    let warnings = decision.warnings;
    let prefixed: Vec<String> = warnings.iter().map(|w| format!("{WARNING_PREFIX}{w}")).collect();
    let body = wire::response_body(&uid, patch.as_deref(), &prefixed);
    let dry_run = request.dry_run.unwrap_or(false);
    let summary = Summary { uid, namespace, pod, outcome: decision.outcome, warnings, dry_run, unpinned };
    Ok(Reviewed { body, summary })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use base64::Engine as _;
    use serde_json::json;

    fn settings() -> Settings {
        Settings::new(&Config::default(), Some("dragonfly-system"))
    }

    fn tag() -> ToolsImage {
        ToolsImage { reference: "t:1".into(), unpinned_warning: None }
    }

    fn no_cluster(_: &str) -> Option<Arc<BTreeMap<String, String>>> {
        None
    }

    fn review_json(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}))
            .unwrap()
    }

    fn pod_request(pod: Value) -> Value {
        json!({
            "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "apps", "operation": "CREATE", "object": pod,
        })
    }

    #[test]
    fn malformed_reviews_are_refused_with_a_reason() {
        let cases: [(&[u8], &str); 6] = [
            (b"not json", "not_json"),
            (br#"{"kind": "Pod", "apiVersion": "v1"}"#, "not_admission_review"),
            (
                br#"{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}}"#,
                "unsupported_version",
            ),
            (br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#, "missing_request"),
            (
                br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": ""}}"#,
                "missing_uid",
            ),
            (br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 5}}"#, "not_json"),
        ];
        for (body, label) in cases {
            let error = review(body, &settings(), &tag(), &no_cluster).err().expect("refused");
            assert_eq!(error.label(), label, "{error}");
            assert!(ReviewError::LABELS.contains(&label));
            assert!(!error.to_string().contains('\n'));
        }
    }

    #[test]
    fn non_pods_subresources_and_updates_are_allowed_without_a_patch() {
        let pod = json!({"metadata": {"annotations": {"dragonfly.io/inject-p2p": "true"}}, "spec": {"containers": [{"name": "a"}]}});
        let mut deployment = pod_request(pod.clone());
        deployment["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
        let mut binding = pod_request(pod.clone());
        binding["subResource"] = json!("binding");
        let mut update = pod_request(pod);
        update["operation"] = json!("UPDATE");
        for (request, reason) in [(deployment, "not_pod"), (binding, "subresource"), (update, "operation")] {
            let reviewed = review(&review_json(request), &settings(), &tag(), &no_cluster).unwrap();
            assert_eq!(reviewed.summary.outcome.reason(), reason);
            let out: Value = serde_json::from_slice(&reviewed.body).unwrap();
            assert_eq!(out["response"], json!({"uid": "u-1", "allowed": true}));
        }
    }

    #[test]
    fn an_injected_pod_gets_a_base64_json_patch_and_the_request_namespace() {
        let pod = json!({"metadata": {"generateName": "web-", "annotations": {"dragonfly.io/inject-p2p": "true"}}, "spec": {"containers": [{"name": "a"}]}});
        let reviewed = review(&review_json(pod_request(pod)), &settings(), &tag(), &no_cluster).unwrap();
        let out: Value = serde_json::from_slice(&reviewed.body).unwrap();
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(out["response"]["uid"], "u-1");
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        let patch =
            base64::engine::general_purpose::STANDARD.decode(out["response"]["patch"].as_str().unwrap()).unwrap();
        let ops: Vec<Value> = serde_json::from_slice(&patch).unwrap();
        assert!(!ops.is_empty());
        assert_eq!(reviewed.summary.namespace, "apps");
        assert_eq!(reviewed.summary.pod, "web-");
        assert_eq!(reviewed.summary.outcome.label(), "injected");
    }

    #[test]
    fn namespace_labels_come_from_the_lookup_and_warnings_are_prefixed() {
        let pod = json!({"metadata": {"name": "p", "annotations": {"dragonfly.io/proxy-port": "x"}}, "spec": {"containers": [{"name": "a"}]}});
        let labels = Arc::new(BTreeMap::from([
            ("dragonfly.io/inject-p2p".to_owned(), "enabled".to_owned()),
            ("pod-security.kubernetes.io/enforce".to_owned(), "baseline".to_owned()),
        ]));
        let lookup = |namespace: &str| (namespace == "apps").then(|| labels.clone());
        let reviewed = review(&review_json(pod_request(pod)), &settings(), &tag(), &lookup).unwrap();
        let out: Value = serde_json::from_slice(&reviewed.body).unwrap();
        let warnings: Vec<&str> =
            out["response"]["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().all(|w| w.starts_with(WARNING_PREFIX)));
        assert!(warnings.iter().any(|w| w.contains("dragonfly.io/proxy-port")));
        assert!(warnings.iter().any(|w| w.contains("baseline")));
    }

    #[test]
    fn an_unpinned_tools_image_adds_its_warning_to_injected_pods_only() {
        let tools = ToolsImage { reference: "r.io/t:v1".into(), unpinned_warning: Some("not pinned yet".into()) };
        let opted_in = json!({"metadata": {"annotations": {"dragonfly.io/inject-p2p": "true"}}, "spec": {"containers": [{"name": "a"}]}});
        let reviewed = review(&review_json(pod_request(opted_in)), &settings(), &tools, &no_cluster).unwrap();
        assert!(reviewed.summary.unpinned);
        let out: Value = serde_json::from_slice(&reviewed.body).unwrap();
        assert_eq!(out["response"]["warnings"], json!(["dragonfly-injector: not pinned yet"]));
        let plain = json!({"spec": {"containers": [{"name": "a"}]}});
        let reviewed = review(&review_json(pod_request(plain)), &settings(), &tools, &no_cluster).unwrap();
        assert!(!reviewed.summary.unpinned);
        assert!(!String::from_utf8(reviewed.body).unwrap().contains("warnings"));
    }

    #[test]
    fn a_patch_beyond_the_byte_limit_is_not_sent_and_the_pod_is_allowed() {
        let pod = json!({"metadata": {"annotations": {"dragonfly.io/inject-p2p": "true"}}, "spec": {"containers": [{"name": "a"}]}});
        let settings = Settings::new(&Config::from_yaml("limits: {patchBytes: 500}\n").unwrap(), None);
        let reviewed = review(&review_json(pod_request(pod)), &settings, &tag(), &no_cluster).unwrap();
        assert_eq!(reviewed.summary.outcome, Outcome::Skipped(inject::SkipReason::OverLimit));
        let out: Value = serde_json::from_slice(&reviewed.body).unwrap();
        assert_eq!(out["response"]["allowed"], true);
        assert!(out["response"].get("patch").is_none() && out["response"].get("patchType").is_none());
        let warning = out["response"]["warnings"][0].as_str().unwrap();
        assert!(warning.contains("bytes of patch") && warning.contains("limits.patchBytes"), "{warning}");
    }

    #[test]
    fn a_pod_request_without_an_object_is_allowed_with_a_warning() {
        let mut request = pod_request(Value::Null);
        request.as_object_mut().unwrap().remove("object");
        let reviewed = review(&review_json(request), &settings(), &tag(), &no_cluster).unwrap();
        assert_eq!(reviewed.summary.outcome, Outcome::Skipped(inject::SkipReason::InvalidPod));
        let out: Value = serde_json::from_slice(&reviewed.body).unwrap();
        assert!(out["response"].get("patch").is_none());
        assert_eq!(out["response"]["allowed"], true);
    }
}
