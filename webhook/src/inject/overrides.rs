//! Per-pod annotations that adjust the injection. A value that cannot be used gets the default
//! for that part and a warning naming the annotation and the value; the rest still injects.

use super::keys;
use super::policy::annotation;
use crate::image::ImageParts;
use serde_json::Value;
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overrides {
    /// Indexes into `spec.containers` of the containers to inject.
    pub targets: Vec<usize>,
    /// Indexes into the pod's own `spec.initContainers` to inject (only with
    /// `dragonfly.io/inject-init-containers: "true"`).
    pub init_targets: Vec<usize>,
    pub proxy_port: u16,
    pub tools_image: Option<String>,
    pub skip_socket: bool,
}

fn bad_value(key: &str, value: &Value, why: &str) -> String {
    format!("annotation {key}={value} {why}; using the default")
}

pub fn read_overrides(
    pod: &Value,
    container_names: &[&str],
    init_names: &[&str],
    default_port: u16,
    warnings: &mut Vec<String>,
) -> Overrides {
    let with_init = match annotation(pod, keys::INJECT_INIT_CONTAINERS) {
        None => false,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(value) => {
            warnings.push(bad_value(keys::INJECT_INIT_CONTAINERS, value, "is neither \"true\" nor \"false\""));
            false
        }
    };
    let init_names: &[&str] = if with_init { init_names } else { &[] };
    let all = ((0..container_names.len()).collect(), (0..init_names.len()).collect());
    let (targets, init_targets) = match annotation(pod, keys::INJECT_CONTAINERS) {
        None => all,
        Some(value) => match value.as_str().map(|list| select_containers(list, container_names, init_names)) {
            Some(Ok(selected)) => selected,
            Some(Err(why)) => {
                warnings.push(bad_value(keys::INJECT_CONTAINERS, value, &why));
                all
            }
            None => {
                warnings.push(bad_value(keys::INJECT_CONTAINERS, value, "is not a string"));
                all
            }
        },
    };
    let proxy_port = match annotation(pod, keys::PROXY_PORT) {
        None => default_port,
        Some(value) => match value.as_str().and_then(|s| s.trim().parse::<u16>().ok()).filter(|p| *p > 0) {
            Some(port) => port,
            None => {
                warnings.push(bad_value(keys::PROXY_PORT, value, "is not a port (1 to 65535)"));
                default_port
            }
        },
    };
    let (key, value) = first_of(pod, &[keys::TOOLS_IMAGE, keys::LEGACY_TOOLS_IMAGE]);
    let tools_image = match value {
        None => None,
        Some(value) => match value.as_str().map(|s| ImageParts::parse(s).map(|_| s)) {
            Some(Ok(image)) => Some(image.to_owned()),
            Some(Err(why)) => {
                warnings.push(bad_value(key, value, &format!("is invalid ({why})")));
                None
            }
            None => {
                warnings.push(bad_value(key, value, "is not a string"));
                None
            }
        },
    };
    let (key, value) = first_of(pod, &[keys::SKIP_SOCKET, keys::LEGACY_SKIP_SOCKET]);
    let skip_socket = match value {
        None => false,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(value) => {
            warnings.push(bad_value(key, value, "is neither \"true\" nor \"false\""));
            false
        }
    };
    Overrides { targets, init_targets, proxy_port, tools_image, skip_socket }
}

/// The first of `keys` the pod is annotated with, and its value.
fn first_of<'a>(pod: &'a Value, keys: &[&'static str]) -> (&'static str, Option<&'a Value>) {
    keys.iter().find_map(|&key| annotation(pod, key).map(|value| (key, Some(value)))).unwrap_or((keys[0], None))
}

