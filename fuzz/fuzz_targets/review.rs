//! Any bytes as an AdmissionReview body: never a panic; a well-formed review gets a JSON
//! answer that allows the pod; a patch applies to the very pod it was computed for, changes no
//! field of the user's containers but their env and mounts, keeps every volume of the user's,
//! and a second pass over the patched pod changes nothing.
#![no_main]

use base64::Engine as _;
use dragonfly_injector::admission;
use dragonfly_injector::admission::wire::ReviewIn;
use dragonfly_injector::config::Config;
use dragonfly_injector::inject::{Settings, ToolsImage};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;

fn settings() -> &'static [Settings; 2] {
    static SETTINGS: OnceLock<[Settings; 2]> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let prepend = Config::from_yaml("tools: {path: prepend}\nsocket: {path: /run/df.sock}\n").unwrap();
        [Settings::new(&Config::default(), Some("dragonfly-system")), Settings::new(&prepend, None)]
    })
}

fn patch_of(body: &[u8]) -> Option<json_patch::Patch> {
    let answer: Value = serde_json::from_slice(body).expect("the answer is JSON");
    assert_eq!(answer["response"]["allowed"], true, "never refused");
    let patch = answer["response"]["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(patch).expect("the patch is base64");
    Some(serde_json::from_slice(&bytes).expect("the patch is a JSON Patch"))
}

fn names(list: &Value) -> Vec<&Value> {
    list.as_array().map(|items| items.iter().collect()).unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let settings = &settings()[data.len() % 2];
    let tools = ToolsImage { reference: "registry.local/tools:v1".into(), unpinned_warning: None };
    let Ok(reviewed) = admission::review(data, settings, &tools, &|_| None) else { return };
    let Some(patch) = patch_of(&reviewed.body) else { return };
    // The pod as the webhook read it (fields it skips may hold JSON that a full parse refuses).
    let read: ReviewIn = serde_json::from_slice(data).expect("a reviewed body parses as a review");
    let request = read.request.expect("a reviewed body has a request");
    let original = request.object.expect("a patched review carries a pod").0;
    let mut pod = original.clone();
    json_patch::patch(&mut pod, &patch).expect("the patch applies to the pod it was computed for");
    for (index, container) in names(&original["spec"]["containers"]).into_iter().enumerate() {
        let patched = &pod["spec"]["containers"][index];
        for (key, value) in container.as_object().into_iter().flatten() {
            if key != "env" && key != "volumeMounts" {
                assert_eq!(&patched[key], value, "container field {key} untouched");
            }
        }
    }
    for volume in names(&original["spec"]["volumes"]) {
        assert!(names(&pod["spec"]["volumes"]).contains(&volume), "the user's volumes stay");
    }
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": request.uid,
            "kind": {"group": "", "kind": "Pod"},
            "namespace": request.namespace,
            "operation": "CREATE",
            "object": pod,
        },
    });
    let again = admission::review(&serde_json::to_vec(&review).unwrap(), settings, &tools, &|_| None)
        .expect("the patched review is still a review");
    assert!(patch_of(&again.body).is_none(), "a second pass changes nothing");
});
