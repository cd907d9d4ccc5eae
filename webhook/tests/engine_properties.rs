//! Property tests of review-in, patch-out over generated pods: odd but legal shapes, names that
//! collide with ours, user variables and mounts at our paths, and junk in random places.
//! The libFuzzer targets in fuzz/ search the same ground from bytes; these run in every test run.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use dragonfly_injector::admission;
use dragonfly_injector::config::Config;
use dragonfly_injector::inject::{
    evaluate, evaluate_owned, undo, NamespaceLabels, Outcome, PodContext, Settings, SkipReason,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

fn settings(variant: u8) -> Settings {
    let yaml = match variant % 4 {
        0 => "",
        1 => {
            "proxy: {hostFrom: hostIP}\nsocket: {path: /var/run/dfdaemon.sock}\ntools: {imagePullSecrets: [regcred]}\n"
        }
        2 => "socket: {enabled: false}\ntransferFromDfdaemon: false\n",
        _ => "tools: {mountPath: /opt/df}\nexcludeNamespaces: []\n",
    };
    Settings::new(&Config::from_yaml(yaml).unwrap(), Some("dragonfly-system"))
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("app".to_owned()),
        Just("dragonfly-tools".to_owned()),
        Just("dragonfly-socket".to_owned()),
        Just("dragonfly-tools-2".to_owned()),
        "[a-z]{1,6}",
    ]
}

