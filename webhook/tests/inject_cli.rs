//! The offline `dragonfly-injector inject` command, run as a process.

#![allow(clippy::unwrap_used)] // tests and their helpers fail loudly by design

use dragonfly_injector::offline::yaml::parse_documents;
use serde_json::Value;
use std::process::{Command, Output};

fn inject(args: &[&str], stdin: &str) -> Output {
    test_kit::output_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_dragonfly-injector")).arg("inject").args(args),
        stdin.as_bytes(),
    )
}

fn example() -> String {
    std::fs::read_to_string(test_kit::repo_root().join("examples/pod.yaml")).unwrap()
}

fn injected(template: &Value) -> bool {
    template["metadata"]["annotations"]["dragonfly.io/injected"].is_string()
        && template["spec"]["initContainers"][0]["name"] == "dragonfly-tools"
}

#[test]
fn the_example_is_injected_in_order_and_other_kinds_pass_through() {
    let output = Command::new(env!("CARGO_BIN_EXE_dragonfly-injector"))
        .args(["inject", "-f"])
        .arg(test_kit::repo_root().join("examples/pod.yaml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let documents = parse_documents(&String::from_utf8(output.stdout).unwrap()).unwrap();
    let original = parse_documents(&example()).unwrap();
    assert_eq!(documents.len(), 3);
    assert!(injected(&documents[0]));
    assert!(injected(&documents[1]["spec"]["template"]));
    assert_eq!(documents[2], original[2], "the Service is unchanged");
    // Running it on its own output changes nothing.
    let once = inject(&["-f", "-"], &example());
    let again = inject(&["-f", "-"], &String::from_utf8(once.stdout).unwrap());
    let twice = parse_documents(&String::from_utf8(again.stdout).unwrap()).unwrap();
    assert_eq!(twice, documents);
}

#[test]
fn every_workload_kind_and_lists_are_injected() {
    let pod_spec = r#"{"metadata": {"annotations": {"dragonfly.io/inject-p2p": "true"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}"#;
    let template: Value = serde_json::from_str(pod_spec).unwrap();
    let mut items = Vec::new();
    for kind in ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"] {
        items.push(serde_json::json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": kind.to_lowercase()}, "spec": {"template": template}}));
    }
    items.push(serde_json::json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cron"}, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}));
    items.push(
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}}),
    );
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    let output = inject(&["-f", "-"], &serde_json::to_string(&list).unwrap());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    let items = out["items"].as_array().unwrap();
    for item in &items[..6] {
        assert!(injected(&item["spec"]["template"]), "{}", item["kind"]);
    }
    assert!(injected(&items[6]["spec"]["jobTemplate"]["spec"]["template"]));
    assert_eq!(items[7]["data"]["k"], "v");
}

#[test]
fn namespace_labels_opt_in_and_shape_the_result() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: x}]\n";
    let plain = inject(&["-f", "-"], pod);
    assert!(!injected(&parse_documents(&String::from_utf8(plain.stdout).unwrap()).unwrap()[0]));
    let labelled = inject(
        &[
            "-f",
            "-",
            "--namespace-labels",
            "dragonfly.io/inject-p2p=enabled,pod-security.kubernetes.io/enforce=baseline",
        ],
        pod,
    );
    assert!(labelled.status.success());
    let document = &parse_documents(&String::from_utf8(labelled.stdout).unwrap()).unwrap()[0];
    assert!(injected(document));
    assert!(!document.to_string().contains("hostPath"));
    assert!(String::from_utf8(labelled.stderr).unwrap().contains("warning: Pod/p: namespace  enforces Pod Security"));
}

#[test]
fn a_config_file_changes_what_is_injected() {
    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("injector.yaml");
    std::fs::write(&config, "tools: {image: mirror.local/tools:v2}\nsocket: {enabled: false}\n").unwrap();
    let output = inject(&["-f", "-", "--config", config.to_str().unwrap()], &example());
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("image: mirror.local/tools:v2"));
    assert!(!text.contains("hostPath"));
}