/// The named containers, and init containers when those may be injected (`init_names` is
/// empty otherwise), as indexes in the pod's order whatever the list's order.
fn select_containers(
    list: &str,
    container_names: &[&str],
    init_names: &[&str],
) -> Result<(Vec<usize>, Vec<usize>), String> {
    // Sets: a long list against a pod of many containers stays linear.
    let wanted: HashSet<&str> = list.split(',').map(str::trim).filter(|name| !name.is_empty()).collect();
    if wanted.is_empty() {
        return Err("names no container".into());
    }
    let known: HashSet<&str> = container_names.iter().chain(init_names).copied().collect();
    let mut unknown: Vec<&str> = wanted.iter().copied().filter(|name| !known.contains(name)).collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return Err(format!("names containers the pod does not have ({})", unknown.join(", ")));
    }
    let pick = |names: &[&str]| (0..names.len()).filter(|&i| wanted.contains(names[i])).collect();
    Ok((pick(container_names), pick(init_names)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(annotations: Value) -> (Overrides, Vec<String>) {
        let pod = json!({"metadata": {"annotations": annotations}});
        let mut warnings = Vec::new();
        let overrides = read_overrides(&pod, &["app", "sidecar", "log"], &["warm-up"], 4001, &mut warnings);
        (overrides, warnings)
    }

    #[test]
    fn defaults_without_annotations() {
        let (overrides, warnings) = read(json!({}));
        assert_eq!(
            overrides,
            Overrides {
                targets: vec![0, 1, 2],
                init_targets: vec![],
                proxy_port: 4001,
                tools_image: None,
                skip_socket: false
            }
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn valid_annotations_are_applied() {
        let (overrides, warnings) = read(json!({
            "dragonfly.io/inject-containers": "log, app",
            "dragonfly.io/proxy-port": "65001",
            "dragonfly.io/tools-image": "registry.local/tools:v2",
            "dragonfly.io/skip-socket": "true",
        }));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(overrides.targets, vec![0, 2]);
        assert_eq!(overrides.proxy_port, 65001);
        assert_eq!(overrides.tools_image.as_deref(), Some("registry.local/tools:v2"));
        assert!(overrides.skip_socket);
    }

    #[test]
    fn each_bad_value_falls_back_with_a_warning_naming_it() {
        let (overrides, warnings) = read(json!({
            "dragonfly.io/inject-containers": "app,missing",
            "dragonfly.io/proxy-port": "99999",
            "dragonfly.io/tools-image": "Bad Image",
            "dragonfly.io/skip-socket": "maybe",
        }));
        assert_eq!(
            overrides,
            Overrides {
                targets: vec![0, 1, 2],
                init_targets: vec![],
                proxy_port: 4001,
                tools_image: None,
                skip_socket: false
            }
        );
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        for (warning, needle) in warnings.iter().zip([
            "dragonfly.io/inject-containers=\"app,missing\"",
            "dragonfly.io/proxy-port=\"99999\"",
            "dragonfly.io/tools-image=\"Bad Image\"",
            "dragonfly.io/skip-socket=\"maybe\"",
        ]) {
            assert!(warning.contains(needle), "{warning}");
        }
        assert!(warnings[0].contains("missing"));
    }

    #[test]
    fn init_containers_are_injected_only_when_asked_and_can_be_named() {
        let (overrides, _) = read(json!({}));
        assert!(overrides.init_targets.is_empty());
        let (overrides, warnings) = read(json!({"dragonfly.io/inject-init-containers": "true"}));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((overrides.targets, overrides.init_targets), (vec![0, 1, 2], vec![0]));
        let (overrides, warnings) = read(json!({
            "dragonfly.io/inject-init-containers": "true",
            "dragonfly.io/inject-containers": "warm-up,log",
        }));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((overrides.targets, overrides.init_targets), (vec![2], vec![0]));
        // Without the opt-in an init container's name is not a target.
        let (overrides, warnings) = read(json!({"dragonfly.io/inject-containers": "warm-up"}));
        assert!(warnings[0].contains("warm-up"), "{warnings:?}");
        assert_eq!((overrides.targets, overrides.init_targets), (vec![0, 1, 2], vec![]));
        let (_, warnings) = read(json!({"dragonfly.io/inject-init-containers": "yes"}));
        assert!(warnings[0].contains("dragonfly.io/inject-init-containers=\"yes\""), "{warnings:?}");
    }

    #[test]
    fn the_go_injectors_annotations_are_accepted_and_ours_win() {
        let (overrides, warnings) = read(json!({
            "dragonfly.io/init-container-image": "registry.local/go-style:v1",
            "dragonfly.io/skip-unix-sock-inject": "true",
        }));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(overrides.tools_image.as_deref(), Some("registry.local/go-style:v1"));
        assert!(overrides.skip_socket);
        let (overrides, _) = read(json!({
            "dragonfly.io/init-container-image": "registry.local/go-style:v1",
            "dragonfly.io/tools-image": "registry.local/ours:v2",
            "dragonfly.io/skip-unix-sock-inject": "true",
            "dragonfly.io/skip-socket": "false",
        }));
        assert_eq!(overrides.tools_image.as_deref(), Some("registry.local/ours:v2"));
        assert!(!overrides.skip_socket);
        let (_, warnings) = read(json!({"dragonfly.io/skip-unix-sock-inject": "yes"}));
        assert!(warnings[0].contains("dragonfly.io/skip-unix-sock-inject=\"yes\""), "{warnings:?}");
    }

    #[test]
    fn empty_container_lists_and_non_strings_are_refused() {
        let (overrides, warnings) =
            read(json!({"dragonfly.io/inject-containers": " , ", "dragonfly.io/proxy-port": 4002}));
        assert_eq!(overrides.targets, vec![0, 1, 2]);
        assert_eq!(overrides.proxy_port, 4001);
        assert_eq!(warnings.len(), 2);
    }
}
