//! Whether a pod is injected at all, and every reason it is not: the request first (only a
//! Pod's own CREATE, with the pod in it), then exclusions, the pod's own opt-in or opt-out, its
//! namespace's label, and last whether the engine can read the pod's shape.

use super::{keys, shape};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

/// Why a pod was left alone. The label is a metrics label: keep the set small and fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    NotPod,
    Subresource,
    Operation,
    ExcludedNamespace,
    MirrorPod,
    Windows,
    OptedOut,
    NotOptedIn,
    InvalidPod,
    /// More to inject than `limits` allow.
    OverLimit,
}

crate::labels::metric_labels!(SkipReason {
    NotPod => "not_pod",
    Subresource => "subresource",
    Operation => "operation",
    ExcludedNamespace => "excluded_namespace",
    MirrorPod => "mirror_pod",
    Windows => "windows",
    OptedOut => "opted_out",
    NotOptedIn => "not_opted_in",
    InvalidPod => "invalid_pod",
    OverLimit => "over_limit",
});

/// What is known about the pod's namespace. Without cluster access the labels are unknown:
/// namespace opt-in and the Pod Security check are then off.
#[derive(Debug, Clone, Copy)]
pub enum NamespaceLabels<'a> {
    Unknown,
    Known(&'a BTreeMap<String, String>),
}

impl<'a> NamespaceLabels<'a> {
    pub fn get(&self, key: &str) -> Option<&'a str> {
        match self {
            NamespaceLabels::Unknown => None,
            NamespaceLabels::Known(labels) => labels.get(key).map(String::as_str),
        }
    }

    pub fn opted_in(&self) -> bool {
        matches!(self.get(keys::INJECT), Some("enabled" | "true")) || self.get(keys::LEGACY_INJECT) == Some("true")
    }

    /// Pod Security `baseline` and `restricted` reject hostPath volumes. The check runs after
    /// mutation, so injecting the socket there would make the pod (or its ReplicaSet) fail.
    pub fn forbids_host_path(&self) -> bool {
        matches!(self.get(keys::POD_SECURITY_ENFORCE), Some("baseline" | "restricted"))
    }
}

/// What the API server asks about, as the admission request states it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// The kind is the core group's `Pod`.
    pub is_pod: bool,
    pub sub_resource: Option<&'a str>,
    pub operation: Option<&'a str>,
}

/// The request-level half of the decision: the pod to decide about, or why not.
pub fn check_request(
    facts: RequestFacts<'_>,
    object: Option<Value>,
    warnings: &mut Vec<String>,
) -> Result<Value, SkipReason> {
    if !facts.is_pod {
        Err(SkipReason::NotPod)
    } else if facts.sub_resource.is_some_and(|s| !s.is_empty()) {
        Err(SkipReason::Subresource)
    } else if facts.operation != Some("CREATE") {
        Err(SkipReason::Operation)
    } else {
        object.ok_or_else(|| {
            warnings.push("the request carries no pod object; not injected".to_owned());
            SkipReason::InvalidPod
        })
    }
}

/// A pod the engine cannot read or patch (`why` says where): left alone, with a warning.
pub fn unreadable(why: &dyn Display, warnings: &mut Vec<String>) -> SkipReason {
    warnings.push(format!("the pod could not be read ({why}); not injected"));
    SkipReason::InvalidPod
}

/// `count` of `what` is beyond `limit` (`limits.<key>` in the config): the pod is admitted as it
/// is, with a warning, rather than patched in part.
pub fn over_limit(
    what: &str,
    count: usize,
    limit: usize,
    key: &str,
    warnings: &mut Vec<String>,
) -> Result<(), SkipReason> {
    if count <= limit {
        return Ok(());
    }
    warnings.push(format!(
        "the pod would need {count} {what}, more than the injector's limit of {limit} (limits.{key}); not injected"
    ));
    Err(SkipReason::OverLimit)
}

pub fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a Value> {
    pod.get("metadata")?.get("annotations")?.get(key)
}

/// Decides whether to inject. Warnings about unreadable opt-in values are pushed to `warnings`.
pub fn decide(
    pod: &Value,
    namespace: &str,
    labels: NamespaceLabels<'_>,
    excluded: &BTreeSet<String>,
    warnings: &mut Vec<String>,
) -> Result<(), SkipReason> {
    opted_in(pod, namespace, labels, excluded, warnings)?;
    shape::check_pod_shape(pod).map_err(|why| unreadable(&why, warnings))
}