#[test]
fn bad_input_fails_clearly_and_writes_nothing() {
    let broken = format!("{}---\nkind: Pod\nspec: [unclosed\n", example());
    let output = inject(&["-f", "-"], &broken);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "no partial output");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("not valid YAML") && stderr.contains("line"), "{stderr}");

    let missing = inject(&["-f", "/nonexistent/manifest.yaml"], "");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8(missing.stderr).unwrap().contains("cannot read /nonexistent/manifest.yaml"));

    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("bad.yaml");
    std::fs::write(&config, "tools:\n  mountPath: relative\n").unwrap();
    let bad_config = inject(&["-f", "-", "--config", config.to_str().unwrap()], &example());
    assert_eq!(bad_config.status.code(), Some(1));
    assert!(bad_config.stdout.is_empty());
    let stderr = String::from_utf8(bad_config.stderr).unwrap();
    assert!(stderr.contains("tools.mountPath") && stderr.contains("line 2") && stderr.contains("bad.yaml"), "{stderr}");

    let bad_json = inject(&["-f", "-"], "{\"kind\": \"Pod\",");
    assert_eq!(bad_json.status.code(), Some(1));
    assert!(bad_json.stdout.is_empty());
}

#[test]
fn hostile_yaml_is_refused_or_read_whole_with_bounded_output() {
    // The billion laughs in 9 levels: refused, nothing written.
    let mut bomb = String::from("apiVersion: v1\nkind: Pod\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (level, previous) in
        ["b", "c", "d", "e", "f", "g", "h", "i"].iter().zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        bomb.push_str(&format!("{level}: &{level} [{}]\n", vec![format!("*{previous}"); 9].join(", ")));
    }
    let output = inject(&["-f", "-"], &bomb);
    assert!(!output.status.success() && output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("excessive aliasing") || stderr.contains("expands to more than"), "{stderr}");

    // A byte order mark no longer hides the first key: the pod is injected.
    let output = inject(&["-f", "-"], &format!("\u{feff}{}", example()));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let documents = parse_documents(&String::from_utf8(output.stdout).unwrap()).unwrap();
    assert!(injected(&documents[0]));

    // 20,000 levels of compact nesting (go-yaml reads up to 10,000): refused at once; 9,000
    // read, and written back in about the size that came in, not quadratically more.
    let deep = |levels: usize| {
        format!("apiVersion: v1\nkind: ConfigMap\ndata:\n  x: y\nnested:\n{}leaf\n", "- ".repeat(levels))
    };
    let output = inject(&["-f", "-"], &deep(20_000));
    assert!(String::from_utf8_lossy(&output.stderr).contains("exceeded max depth of 10000"), "{output:?}");
    let input = deep(9_000);
    let output = inject(&["-f", "-"], &input);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stdout.len() < 2 * input.len(), "{} bytes written for {}", output.stdout.len(), input.len());
    // 9,000 levels of values are dropped and compared recursively: a thread with room for that.
    let written = String::from_utf8(output.stdout).unwrap();
    let same = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || parse_documents(&written).unwrap() == parse_documents(&input).unwrap())
        .unwrap()
        .join()
        .unwrap();
    assert!(same, "read back as it came in");
}

