//! Per-pod annotations that adjust the injection. A value that cannot be used gets the default
//! for that part and a warning naming the annotation and the value; the rest still injects.

use super::keys;
use super::policy::annotation;
use crate::config::parse_image_ref;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overrides {
    /// Indexes into `spec.containers` of the containers to inject.
    pub targets: Vec<usize>,
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
    default_port: u16,
    warnings: &mut Vec<String>,
) -> Overrides {
    let all: Vec<usize> = (0..container_names.len()).collect();
    let targets = match annotation(pod, keys::INJECT_CONTAINERS) {
        None => all,
        Some(value) => match value.as_str().map(|list| select_containers(list, container_names)) {
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
    let tools_image = match annotation(pod, keys::TOOLS_IMAGE) {
        None => None,
        Some(value) => match value.as_str().map(|s| parse_image_ref(s).map(|_| s)) {
            Some(Ok(image)) => Some(image.to_owned()),
            Some(Err(why)) => {
                warnings.push(bad_value(keys::TOOLS_IMAGE, value, &format!("is invalid ({why})")));
                None
            }
            None => {
                warnings.push(bad_value(keys::TOOLS_IMAGE, value, "is not a string"));
                None
            }
        },
    };
    let skip_socket = match annotation(pod, keys::SKIP_SOCKET) {
        None => false,
        Some(Value::String(s)) if s == "true" => true,
        Some(Value::String(s)) if s == "false" => false,
        Some(value) => {
            warnings.push(bad_value(keys::SKIP_SOCKET, value, "is neither \"true\" nor \"false\""));
            false
        }
    };
    Overrides { targets, proxy_port, tools_image, skip_socket }
}

fn select_containers(list: &str, container_names: &[&str]) -> Result<Vec<usize>, String> {
    let wanted: Vec<&str> = list.split(',').map(str::trim).filter(|name| !name.is_empty()).collect();
    if wanted.is_empty() {
        return Err("names no container".into());
    }
    let unknown: Vec<&str> = wanted.iter().copied().filter(|name| !container_names.contains(name)).collect();
    if !unknown.is_empty() {
        return Err(format!("names containers the pod does not have ({})", unknown.join(", ")));
    }
    // Keep the pod's order, whatever the list's order.
    Ok((0..container_names.len()).filter(|&i| wanted.contains(&container_names[i])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(annotations: Value) -> (Overrides, Vec<String>) {
        let pod = json!({"metadata": {"annotations": annotations}});
        let mut warnings = Vec::new();
        let overrides = read_overrides(&pod, &["app", "sidecar", "log"], 4001, &mut warnings);
        (overrides, warnings)
    }

    #[test]
    fn defaults_without_annotations() {
        let (overrides, warnings) = read(json!({}));
        assert_eq!(
            overrides,
            Overrides { targets: vec![0, 1, 2], proxy_port: 4001, tools_image: None, skip_socket: false }
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
            Overrides { targets: vec![0, 1, 2], proxy_port: 4001, tools_image: None, skip_socket: false }
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
    fn empty_container_lists_and_non_strings_are_refused() {
        let (overrides, warnings) =
            read(json!({"dragonfly.io/inject-containers": " , ", "dragonfly.io/proxy-port": 4002}));
        assert_eq!(overrides.targets, vec![0, 1, 2]);
        assert_eq!(overrides.proxy_port, 4001);
        assert_eq!(warnings.len(), 2);
    }
}