fn env_entry() -> impl Strategy<Value = Value> {
    let names = prop_oneof![
        Just("NODE_NAME"),
        Just("HOST_IP"),
        Just("DRAGONFLY_INJECT_PROXY"),
        Just("PATH"),
        Just("DFGET_TRANSFER_FROM_DFDAEMON"),
        Just("OTHER")
    ];
    (
        names,
        prop_oneof![
            "[ -~]{0,20}".prop_map(|v| json!({"value": v})),
            Just(json!({"valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})),
            Just(json!({"valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}})),
            Just(json!({})),
        ],
    )
        .prop_map(|(name, mut body)| {
            body["name"] = json!(name);
            body
        })
}

fn mount() -> impl Strategy<Value = Value> {
    (
        name(),
        prop_oneof![
            Just("/dragonfly/bin"),
            Just("/var/run/dragonfly"),
            Just("/opt/df"),
            Just("/data"),
            Just("/var/run/dfdaemon.sock")
        ],
    )
        .prop_map(|(name, path)| json!({"name": name, "mountPath": path}))
}

fn container() -> impl Strategy<Value = Value> {
    (
        name(),
        prop::option::of(prop_oneof![
            prop::collection::vec(env_entry(), 0..5).prop_map(Value::Array),
            Just(Value::Null)
        ]),
        prop::option::of(prop::collection::vec(mount(), 0..3)),
        prop::option::of(Just(json!({"futureField": [1, {"x": null}]}))),
    )
        .prop_map(|(name, env, mounts, extra)| {
            let mut container = json!({"name": name, "image": "img"});
            if let Some(env) = env {
                container["env"] = env;
            }
            if let Some(mounts) = mounts {
                container["volumeMounts"] = Value::Array(mounts);
            }
            if let Some(extra) = extra {
                container["extra"] = extra;
            }
            container
        })
}

fn unique_by_name(items: Vec<Value>) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    items.into_iter().filter(|c| seen.insert(c["name"].as_str().unwrap_or_default().to_owned())).collect()
}

fn annotations() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        Just(json!("true")),
        Just(json!("false")),
        Just(json!("app,zzz")),
        Just(json!("app")),
        Just(json!("65001")),
        Just(json!("x")),
        Just(json!(7)),
        "[ -~]{0,8}".prop_map(Value::String)
    ];
    let key = prop_oneof![
        Just("dragonfly.io/inject-p2p"),
        Just("dragonfly.io/inject"),
        Just("dragonfly.io/inject-containers"),
        Just("dragonfly.io/proxy-port"),
        Just("dragonfly.io/tools-image"),
        Just("dragonfly.io/skip-socket"),
        Just("dragonfly.io/injected"),
        Just("kubernetes.io/config.mirror"),
        Just("a~b/c"),
    ];
    (Just(()), prop::collection::btree_map(key, value, 0..5)).prop_map(|((), map)| {
        let mut annotations: Map<String, Value> = map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        annotations.entry("dragonfly.io/inject-p2p").or_insert(json!("true"));
        Value::Object(annotations)
    })
}

/// A pod in the shapes Kubernetes allows (and, with `junk`, some it does not).
fn pod() -> impl Strategy<Value = Value> {
    (
        annotations(),
        prop::collection::vec(container(), 1..4),
        prop::option::of(prop::collection::vec(container(), 0..3)),
        prop::option::of(prop::collection::vec(
            (name(), prop_oneof![Just(json!({"emptyDir": {}})), Just(json!({"configMap": {"name": "c"}}))]),
            0..4,
        )),
        prop::option::of(prop_oneof![Just(json!([{"name": "regcred"}])), Just(json!(null)), Just(json!([]))]),
        any::<bool>(),
    )
        .prop_map(|(annotations, containers, init, volumes, secrets, generate_name)| {
            // Kubernetes requires names unique across containers and init containers.
            let containers = unique_by_name(containers);
            let taken: BTreeSet<String> =
                containers.iter().filter_map(|c| c["name"].as_str().map(str::to_owned)).collect();
            let mut pod = json!({"metadata": {"annotations": annotations}, "spec": {"containers": containers}});
            pod["metadata"][if generate_name { "generateName" } else { "name" }] = json!("p");
            if let Some(init) = init {
                let init = init.into_iter().filter(|c| !taken.contains(c["name"].as_str().unwrap_or_default()));
                pod["spec"]["initContainers"] = Value::Array(unique_by_name(init.collect()));
            }
            if let Some(volumes) = volumes {
                let volumes = volumes.into_iter().map(|(name, mut body)| {
                    body["name"] = json!(name);
                    body
                });
                pod["spec"]["volumes"] = Value::Array(unique_by_name(volumes.collect()));
            }
            if let Some(secrets) = secrets {
                pod["spec"]["imagePullSecrets"] = secrets;
            }
            pod
        })
}

/// Replaces one field somewhere with an arbitrary value.
fn with_junk(pod: Value, path_index: usize, junk: Value) -> Value {
    let mut pod = pod;
    let paths = [
        "/spec/containers/0/env",
        "/spec/volumes",
        "/metadata/annotations",
        "/spec/initContainers",
        "/spec/containers/0/name",
        "/spec",
        "/metadata",
        "/spec/containers/0/volumeMounts",
    ];
    let path = paths[path_index % paths.len()];
    if let Some((parent, key)) = path.rsplit_once('/') {
        if let Some(Value::Object(map)) = pod.pointer_mut(parent) {
            map.insert(key.to_owned(), junk);
        }
    }
    pod
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::String)
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().map(|l| l.iter().filter_map(|i| i["name"].as_str()).collect()).unwrap_or_default()
}

fn check(pod: &Value, settings: &Settings, labels: &BTreeMap<String, String>) {
    let context = PodContext {
        namespace: "apps",
        namespace_labels: NamespaceLabels::Known(labels),
        tools_image: "registry.local/tools:v1",
    };
    let decision = evaluate(pod, &context, settings);
    // The admission path records against a skeleton of what it adds, and must say the same.
    let owned = evaluate_owned(pod.clone(), &context, settings);
    assert_eq!((&owned.outcome, &owned.ops, &owned.warnings), (&decision.outcome, &decision.ops, &decision.warnings));
    assert!(owned.patched.is_none());
    let (Outcome::Injected(_), Some(patched)) = (&decision.outcome, decision.patched) else {
        if decision.outcome == Outcome::Skipped(SkipReason::InvalidPod) {
            assert!(!decision.warnings.is_empty(), "an unreadable pod is explained");
        }
        return;
    };
    let patch: json_patch::Patch = serde_json::from_value(serde_json::to_value(&decision.ops).unwrap()).unwrap();
    let mut applied = pod.clone();
    json_patch::patch(&mut applied, &patch).expect("the patch applies");
    assert_eq!(applied, patched);

    let spec = &patched["spec"];
    let all: Vec<&str> = ["containers", "initContainers"].iter().flat_map(|k| names(&spec[*k])).collect();
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), all.len(), "container names stay unique: {all:?}");
    let volumes = names(&spec["volumes"]);
    assert_eq!(volumes.iter().collect::<BTreeSet<_>>().len(), volumes.len(), "volume names stay unique: {volumes:?}");
    for (index, container) in spec["containers"].as_array().unwrap().iter().enumerate() {
        let original = &pod["spec"]["containers"][index];
        for (key, value) in original.as_object().unwrap() {
            if key != "env" && key != "volumeMounts" {
                assert_eq!(&container[key], value, "container field {key} untouched");
            }
        }
        let paths: Vec<&str> = container["volumeMounts"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["mountPath"].as_str()).collect())
            .unwrap_or_default();
        let original_paths = original["volumeMounts"]
            .as_array()
            .map_or(0, |m| m.iter().filter_map(|m| m["mountPath"].as_str()).collect::<BTreeSet<_>>().len());
        let added = paths.len() - original["volumeMounts"].as_array().map_or(0, Vec::len);
        assert_eq!(
            paths.iter().collect::<BTreeSet<_>>().len(),
            original_paths + added,
            "no new mount path duplicates another"
        );
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            assert!(
                volumes.contains(&mount["name"].as_str().unwrap())
                    || original["volumeMounts"].as_array().unwrap().contains(mount),
                "mounts refer to volumes"
            );
        }
    }
    let again = evaluate(&patched, &context, settings);
    assert_eq!(again.outcome, Outcome::Unchanged, "second pass adds nothing: {:?}", again.ops);

    // `uninject` gives the pod back, up to null and empty lists and maps (which Kubernetes
    // treats as absent, and which undo removes).
    // An unreadable value the pod held under our own record's key is not restored.
    let mut undone = patched.clone();
    assert!(undo(&mut undone).is_some(), "an injected pod carries its record");
    let mut expected = pod.clone();
    if let Some(annotations) = expected.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        annotations.shift_remove("dragonfly.io/injected");
    }
    assert_eq!(without_empties(&undone), without_empties(&expected), "undo gives the pod back");
}