#[test]
fn files_and_directories_go_in_together_and_every_resource_is_reported() {
    let temp = tempfile::tempdir().unwrap();
    let tree = temp.path().join("manifests");
    std::fs::create_dir_all(tree.join("nested")).unwrap();
    let annotated = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    metadata:\n      annotations: {dragonfly.io/inject-p2p: \"true\"}\n    spec:\n      containers: [{name: app, image: nginx}]\n";
    std::fs::write(tree.join("a-web.yaml"), annotated).unwrap();
    std::fs::write(
        tree.join("nested/b-plain.json"),
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "plain"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}"#,
    )
    .unwrap();
    std::fs::write(tree.join("notes.txt"), "not a manifest").unwrap();
    let system = "apiVersion: v1\nkind: Pod\nmetadata: {name: sys, namespace: kube-system, annotations: {dragonfly.io/inject-p2p: \"true\"}}\nspec:\n  containers: [{name: c, image: x}]\n---\njust: a value\n";
    let output = inject(&["-f", tree.to_str().unwrap(), "-f", "-", "-o", "json"], system);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // Four documents, as JSON, in order: the directory's files by name, then standard input.
    let documents: Vec<Value> =
        serde_json::Deserializer::from_slice(&output.stdout).into_iter::<Value>().map(Result::unwrap).collect();
    let names: Vec<&str> = documents.iter().map(|d| d["metadata"]["name"].as_str().unwrap_or("-")).collect();
    assert_eq!(names, ["web", "plain", "sys", "-"]);
    assert!(injected(&documents[0]["spec"]["template"]));
    let report = String::from_utf8(output.stderr).unwrap();
    for line in [
        "injected   Deployment/web (proxy,socket,tools; containers app)",
        "skipped    Deployment/plain: not_opted_in",
        "skipped    Pod/sys: excluded_namespace",
        "skipped    standard input, document 2: not a Kubernetes object (no kind)",
        "warning: the tools image docker.io/dragonflyoss/dragonfly-injector-tools:v0.1.0 is written by tag",
    ] {
        assert!(report.contains(line), "missing {line:?} in\n{report}");
    }
    let quiet = inject(&["-f", tree.to_str().unwrap(), "--quiet"], "");
    assert!(!String::from_utf8(quiet.stderr).unwrap().contains("injected   "), "--quiet leaves the report out");
    let help = Command::new(env!("CARGO_BIN_EXE_dragonfly-injector")).args(["inject", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("Examples:") && help.contains("Global options:"), "{help}");
}

#[tokio::test]
async fn pin_writes_the_digest_the_tag_points_at_or_says_why_not() {
    use test_kit::registry::{push_index, pushing_client, IndexSpec, Registry, RegistryOptions};
    test_kit::install_crypto();
    let registry = Registry::start(RegistryOptions::default());
    let spec = IndexSpec { salt: "cli", ..IndexSpec::default() };
    let digest =
        push_index(&pushing_client(None), &oci_client::secrets::RegistryAuth::Anonymous, &registry.host, spec).await;
    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("injector.yaml");
    let image = format!("{}/dragonfly/tools:v1", registry.host);
    std::fs::write(
        &config,
        format!("tools: {{image: \"{image}\"}}\nregistry: {{plainHttp: [\"{}\"]}}\n", registry.host),
    )
    .unwrap();
    let pinned = inject(&["-f", "-", "--pin", "--config", config.to_str().unwrap()], &example());
    assert!(pinned.status.success(), "{}", String::from_utf8_lossy(&pinned.stderr));
    let text = String::from_utf8(pinned.stdout).unwrap();
    assert!(text.contains(&format!("{image}@{digest}")), "{text}\n{}", String::from_utf8_lossy(&pinned.stderr));
    let unreachable = "tools: {image: \"127.0.0.1:9/t:v1\"}\nregistry: {plainHttp: [\"127.0.0.1:9\"], timeout: 1s}\n";
    std::fs::write(&config, unreachable).unwrap();
    let output = inject(&["-f", "-", "--pin", "--config", config.to_str().unwrap()], &example());
    assert!(output.status.success());
    assert!(String::from_utf8(output.stderr).unwrap().contains("warning: could not pin 127.0.0.1:9/t:v1"));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("127.0.0.1:9/t:v1") && !text.contains("127.0.0.1:9/t:v1@"), "the tag, unpinned: {text}");
}

#[test]
fn uninject_gives_back_what_inject_was_given() {
    let run = |command: &str, args: &[&str], stdin: &str| {
        let output = test_kit::output_with_stdin(
            Command::new(env!("CARGO_BIN_EXE_dragonfly-injector")).arg(command).args(args),
            stdin.as_bytes(),
        );
        assert!(output.status.success(), "{command}: {}", String::from_utf8_lossy(&output.stderr));
        (String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
    };
    // The example manifests, and the held pod fixtures opted in.
    let mut inputs = vec![example()];
    for fixture in ["pod-annotated.json", "pod-from-replicaset.json", "pod-native-sidecar.json"] {
        let mut pod = test_kit::fixture(fixture);
        pod["apiVersion"] = "v1".into();
        pod["kind"] = "Pod".into();
        pod["metadata"]["annotations"]["dragonfly.io/inject-p2p"] = "true".into();
        pod["metadata"]["annotations"]["dragonfly.io/inject-init-containers"] = "true".into();
        inputs.push(serde_json::to_string_pretty(&pod).unwrap());
    }
    let temp = tempfile::tempdir().unwrap();
    let config = temp.path().join("prepend.yaml");
    std::fs::write(&config, "tools: {path: prepend, imagePullSecrets: [regcred]}\nproxy: {hostFrom: nodeName}\n")
        .unwrap();
    for input in &inputs {
        for extra in [vec![], vec!["--config", config.to_str().unwrap()]] {
            let (injected, _) = run("inject", &[&["-f", "-"], extra.as_slice()].concat(), input);
            assert_ne!(parse_documents(&injected).unwrap(), parse_documents(input).unwrap());
            let (restored, report) = run("uninject", &["-f", "-"], &injected);
            assert_eq!(parse_documents(&restored).unwrap(), parse_documents(input).unwrap(), "{extra:?}\n{injected}");
            assert!(report.contains("uninjected "), "{report}");
        }
    }
    let (_, report) = run("uninject", &["-f", "-"], &example());
    assert!(report.contains("unchanged  Pod/"), "a pod never injected is left alone: {report}");
}
