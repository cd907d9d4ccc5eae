//! Scenario tests of the whole engine. Each one applies the returned patch to the original pod
//! with an independent JSON Patch implementation, checks the result, and runs a second pass.

use super::*;
use crate::config::Config;
use serde_json::json;
use std::collections::BTreeMap;

const IMAGE: &str = "registry.local/tools:v1";

fn settings_from(yaml: &str) -> Settings {
    Settings::new(&Config::from_yaml(yaml).unwrap(), Some("dragonfly-system"))
}

fn annotated(spec: Value) -> Value {
    json!({"metadata": {"name": "web", "annotations": {"dragonfly.io/inject-p2p": "true"}}, "spec": spec})
}

struct Run {
    ops: Vec<PatchOp>,
    patched: Value,
    status: Status,
    warnings: Vec<String>,
}

fn run_with(pod: &Value, namespace: &str, labels: &[(&str, &str)], settings: &Settings) -> Decision {
    let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let context = PodContext { namespace, namespace_labels: NamespaceLabels::Known(&labels), tools_image: IMAGE };
    evaluate(pod, &context, settings)
}

/// Injects, checks the patch against an independent implementation, and checks idempotence.
fn inject_in(pod: &Value, labels: &[(&str, &str)], settings: &Settings) -> Run {
    let decision = run_with(pod, "apps", labels, settings);
    let (Outcome::Injected(status), Some(patched)) = (decision.outcome.clone(), decision.patched) else {
        panic!("expected injection, got {:?} {:?}", decision.outcome, decision.warnings);
    };
    let ops = decision.ops;
    let patch: json_patch::Patch = serde_json::from_value(serde_json::to_value(&ops).unwrap()).unwrap();
    let mut applied = pod.clone();
    json_patch::patch(&mut applied, &patch).expect("the patch applies to the original");
    assert_eq!(applied, patched, "the patch reproduces the engine's result");

    let again = run_with(&patched, "apps", labels, settings);
    assert_eq!(again.outcome, Outcome::Unchanged, "second pass must be empty: {:?}", again.ops);
    assert!(again.ops.is_empty() && again.patched.is_none());
    Run { ops, patched, status, warnings: decision.warnings }
}

fn inject(pod: &Value) -> Run {
    inject_in(pod, &[], &settings_from(""))
}

