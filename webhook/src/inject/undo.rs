//! The inverse of an injection, for `dragonfly-injector uninject`: removes exactly what the
//! `dragonfly.io/injected` record says was added (the init container, the two volumes and every
//! mount of them, the environment variables and PATH prefix each container was given, the pull
//! secrets, the record itself) and nothing the pod had of its own. Lists and maps left empty
//! are removed: Kubernetes treats an empty list and a missing one alike.

use super::keys;
use super::status::Status;
use serde_json::{Map, Value};

/// Removes the injection from a pod (or pod template) in place; the record it followed, or
/// `None` when the pod carries none (never injected, or the record is unreadable).
pub fn undo(pod: &mut Value) -> Option<Status> {
    let status = Status::parse(pod.pointer(&format!("/metadata/annotations/{}", super::escape_token(keys::STATUS))))?;
    let ours: Vec<&str> =
        [&status.tools_volume, &status.socket_volume].into_iter().flatten().map(String::as_str).collect();
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(init) = &status.init_container {
            retain(spec, "initContainers", |c| name(c) != Some(init.as_str()));
        }
        retain(spec, "volumes", |v| !name(v).is_some_and(|n| ours.contains(&n)));
        retain(spec, "imagePullSecrets", |s| !name(s).is_some_and(|n| status.pull_secrets.iter().any(|p| p == n)));
        for list in ["containers", "initContainers"] {
            for container in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                if name(container).is_some_and(|n| status.containers.iter().any(|c| c == n)) {
                    undo_container(container, &status, &ours);
                }
            }
        }
    }
    if let Some(metadata) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.shift_remove(keys::STATUS);
            if annotations.is_empty() {
                metadata.shift_remove("annotations");
            }
        }
    }
    if pod.get("metadata").and_then(Value::as_object).is_some_and(Map::is_empty) {
        pod.as_object_mut().map(|p| p.shift_remove("metadata"));
    }
    Some(status)
}

fn name(item: &Value) -> Option<&str> {
    item.get("name").and_then(Value::as_str)
}

fn mount_path(mount: &Value) -> &str {
    mount.get("mountPath").and_then(Value::as_str).unwrap_or_default()
}

/// Keeps the items of the list at `key` that `keep` accepts; drops the key when none is left.
fn retain(object: &mut Map<String, Value>, key: &str, keep: impl Fn(&Value) -> bool) {
    if let Some(Value::Array(items)) = object.get_mut(key) {
        items.retain(|item| keep(item));
        if items.is_empty() {
            object.shift_remove(key);
        }
    }
}

