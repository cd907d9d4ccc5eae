//! The `dragonfly.io/injected` annotation: a record of what was injected, in JSON. It lets a
//! second pass (reinvocation, or `inject` run on its own output) recognise the injector's own
//! volumes and init container by name, so nothing is added twice and a user's objects that
//! happen to share a default name are never taken for ours.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub version: String,
    /// The containers that received the proxy environment and mounts.
    pub containers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_volume: Option<String>,
    /// What each container was given besides mounts of the volumes above (those are ours by
    /// name): the environment variables added, and whether the tools directory was put in
    /// front of a PATH it had. `uninject` removes exactly this.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub added: BTreeMap<String, Added>,
    /// Pull secrets added to the pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<String>,
    /// Where the volumes above are mounted in the target containers (the same for all of them):
    /// only mounts of these volumes at these paths are ours; a user's mount that happens to use
    /// one of the names is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Added {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub path_prefixed: bool,
    /// Of the mounts above, those this container did not get (it had one there already, or
    /// the path was taken): recorded the first time the container is injected, so that undo
    /// leaves what was the user's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_mounted: Vec<String>,
}

impl Added {
    /// This pass's additions on top of the recorded ones (a second pass adds nothing, so the
    /// record, and the annotation, stay as they were).
    /// `not_mounted` is kept from the first pass: on later passes the mounts are there
    /// because they are ours.
    pub fn merge(&mut self, more: Added) {
        for name in more.env {
            if !self.env.contains(&name) {
                self.env.push(name);
            }
        }
        self.path_prefixed |= more.path_prefixed;
        if self.not_mounted.is_empty() {
            self.not_mounted = more.not_mounted;
        }
    }
}

impl Status {
    /// Reads the annotation; anything that does not parse is treated as absent.
    pub fn parse(value: Option<&serde_json::Value>) -> Option<Status> {
        serde_json::from_str(value?.as_str()?).ok()
    }

    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("status serialises")
    }

    /// Short form for logs: `proxy,socket,tools`.
    pub fn parts(&self) -> String {
        let mut parts = vec!["proxy"];
        if self.socket_volume.is_some() {
            parts.push("socket");
        }
        if self.tools_volume.is_some() {
            parts.push("tools");
        }
        parts.join(",")
    }
}

/// Picks the name of one of the injector's objects among `existing` names: the recorded name
/// when that object is still there (it is ours), otherwise the first free one of `default`,
/// `default-2`, `default-3`, ... The flag tells whether the object already exists. A set, so a
/// pod holding `default` and a long run of its suffixes costs linear time, not quadratic.
pub fn choose_name(existing: &HashSet<&str>, recorded: Option<&str>, default: &str) -> (String, bool) {
    if let Some(name) = recorded.filter(|name| existing.contains(name)) {
        return (name.to_owned(), true);
    }
    let mut candidate = default.to_owned();
    let mut suffix = 2;
    while existing.contains(candidate.as_str()) {
        candidate = format!("{default}-{suffix}");
        suffix += 1;
    }
    (candidate, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recorded_names_are_reused_and_collisions_avoided() {
        let set = |names: &[&'static str]| names.iter().copied().collect::<HashSet<&str>>();
        assert_eq!(
            choose_name(&set(&["a", "dragonfly-tools"]), Some("dragonfly-tools"), "dragonfly-tools"),
            ("dragonfly-tools".into(), true)
        );
        assert_eq!(
            choose_name(&set(&["dragonfly-tools"]), None, "dragonfly-tools"),
            ("dragonfly-tools-2".into(), false)
        );
        assert_eq!(
            choose_name(&set(&["dragonfly-tools", "dragonfly-tools-2"]), Some("gone"), "dragonfly-tools"),
            ("dragonfly-tools-3".into(), false)
        );
        assert_eq!(choose_name(&set(&[]), None, "x"), ("x".into(), false));
    }

    #[test]
    fn status_round_trips_and_garbage_reads_as_absent() {
        let status = Status {
            version: "0.1.0".into(),
            containers: vec!["app".into()],
            init_container: Some("dragonfly-tools".into()),
            tools_volume: Some("dragonfly-tools".into()),
            socket_volume: None,
            ..Status::default()
        };
        let text = status.to_annotation();
        assert_eq!(Status::parse(Some(&json!(text))), Some(status.clone()));
        assert_eq!(status.parts(), "proxy,tools");
        assert_eq!(Status::parse(Some(&json!("not json"))), None);
        assert_eq!(Status::parse(Some(&json!(7))), None);
    }
}