/// The value with null, empty lists and empty maps removed wherever they are members of an
/// object: Kubernetes reads all three as absent, and injection fills a null list.
fn without_empties(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), without_empties(v)))
                .filter(|(_, v)| match v {
                    Value::Null => false,
                    Value::Array(a) => !a.is_empty(),
                    Value::Object(o) => !o.is_empty(),
                    _ => true,
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_empties).collect()),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn generated_pods_inject_validly_and_idempotently(pod in pod(), variant in 0u8..4, baseline in any::<bool>()) {
        let mut labels = BTreeMap::new();
        if baseline {
            labels.insert("pod-security.kubernetes.io/enforce".to_owned(), "baseline".to_owned());
        }
        check(&pod, &settings(variant), &labels);
    }

    #[test]
    fn junk_anywhere_never_panics_or_yields_a_broken_patch(pod in pod(), at in 0usize..8, junk in arbitrary_json(), variant in 0u8..4) {
        check(&with_junk(pod, at, junk), &settings(variant), &BTreeMap::new());
    }

    #[test]
    fn any_bytes_or_json_get_an_answer_not_a_panic(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        arbitrary_json().prop_map(|object| serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "kind": "Pod"}, "operation": "CREATE", "namespace": "a", "object": object}
        })).unwrap()),
    ]) {
        let settings = settings(0);
        let tools = dragonfly_injector::inject::ToolsImage { reference: "t:1".into(), unpinned_warning: None };
        let _ = admission::review(&body, &settings, &tools, &|_| None);
    }
}
