//! Checks that the parts of the pod the engine reads and patches have the types Kubernetes
//! gives them. A pod that fails is left alone (no patch) with a warning: a patch computed
//! against a shape we do not understand could be broken.

use serde_json::Value;

pub fn check_pod_shape(pod: &Value) -> Result<(), String> {
    let pod = pod.as_object().ok_or("the object is not a JSON object")?;
    match pod.get("metadata") {
        None | Some(Value::Object(_)) => {}
        Some(_) => return Err("metadata is not an object".into()),
    }
    if let Some(annotations) = pod.get("metadata").and_then(|m| m.get("annotations")) {
        if !(annotations.is_object() || annotations.is_null()) {
            return Err("metadata.annotations is not an object".into());
        }
    }
    let spec = pod.get("spec").and_then(Value::as_object).ok_or("spec is missing or not an object")?;
    let containers =
        spec.get("containers").and_then(Value::as_array).ok_or("spec.containers is missing or not a list")?;
    if containers.is_empty() {
        return Err("spec.containers is empty".into());
    }
    for (field, list) in [
        ("containers", Some(containers)),
        ("initContainers", optional_list(spec.get("initContainers"), "spec.initContainers")?),
        ("ephemeralContainers", optional_list(spec.get("ephemeralContainers"), "spec.ephemeralContainers")?),
    ] {
        for (index, container) in list.into_iter().flatten().enumerate() {
            check_container(container).map_err(|why| format!("spec.{field}[{index}]: {why}"))?;
        }
    }
    for (index, volume) in optional_list(spec.get("volumes"), "spec.volumes")?.into_iter().flatten().enumerate() {
        named_object(volume).map_err(|why| format!("spec.volumes[{index}]: {why}"))?;
    }
    for (index, secret) in
        optional_list(spec.get("imagePullSecrets"), "spec.imagePullSecrets")?.into_iter().flatten().enumerate()
    {
        if !secret.is_object() {
            return Err(format!("spec.imagePullSecrets[{index}] is not an object"));
        }
    }
    Ok(())
}

fn optional_list<'a>(value: Option<&'a Value>, what: &str) -> Result<Option<&'a Vec<Value>>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(_) => Err(format!("{what} is not a list")),
    }
}

fn named_object(value: &Value) -> Result<&serde_json::Map<String, Value>, String> {
    let object = value.as_object().ok_or("not an object")?;
    match object.get("name") {
        Some(Value::String(_)) => Ok(object),
        _ => Err("has no name".into()),
    }
}

fn check_container(container: &Value) -> Result<(), String> {
    let container = named_object(container)?;
    for (index, env) in optional_list(container.get("env"), "env")?.into_iter().flatten().enumerate() {
        named_object(env).map_err(|why| format!("env[{index}] {why}"))?;
    }
    for (index, mount) in
        optional_list(container.get("volumeMounts"), "volumeMounts")?.into_iter().flatten().enumerate()
    {
        let has_path = mount.get("mountPath").is_some_and(Value::is_string);
        if named_object(mount).is_err() || !has_path {
            return Err(format!("volumeMounts[{index}] needs a name and a mountPath"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plain_pod_passes() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "env": null}]}});
        assert_eq!(check_pod_shape(&pod), Ok(()));
    }

    #[test]
    fn each_malformed_part_is_named() {
        let cases = [
            (json!([]), "not a JSON object"),
            (json!({"spec": {}}), "spec.containers"),
            (json!({"spec": {"containers": []}}), "empty"),
            (json!({"metadata": "x", "spec": {"containers": [{"name": "a"}]}}), "metadata is not"),
            (json!({"spec": {"containers": [{"image": "x"}]}}), "spec.containers[0]: has no name"),
            (json!({"spec": {"containers": [{"name": "a", "env": {"A": "1"}}]}}), "env is not a list"),
            (json!({"spec": {"containers": [{"name": "a", "volumeMounts": [{"name": "v"}]}]}}), "mountPath"),
            (json!({"spec": {"containers": [{"name": "a"}], "volumes": "x"}}), "spec.volumes is not"),
            (json!({"spec": {"containers": [{"name": "a"}], "initContainers": [1]}}), "spec.initContainers[0]"),
        ];
        for (pod, expected) in cases {
            let error = check_pod_shape(&pod).unwrap_err();
            assert!(error.contains(expected), "{pod}: {error}");
        }
    }
}