fn env_names(container: &Value) -> Vec<&str> {
    container["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect()
}

#[test]
fn an_annotated_pod_gets_every_part() {
    let run = inject(&annotated(json!({"containers": [{"name": "app", "image": "nginx"}]})));
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    let spec = &run.patched["spec"];
    let app = &spec["containers"][0];
    // The node's IP (routes wherever dfdaemon runs on the host network); no PATH, so the
    // image's own stays; each tool on the default PATH instead.
    assert_eq!(env_names(app), ["HOST_IP", "DRAGONFLY_INJECT_PROXY", "DFGET_TRANSFER_FROM_DFDAEMON"]);
    assert_eq!(app["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "status.hostIP");
    assert_eq!(app["env"][1]["value"], "http://$(HOST_IP):4001");
    assert_eq!(app["env"][2]["value"], "true");
    let link = |tool: &str| json!({"name": "dragonfly-tools", "mountPath": format!("/usr/local/bin/{tool}"), "subPath": tool, "readOnly": true});
    assert_eq!(
        app["volumeMounts"],
        json!([
            {"name": "dragonfly-socket", "mountPath": "/var/run/dragonfly", "readOnly": true},
            {"name": "dragonfly-tools", "mountPath": "/dragonfly/bin", "readOnly": true},
            link("dfget"), link("dfcache"), link("dfstore"), link("dfctl"),
        ])
    );
    assert_eq!(
        spec["volumes"],
        json!([
            {"name": "dragonfly-tools", "emptyDir": {}},
            {"name": "dragonfly-socket", "hostPath": {"path": "/var/run/dragonfly", "type": "DirectoryOrCreate"}},
        ])
    );
    let init = &spec["initContainers"][0];
    assert_eq!(init["name"], "dragonfly-tools");
    assert_eq!(init["image"], IMAGE);
    assert_eq!(init["args"], json!(["--to", "/dragonfly/bin"]));
    assert_eq!(init["volumeMounts"], json!([{"name": "dragonfly-tools", "mountPath": "/dragonfly/bin"}]));
    let security = &init["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert!(security.get("runAsUser").is_none() && security.get("runAsGroup").is_none(), "the image's user applies");
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        init["resources"],
        json!({"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}})
    );
    let status: Status =
        serde_json::from_str(run.patched["metadata"]["annotations"]["dragonfly.io/injected"].as_str().unwrap())
            .unwrap();
    assert_eq!(status, run.status);
    assert_eq!(status.containers, ["app"]);
    assert_eq!(status.parts(), "proxy,socket,tools");
    assert!(run
        .ops
        .iter()
        .any(|op| matches!(op, PatchOp::Add { path, .. } if path == "/metadata/annotations/dragonfly.io~1injected")));
}

#[test]
fn the_tools_init_container_goes_before_the_users() {
    let run = inject(&annotated(json!({
        "initContainers": [{"name": "migrate", "image": "app"}],
        "containers": [{"name": "app"}],
    })));
    let names: Vec<&str> =
        run.patched["spec"]["initContainers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dragonfly-tools", "migrate"]);
}

#[test]
fn a_pod_without_annotations_or_namespace_is_injected_from_its_namespace_label() {
    // As a ReplicaSet creates it: no metadata.namespace, no annotations at all.
    let pod = json!({"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "app"}]}});
    let run = inject_in(&pod, &[("dragonfly.io/inject-p2p", "enabled")], &settings_from(""));
    assert!(run.patched["metadata"]["annotations"]["dragonfly.io/injected"].is_string());
    assert!(run.ops.iter().any(|op| matches!(op, PatchOp::Add { path, .. } if path == "/metadata/annotations")));
}

#[test]
fn host_ip_mode_and_the_port_annotation_shape_the_proxy_url() {
    let settings = settings_from("proxy: {hostFrom: hostIP, envName: P2P_PROXY}\n");
    let mut pod = annotated(json!({"containers": [{"name": "app"}]}));
    pod["metadata"]["annotations"]["dragonfly.io/proxy-port"] = json!("65001");
    let run = inject_in(&pod, &[], &settings);
    let app = &run.patched["spec"]["containers"][0];
    assert_eq!(
        app["env"][0],
        json!({"name": "HOST_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.hostIP"}}})
    );
    assert_eq!(app["env"][1], json!({"name": "P2P_PROXY", "value": "http://$(HOST_IP):65001"}));
}

#[test]
fn a_socket_in_a_shared_directory_is_mounted_as_a_file_with_a_warning() {
    let run = inject_in(
        &annotated(json!({"containers": [{"name": "app"}]})),
        &[],
        &settings_from("socket: {path: /var/run/dfdaemon.sock}\n"),
    );
    let socket = run.patched["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "dragonfly-socket")
        .unwrap()
        .clone();
    assert_eq!(socket["hostPath"], json!({"path": "/var/run/dfdaemon.sock", "type": "Socket"}));
    // The Go client's socket appears where dfget looks by default.
    assert_eq!(
        run.patched["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/run/dragonfly/dfdaemon.sock"
    );
    assert!(run.warnings.iter().any(|w| w.contains("mounted as a file")), "{:?}", run.warnings);
    for shared in ["/run/x.sock", "/tmp/x.sock", "/var/x.sock", "/x.sock"] {
        assert!(SocketMount::for_socket(shared).file_only, "{shared}");
    }
    assert!(SocketMount::for_socket("/run/dragonfly/x.sock").file_only, "dfget looks for dfdaemon.sock");
    let moved = SocketMount::for_socket("/data/dragonfly/dfdaemon.sock");
    assert_eq!((moved.host_path.as_str(), moved.mount_path), ("/data/dragonfly", "/var/run/dragonfly"));
    assert!(!moved.file_only);
}

#[test]
fn prepend_mode_keeps_the_old_path_behaviour_and_a_fixed_user_is_available() {
    let run = inject_in(
        &annotated(json!({"containers": [{"name": "app"}]})),
        &[],
        &settings_from("tools: {path: prepend, runAsUser: 1000}\nproxy: {hostFrom: nodeName}\n"),
    );
    let app = &run.patched["spec"]["containers"][0];
    assert_eq!(env_names(app), ["NODE_NAME", "DRAGONFLY_INJECT_PROXY", "DFGET_TRANSFER_FROM_DFDAEMON", "PATH"]);
    assert_eq!(app["env"][1]["value"], "http://$(NODE_NAME):4001");
    assert_eq!(app["env"][3]["value"], format!("/dragonfly/bin:{DEFAULT_LINUX_PATH}"));
    assert!(!app.to_string().contains("subPath"), "{app}");
    assert_eq!(run.patched["spec"]["initContainers"][0]["securityContext"]["runAsUser"], 1000);
}

#[test]
fn the_socket_can_be_turned_off_by_config_or_per_pod() {
    let pod = annotated(json!({"containers": [{"name": "app"}]}));
    let by_config = inject_in(&pod, &[], &settings_from("socket: {enabled: false}\n"));
    let mut skipping = pod.clone();
    skipping["metadata"]["annotations"]["dragonfly.io/skip-socket"] = json!("true");
    let by_annotation = inject(&skipping);
    for run in [by_config, by_annotation] {
        let text = run.patched.to_string();
        assert!(!text.contains("hostPath"), "{text}");
        assert!(!text.contains("/var/run/dragonfly"));
        assert_eq!(run.status.socket_volume, None);
        assert_eq!(run.status.parts(), "proxy,tools");
    }
}

#[test]
fn pod_security_baseline_or_restricted_drops_only_the_socket() {
    for level in ["baseline", "restricted"] {
        let pod = annotated(json!({"containers": [{"name": "app"}]}));
        let run = inject_in(&pod, &[("pod-security.kubernetes.io/enforce", level)], &settings_from(""));
        assert!(!run.patched.to_string().contains("hostPath"));
        assert!(run.patched["spec"]["initContainers"][0].is_object(), "tools are still injected");
        assert!(run.warnings.iter().any(|w| w.contains(level) && w.contains("hostPath")), "{:?}", run.warnings);
    }
    let privileged = inject_in(
        &annotated(json!({"containers": [{"name": "app"}]})),
        &[("pod-security.kubernetes.io/enforce", "privileged")],
        &settings_from(""),
    );
    assert!(privileged.patched.to_string().contains("hostPath"));
}

#[test]
fn user_objects_with_our_default_names_are_never_overwritten() {
    let pod = annotated(json!({
        "initContainers": [{"name": "dragonfly-tools", "image": "mine"}],
        "containers": [{"name": "app"}],
        "volumes": [{"name": "dragonfly-tools", "configMap": {"name": "c"}}, {"name": "dragonfly-socket", "emptyDir": {}}],
    }));
    let run = inject(&pod);
    let spec = &run.patched["spec"];
    assert_eq!(spec["volumes"][0], json!({"name": "dragonfly-tools", "configMap": {"name": "c"}}));
    assert_eq!(spec["volumes"][2]["name"], "dragonfly-tools-2");
    assert_eq!(spec["volumes"][3]["name"], "dragonfly-socket-2");
    assert_eq!(spec["initContainers"][0]["name"], "dragonfly-tools-2");
    assert_eq!(spec["initContainers"][1], json!({"name": "dragonfly-tools", "image": "mine"}));
    assert_eq!(run.status.tools_volume.as_deref(), Some("dragonfly-tools-2"));
}

#[test]
fn only_the_listed_containers_are_injected() {
    let mut pod = annotated(json!({"containers": [{"name": "app"}, {"name": "istio-proxy"}]}));
    pod["metadata"]["annotations"]["dragonfly.io/inject-containers"] = json!("app");
    let run = inject(&pod);
    assert!(run.patched["spec"]["containers"][0]["env"].is_array());
    assert_eq!(run.patched["spec"]["containers"][1], json!({"name": "istio-proxy"}));
    assert_eq!(run.status.containers, ["app"]);
}

#[test]
fn reinvocation_injects_a_container_added_later_and_doubles_nothing() {
    let first = inject(&annotated(json!({"containers": [{"name": "app"}]})));
    let mut pod = first.patched.clone();
    pod["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "added-later"}));
    let second = inject(&pod);
    let spec = &second.patched["spec"];
    assert_eq!(spec["initContainers"].as_array().unwrap().len(), 1);
    assert_eq!(spec["volumes"].as_array().unwrap().len(), 2);
    assert_eq!(
        env_names(&spec["containers"][1]),
        ["HOST_IP", "DRAGONFLY_INJECT_PROXY", "DFGET_TRANSFER_FROM_DFDAEMON"]
    );
    assert_eq!(second.status.containers, ["app", "added-later"]);
    assert!(second
        .ops
        .iter()
        .all(|op| !matches!(op, PatchOp::Add { path, .. } if path.starts_with("/spec/containers/0"))));
}

#[test]
fn fields_the_engine_does_not_model_survive_untouched() {
    let pod = annotated(json!({
        "initContainers": [{"name": "sidecar", "image": "envoy", "restartPolicy": "Always", "futureField": {"x": [1, 2.5, null]}}],
        "containers": [{"name": "app", "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]}],
        "someFieldFromKubernetes2": {"enabled": true},
    }));
    let run = inject(&pod);
    assert_eq!(run.patched["spec"]["initContainers"][1], pod["spec"]["initContainers"][0]);
    assert_eq!(run.patched["spec"]["someFieldFromKubernetes2"], json!({"enabled": true}));
    assert_eq!(run.patched["spec"]["containers"][0]["resizePolicy"], pod["spec"]["containers"][0]["resizePolicy"]);
    // Every operation is a targeted addition: nothing the user wrote is replaced wholesale.
    for op in &run.ops {
        let PatchOp::Add { path, .. } = op else { panic!("unexpected {op:?}") };
        assert!(
            !["/spec", "/spec/containers", "/spec/initContainers", "/spec/containers/0"].contains(&path.as_str()),
            "{path}"
        );
    }
}

#[test]
fn image_pull_secrets_are_added_once() {
    let settings = settings_from("tools: {imagePullSecrets: [regcred, other]}\n");
    let pod = annotated(json!({"containers": [{"name": "app"}], "imagePullSecrets": [{"name": "regcred"}]}));
    let run = inject_in(&pod, &[], &settings);
    assert_eq!(run.patched["spec"]["imagePullSecrets"], json!([{"name": "regcred"}, {"name": "other"}]));
}

#[test]
fn the_tools_image_annotation_overrides_the_configured_image() {
    let mut pod = annotated(json!({"containers": [{"name": "app"}]}));
    pod["metadata"]["annotations"]["dragonfly.io/tools-image"] = json!("mirror.local/tools:v9");
    assert_eq!(inject(&pod).patched["spec"]["initContainers"][0]["image"], "mirror.local/tools:v9");
}

#[test]
fn optional_parts_follow_the_config() {
    let settings = settings_from(
        "transferFromDfdaemon: false\ntools: {resources: {requests: {}, limits: {}}, pullPolicy: Always}\n",
    );
    let run = inject_in(&annotated(json!({"containers": [{"name": "app"}]})), &[], &settings);
    assert!(!env_names(&run.patched["spec"]["containers"][0]).contains(&"DFGET_TRANSFER_FROM_DFDAEMON"));
    let init = &run.patched["spec"]["initContainers"][0];
    assert!(init.get("resources").is_none());
    assert_eq!(init["imagePullPolicy"], "Always");
}

#[test]
fn an_unreadable_pod_is_skipped_with_a_warning_and_no_patch() {
    let pod = annotated(json!({"containers": [{"name": "app", "env": "PATH=/bin"}]}));
    let decision = run_with(&pod, "apps", &[], &settings_from(""));
    assert_eq!(decision.outcome, Outcome::Skipped(SkipReason::InvalidPod));
    assert!(decision.warnings[0].contains("env is not a list"), "{:?}", decision.warnings);
}

#[test]
fn excluded_namespaces_include_the_injectors_own() {
    let pod = annotated(json!({"containers": [{"name": "app"}]}));
    let settings = settings_from("excludeNamespaces: [batch]\n");
    for namespace in ["batch", "dragonfly-system"] {
        assert_eq!(run_with(&pod, namespace, &[], &settings).outcome, Outcome::Skipped(SkipReason::ExcludedNamespace));
    }
    assert!(
        matches!(run_with(&pod, "kube-system", &[], &settings).outcome, Outcome::Injected { .. }),
        "the list replaces the default"
    );
}

#[test]
fn init_containers_and_native_sidecars_are_injected_when_asked_after_the_tools() {
    let mut pod = annotated(json!({
        "initContainers": [
            {"name": "warm-up", "image": "busybox", "command": ["dfget", "hf://model"]},
            {"name": "shipper", "image": "fluent-bit", "restartPolicy": "Always"},
        ],
        "containers": [{"name": "app"}],
    }));
    pod["metadata"]["annotations"]["dragonfly.io/inject-init-containers"] = json!("true");
    let run = inject(&pod);
    let init = run.patched["spec"]["initContainers"].as_array().unwrap();
    let names: Vec<&str> = init.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dragonfly-tools", "warm-up", "shipper"], "the tools come first, so warm-up can run dfget");
    for own in &init[1..] {
        assert_eq!(env_names(own), ["HOST_IP", "DRAGONFLY_INJECT_PROXY", "DFGET_TRANSFER_FROM_DFDAEMON"], "{own}");
        let mounts = own["volumeMounts"].as_array().unwrap();
        assert!(mounts.iter().any(|m| m["mountPath"] == "/usr/local/bin/dfget"), "{own}");
        assert!(mounts.iter().any(|m| m["mountPath"] == "/var/run/dragonfly"), "{own}");
    }
    assert_eq!(init[2]["restartPolicy"], "Always", "the sidecar stays a sidecar");
    assert!(init[0].get("env").is_none(), "the tools init container itself is not a target");
    assert_eq!(run.status.containers, ["app", "warm-up", "shipper"]);

    // Without the annotation they are left alone.
    pod["metadata"]["annotations"].as_object_mut().unwrap().remove("dragonfly.io/inject-init-containers");
    let run = inject(&pod);
    assert!(run.patched["spec"]["initContainers"][1].get("env").is_none());
}

#[test]
fn a_pod_beyond_the_container_limit_is_admitted_unchanged_with_the_reason() {
    let many: Vec<Value> = (0..300).map(|i| json!({"name": format!("c{i}")})).collect();
    let pod = annotated(json!({"containers": many}));
    let decision = run_with(&pod, "apps", &[], &settings_from(""));
    assert_eq!(decision.outcome, Outcome::Skipped(SkipReason::OverLimit));
    assert!(decision.ops.is_empty() && decision.patched.is_none(), "never half-patched");
    assert!(
        decision.warnings[0].contains("300 containers injected") && decision.warnings[0].contains("limits.containers")
    );
    // The limit counts what is injected: a few named ones, or a higher limit, go through.
    let mut named = pod.clone();
    named["metadata"]["annotations"]["dragonfly.io/inject-containers"] = json!("c1,c299");
    assert_eq!(inject_in(&named, &[], &settings_from("")).status.containers, ["c1", "c299"]);
    let raised = run_with(&pod, "apps", &[], &settings_from("limits: {containers: 300}\n"));
    assert!(matches!(raised.outcome, Outcome::Injected(_)), "{:?}", raised.warnings);
}

#[test]
fn names_are_chosen_past_a_long_run_of_taken_ones() {
    // Before sets, each candidate rescanned every name: 20,000 taken names cost 2·10⁸ compares.
    let mut volumes = vec![json!({"name": "dragonfly-tools", "emptyDir": {}})];
    volumes.extend((2..=20_000).map(|i| json!({"name": format!("dragonfly-tools-{i}"), "emptyDir": {}})));
    let pod = annotated(json!({"containers": [{"name": "app"}], "volumes": volumes}));
    let run = inject_in(&pod, &[], &settings_from("socket: {enabled: false}\n"));
    assert_eq!(run.status.tools_volume.as_deref(), Some("dragonfly-tools-20001"));
}

#[test]
fn with_a_socket_namespace_label_only_labelled_namespaces_get_the_socket() {
    let settings = settings_from("socket: {namespaceLabel: dragonfly.io/dfdaemon-socket=allowed}\n");
    let pod = annotated(json!({"containers": [{"name": "app"}]}));
    let unlabelled = inject_in(&pod, &[], &settings);
    assert_eq!(unlabelled.status.socket_volume, None);
    assert!(!unlabelled.patched.to_string().contains("hostPath"));
    assert!(unlabelled.warnings.iter().any(|w| w.contains("lacks the label dragonfly.io/dfdaemon-socket=allowed")));
    // The pod's own annotations cannot grant it: only the namespace's label does.
    let labelled = inject_in(&pod, &[("dragonfly.io/dfdaemon-socket", "allowed")], &settings);
    assert_eq!(labelled.status.socket_volume.as_deref(), Some("dragonfly-socket"));
    let wrong_value = inject_in(&pod, &[("dragonfly.io/dfdaemon-socket", "yes")], &settings);
    assert_eq!(wrong_value.status.socket_volume, None);
    // Unknown labels (no cluster access) keep the socket out too.
    let context = PodContext { namespace: "apps", namespace_labels: NamespaceLabels::Unknown, tools_image: IMAGE };
    let unknown = evaluate(&pod, &context, &settings);
    assert!(!unknown.patched.unwrap().to_string().contains("hostPath"));
}

#[test]
fn socket_mode_csi_mounts_the_plugins_volume_and_auto_picks_by_pod_security() {
    const LABEL: (&str, &str) = ("dragonfly.io/dfdaemon-socket", "allowed");
    let pod = annotated(json!({"containers": [{"name": "app"}]}));
    let socket_volume = |run: &Run| {
        run.patched["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "dragonfly-socket").cloned()
    };
    let csi_volume = json!({"name": "dragonfly-socket", "csi": {
        "driver": "csi.dragonfly.io", "readOnly": true, "volumeAttributes": {"dragonfly.io/volume": "socket"},
    }});
    let csi = settings_from("socket: {mode: csi, namespaceLabel: dragonfly.io/dfdaemon-socket=allowed}\n");
    let auto = settings_from("socket: {mode: auto, namespaceLabel: dragonfly.io/dfdaemon-socket=allowed}\n");
    for level in ["", "privileged", "baseline", "restricted"] {
        let labels = [LABEL, ("pod-security.kubernetes.io/enforce", level)];
        let run = inject_in(&pod, &labels, &csi);
        assert_eq!(socket_volume(&run), Some(csi_volume.clone()), "csi, {level:?}");
        assert!(!run.patched.to_string().contains("hostPath"));
        // The socket appears where dfget looks, as with hostPath.
        let mounts = &run.patched["spec"]["containers"][0]["volumeMounts"];
        assert!(mounts
            .as_array()
            .unwrap()
            .contains(&json!({"name": "dragonfly-socket", "mountPath": "/var/run/dragonfly", "readOnly": true})));
        assert_eq!(run.status.socket_volume.as_deref(), Some("dragonfly-socket"));

        let run = inject_in(&pod, &labels, &auto);
        let forbidden = matches!(level, "baseline" | "restricted");
        assert_eq!(socket_volume(&run).unwrap().get("csi").is_some(), forbidden, "auto, {level:?}");
        assert_eq!(socket_volume(&run).unwrap().get("hostPath").is_some(), !forbidden, "auto, {level:?}");
    }
    // In every mode, no label, no socket, and the warning says which label.
    for settings in [&csi, &auto] {
        let run = inject_in(&pod, &[("pod-security.kubernetes.io/enforce", "restricted")], settings);
        assert_eq!(socket_volume(&run), None);
        assert!(run.warnings.iter().any(|w| w.contains("lacks the label dragonfly.io/dfdaemon-socket=allowed")));
        assert!(run.patched["spec"]["initContainers"][0].is_object(), "tools are still injected");
    }
    // hostPath mode in a restricted namespace says how to get the socket there.
    let run = inject_in(&pod, &[LABEL, ("pod-security.kubernetes.io/enforce", "restricted")], &settings_from(""));
    assert!(run.warnings.iter().any(|w| w.contains("socket.mode csi or auto")), "{:?}", run.warnings);
}

#[test]
fn uninject_removes_a_csi_socket_volume_like_a_host_path_one() {
    let settings = settings_from("socket: {mode: csi, namespaceLabel: a=b}\n");
    let pod = annotated(json!({"containers": [{"name": "app", "image": "nginx"}]}));
    let run = inject_in(&pod, &[("a", "b")], &settings);
    assert!(run.patched.to_string().contains("csi.dragonfly.io"));
    let mut restored = run.patched.clone();
    undo(&mut restored).unwrap();
    assert_eq!(restored, pod);
}