fn opted_in(
    pod: &Value,
    namespace: &str,
    labels: NamespaceLabels<'_>,
    excluded: &BTreeSet<String>,
    warnings: &mut Vec<String>,
) -> Result<(), SkipReason> {
    if excluded.contains(namespace) {
        return Err(SkipReason::ExcludedNamespace);
    }
    if annotation(pod, keys::MIRROR_POD).is_some() {
        return Err(SkipReason::MirrorPod);
    }
    let spec = pod.get("spec");
    let node_os = spec.and_then(|s| s.get("nodeSelector")).and_then(|s| s.get(keys::NODE_OS));
    let pod_os = spec.and_then(|s| s.get("os")).and_then(|os| os.get("name"));
    if [node_os, pod_os].into_iter().flatten().any(|os| os == "windows") || affinity_excludes_linux(spec) {
        return Err(SkipReason::Windows);
    }
    // The current key wins over the Go injector's when both are set.
    for key in [keys::INJECT, keys::LEGACY_INJECT] {
        match annotation(pod, key) {
            None => continue,
            Some(Value::String(value)) if value == "true" => return Ok(()),
            Some(Value::String(value)) if value == "false" => return Err(SkipReason::OptedOut),
            Some(other) => {
                warnings.push(format!("annotation {key}={other} is neither \"true\" nor \"false\"; ignored"));
            }
        }
    }
    if labels.opted_in() {
        Ok(())
    } else {
        Err(SkipReason::NotOptedIn)
    }
}