fn undo_container(container: &mut Value, status: &Status, ours: &[&str]) {
    let Some(object) = container.as_object_mut() else { return };
    let added =
        object.get("name").and_then(Value::as_str).and_then(|n| status.added.get(n)).cloned().unwrap_or_default();
    // Planned: a mount at one of our paths. Records from before paths were kept name no paths:
    // every mount of our volumes is at a planned path then.
    let path_is_planned = |m: &Value| status.mounts.is_empty() || status.mounts.iter().any(|p| p == mount_path(m));
    // Ours: one this container did get (not one it already had at that path).
    let path_is_ours = |m: &Value| {
        path_is_planned(m) && (status.mounts.is_empty() || !added.not_mounted.iter().any(|p| p == mount_path(m)))
    };
    // The tools directory, the PATH prefix that was added: where the whole tools volume is
    // mounted at one of our paths. Ours first; a user's mount that happens to use the volume's
    // name at another of our paths is not it, but one already at the tools path (so not added
    // by us) is, since PATH was prefixed with it. The PATH value tells the candidates apart.
    let mut tools_dirs: Vec<(bool, String)> = object
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| name(m) == status.tools_volume.as_deref() && m.get("subPath").is_none() && path_is_planned(m))
        .filter_map(|m| Some((!path_is_ours(m), m.get("mountPath")?.as_str()?.to_owned())))
        .collect();
    tools_dirs.sort();
    retain(object, "volumeMounts", |m| !(name(m).is_some_and(|n| ours.contains(&n)) && path_is_ours(m)));
    if let Some(Value::Array(env)) = object.get_mut("env") {
        for added_name in &added.env {
            if let Some(at) = env.iter().position(|e| name(e) == Some(added_name.as_str())) {
                env.remove(at);
            }
        }
        let path = env.iter_mut().find(|e| name(e) == Some("PATH")).and_then(|e| e.get_mut("value"));
        if let (true, Some(Value::String(value))) = (added.path_prefixed, path) {
            for (_, dir) in &tools_dirs {
                if let Some(rest) = value.strip_prefix(dir.as_str()).and_then(|r| r.strip_prefix(':')) {
                    *value = rest.to_owned();
                    break;
                } else if value == dir {
                    value.clear();
                    break;
                }
            }
        }
    }
    retain(object, "env", |_| true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::inject::{evaluate, NamespaceLabels, PodContext, Settings};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn inject(pod: &Value, config: &str) -> Value {
        let settings = Settings::new(&Config::from_yaml(config).unwrap(), None);
        let labels = BTreeMap::new();
        let context =
            PodContext { namespace: "apps", namespace_labels: NamespaceLabels::Known(&labels), tools_image: "t:1" };
        evaluate(pod, &context, &settings).patched.expect("injected")
    }

    #[test]
    fn undo_gives_back_the_pod_as_it_was() {
        let pods = [
            json!({"metadata": {"annotations": {"dragonfly.io/inject-p2p": "true"}}, "spec": {"containers": [{"name": "a"}]}}),
            json!({
                "metadata": {"name": "p", "annotations": {"dragonfly.io/inject-p2p": "true", "keep": "me"}},
                "spec": {
                    "initContainers": [{"name": "warm", "image": "x"}],
                    "containers": [{
                        "name": "app",
                        "env": [{"name": "PATH", "value": "/opt/conda/bin:/usr/bin"}, {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }],
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "dragonfly-tools", "emptyDir": {}}],
                    "imagePullSecrets": [{"name": "mine"}],
                },
            }),
        ];
        // A user's mount that happens to carry our tools volume's name comes first: the PATH
        // prefix is still found from our own mount (a case the property test found).
        let pods = [
            pods[0].clone(),
            pods[1].clone(),
            json!({
                "metadata": {"annotations": {"dragonfly.io/inject-p2p": "true"}},
                "spec": {"containers": [{
                    "name": "app",
                    "env": [{"name": "PATH", "value": "/usr/bin"}],
                    "volumeMounts": [{"name": "dragonfly-tools", "mountPath": "/var/run/dragonfly"}],
                }]},
            }),
            // The user's mount of that name is already at the tools path, and PATH is empty: the
            // prefix is that directory alone (the property test again).
            json!({
                "metadata": {"annotations": {"dragonfly.io/inject-p2p": "true"}},
                "spec": {"containers": [{
                    "name": "app",
                    "env": [{"name": "PATH", "value": ""}],
                    "volumeMounts": [{"name": "dragonfly-tools", "mountPath": "/dragonfly/bin"}],
                }]},
            }),
        ];
        let configs = [
            "",
            "tools: {path: prepend, imagePullSecrets: [mine, extra]}\nproxy: {hostFrom: nodeName}\n",
            "socket: {path: /run/df.sock}\n",
        ];
        for pod in &pods {
            for config in configs {
                let mut injected = inject(pod, config);
                assert_ne!(&injected, pod);
                let status = undo(&mut injected).expect("a record");
                assert_eq!(&injected, pod, "config {config:?}, record {status:?}");
            }
        }
        let mut plain = pods[0].clone();
        assert_eq!(undo(&mut plain), None, "nothing to undo without a record");
    }
}