/// Whether the pod's required node affinity lets it land only on nodes that are not Linux: every
/// term (terms are ORed) has an expression on `kubernetes.io/os` that rules Linux out (`In`
/// without `linux`, or `NotIn` with it).
fn affinity_excludes_linux(spec: Option<&Value>) -> bool {
    let terms = spec
        .and_then(|s| {
            super::patch::walk(
                s,
                "/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms",
            )
        })
        .and_then(Value::as_array);
    let Some(terms) = terms.filter(|t| !t.is_empty()) else { return false };
    terms.iter().all(|term| {
        term.get("matchExpressions").and_then(Value::as_array).is_some_and(|expressions| {
            expressions.iter().any(|e| {
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                e.get("key").and_then(Value::as_str) == Some(keys::NODE_OS)
                    && match e.get("operator").and_then(Value::as_str) {
                        Some("In") => !values.contains(&"linux"),
                        Some("NotIn") => values.contains(&"linux"),
                        _ => false,
                    }
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A readable pod (one container unless `spec` names its own) with these annotations.
    fn pod_with(annotations: Value, mut spec: Value) -> Value {
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "app"}]);
        }
        json!({"metadata": {"annotations": annotations}, "spec": spec})
    }

    fn run(pod: &Value, namespace: &str, labels: &[(&str, &str)]) -> (Result<(), SkipReason>, Vec<String>) {
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let excluded = BTreeSet::from(["kube-system".to_owned()]);
        let mut warnings = Vec::new();
        let decision = decide(pod, namespace, NamespaceLabels::Known(&labels), &excluded, &mut warnings);
        (decision, warnings)
    }

    #[test]
    fn pod_annotation_opts_in_and_out() {
        let yes = pod_with(json!({"dragonfly.io/inject-p2p": "true"}), json!({}));
        assert_eq!(run(&yes, "default", &[]).0, Ok(()));
        let no = pod_with(json!({"dragonfly.io/inject-p2p": "false"}), json!({}));
        assert_eq!(run(&no, "default", &[("dragonfly.io/inject-p2p", "enabled")]).0, Err(SkipReason::OptedOut));
        let plain = pod_with(json!({}), json!({}));
        assert_eq!(run(&plain, "default", &[]).0, Err(SkipReason::NotOptedIn));
    }

    #[test]
    fn namespace_label_opts_in() {
        let plain = pod_with(json!(null), json!({}));
        assert_eq!(run(&plain, "apps", &[("dragonfly.io/inject-p2p", "enabled")]).0, Ok(()));
        assert_eq!(run(&plain, "apps", &[("dragonfly.io/inject-p2p", "true")]).0, Ok(()));
        assert_eq!(run(&plain, "apps", &[("dragonfly.io/inject", "true")]).0, Ok(()));
        assert_eq!(run(&plain, "apps", &[("dragonfly.io/inject-p2p", "disabled")]).0, Err(SkipReason::NotOptedIn));
        let labels = BTreeMap::new();
        let mut warnings = Vec::new();
        let unknown = decide(&plain, "apps", NamespaceLabels::Unknown, &BTreeSet::new(), &mut warnings);
        assert_eq!(unknown, Err(SkipReason::NotOptedIn));
        assert!(!NamespaceLabels::Known(&labels).opted_in());
    }

    #[test]
    fn pods_that_can_only_land_on_windows_by_required_affinity_are_skipped() {
        let yes = json!({"dragonfly.io/inject-p2p": "true"});
        let term = |operator: &str, values: Value| json!({"matchExpressions": [{"key": "kubernetes.io/os", "operator": operator, "values": values}]});
        let with_terms = |terms: Vec<Value>| {
            pod_with(
                yes.clone(),
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
            )
        };
        assert_eq!(run(&with_terms(vec![term("In", json!(["windows"]))]), "default", &[]).0, Err(SkipReason::Windows));
        assert_eq!(run(&with_terms(vec![term("NotIn", json!(["linux"]))]), "default", &[]).0, Err(SkipReason::Windows));
        // Another term could still choose Linux, or the expression allows it: injected.
        let either = with_terms(vec![term("In", json!(["windows"])), term("In", json!(["linux"]))]);
        assert_eq!(run(&either, "default", &[]).0, Ok(()));
        assert_eq!(run(&with_terms(vec![term("In", json!(["linux", "windows"]))]), "default", &[]).0, Ok(()));
        let other_key =
            with_terms(vec![json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]})]);
        assert_eq!(run(&other_key, "default", &[]).0, Ok(()));
        assert_eq!(run(&with_terms(vec![]), "default", &[]).0, Ok(()));
    }

    #[test]
    fn legacy_key_works_and_the_new_key_wins() {
        let legacy = pod_with(json!({"dragonfly.io/inject": "true"}), json!({}));
        assert_eq!(run(&legacy, "default", &[]).0, Ok(()));
        let both = pod_with(json!({"dragonfly.io/inject": "true", "dragonfly.io/inject-p2p": "false"}), json!({}));
        assert_eq!(run(&both, "default", &[]).0, Err(SkipReason::OptedOut));
    }

    #[test]
    fn unreadable_opt_in_values_warn_and_fall_back_to_the_namespace() {
        let odd = pod_with(json!({"dragonfly.io/inject-p2p": "yes"}), json!({}));
        let (decision, warnings) = run(&odd, "default", &[]);
        assert_eq!(decision, Err(SkipReason::NotOptedIn));
        assert!(warnings[0].contains("dragonfly.io/inject-p2p=\"yes\""), "{warnings:?}");
        let (decision, _) = run(&odd, "apps", &[("dragonfly.io/inject-p2p", "enabled")]);
        assert_eq!(decision, Ok(()));
    }

    #[test]
    fn exclusions_win_over_opt_in() {
        let yes = json!({"dragonfly.io/inject-p2p": "true"});
        assert_eq!(run(&pod_with(yes.clone(), json!({})), "kube-system", &[]).0, Err(SkipReason::ExcludedNamespace));
        let mut mirror = yes.clone();
        mirror["kubernetes.io/config.mirror"] = json!("abc");
        assert_eq!(run(&pod_with(mirror, json!({})), "default", &[]).0, Err(SkipReason::MirrorPod));
        let windows = pod_with(yes.clone(), json!({"nodeSelector": {"kubernetes.io/os": "windows"}}));
        assert_eq!(run(&windows, "default", &[]).0, Err(SkipReason::Windows));
        let windows_os = pod_with(yes, json!({"os": {"name": "windows"}}));
        assert_eq!(run(&windows_os, "default", &[]).0, Err(SkipReason::Windows));
    }

    #[test]
    fn an_opted_in_pod_the_engine_cannot_read_is_skipped_with_the_reason() {
        let yes = json!({"dragonfly.io/inject-p2p": "true"});
        let (decision, warnings) = run(&pod_with(yes.clone(), json!({"containers": []})), "default", &[]);
        assert_eq!(decision, Err(SkipReason::InvalidPod));
        assert!(
            warnings[0].contains("spec.containers is empty") && warnings[0].ends_with("not injected"),
            "{warnings:?}"
        );
        // Not opted in: its shape is none of the injector's business.
        let (decision, warnings) = run(&pod_with(json!({}), json!({"containers": 5})), "default", &[]);
        assert_eq!((decision, warnings.len()), (Err(SkipReason::NotOptedIn), 0));
    }

    #[test]
    fn only_a_pods_own_create_with_the_pod_in_it_goes_on() {
        let pod = || Some(json!({"spec": {}}));
        let create = RequestFacts { is_pod: true, sub_resource: None, operation: Some("CREATE") };
        let mut warnings = Vec::new();
        assert!(check_request(create, pod(), &mut warnings).is_ok());
        assert!(check_request(RequestFacts { sub_resource: Some(""), ..create }, pod(), &mut warnings).is_ok());
        let mut skipped = |facts, object| check_request(facts, object, &mut warnings).unwrap_err();
        assert_eq!(skipped(RequestFacts { is_pod: false, ..create }, pod()), SkipReason::NotPod);
        assert_eq!(skipped(RequestFacts { sub_resource: Some("binding"), ..create }, pod()), SkipReason::Subresource);
        assert_eq!(skipped(RequestFacts { operation: Some("UPDATE"), ..create }, pod()), SkipReason::Operation);
        assert_eq!(skipped(RequestFacts { operation: None, ..create }, pod()), SkipReason::Operation);
        assert_eq!(skipped(create, None), SkipReason::InvalidPod);
        assert_eq!(warnings, ["the request carries no pod object; not injected"]);
    }

    #[test]
    fn pod_security_levels_that_forbid_host_path() {
        for (level, forbids) in [("privileged", false), ("baseline", true), ("restricted", true)] {
            let labels = BTreeMap::from([(keys::POD_SECURITY_ENFORCE.to_owned(), level.to_owned())]);
            assert_eq!(NamespaceLabels::Known(&labels).forbids_host_path(), forbids, "{level}");
        }
        assert!(!NamespaceLabels::Unknown.forbids_host_path());
    }
}
