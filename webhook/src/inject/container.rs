//! What one target container receives: environment variables in an order that lets Kubernetes
//! expand `$(VAR)` references, the socket and tools mounts, and the tools on its `PATH`: each
//! tool mounted into a directory every image already has on its PATH (`link`), and the tools
//! directory prepended to a PATH the container sets itself. Only in `prepend` mode does a
//! container without PATH get one, which replaces its image's own.

use super::patch::{PatchBuilder, PatchError};
use serde_json::{json, Value};

/// The default `PATH` of Linux images (Docker's and containerd's), used when the container does
/// not set one: setting `PATH` replaces the image's own value, which the API server cannot see.
pub const DEFAULT_LINUX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone)]
pub struct MountPlan {
    pub volume: String,
    pub mount_path: String,
    /// One file of the volume (a tool linked onto PATH).
    pub sub_path: Option<String>,
}

impl MountPlan {
    pub fn new(volume: &str, mount_path: &str) -> Self {
        MountPlan { volume: volume.to_owned(), mount_path: mount_path.to_owned(), sub_path: None }
    }

    fn entry(&self) -> Value {
        let mut entry = json!({"name": self.volume, "mountPath": self.mount_path, "readOnly": true});
        if let Some(sub_path) = &self.sub_path {
            entry["subPath"] = json!(sub_path);
        }
        entry
    }
}

/// The same for every target container of one pod.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    /// The Downward API variable the proxy URL refers to (`NODE_NAME` or `HOST_IP`).
    pub host_env: Value,
    pub proxy_env: Value,
    pub transfer_env: Option<Value>,
    pub socket: Option<MountPlan>,
    pub tools: Option<MountPlan>,
    /// Each tool at its place on the images' default PATH (`link` mode).
    pub links: Vec<MountPlan>,
    /// `prepend` mode: a container without PATH gets the tools directory and the default PATH.
    pub path_for_bare_containers: bool,
}

fn env_name(entry: &Value) -> &str {
    entry.get("name").and_then(Value::as_str).unwrap_or_default()
}

/// Compares env entries the way the API server stores them: it defaults a `fieldRef`'s
/// `apiVersion` to `v1`, and a missing `value` means the empty string.
fn same_env(existing: &Value, ours: &Value) -> bool {
    fn normal(entry: &Value) -> (Option<&str>, Option<&Value>, Option<&str>) {
        let field_ref = super::patch::walk(entry, "/valueFrom/fieldRef");
        let value = entry.get("value").and_then(Value::as_str).filter(|v| !v.is_empty());
        let api_version = field_ref.map(|r| r.get("apiVersion").and_then(Value::as_str).unwrap_or("v1"));
        let field_path = field_ref.and_then(|r| r.get("fieldPath"));
        let other_source = entry.get("valueFrom").is_some() && field_ref.is_none();
        (value, if other_source { entry.get("valueFrom") } else { field_path }, api_version)
    }
    normal(existing) == normal(ours)
}

/// One change to a container, relative to its JSON pointer, in the order it is applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Insert into `env` at this index (of `env` as the earlier edits left it).
    Env { at: usize, entry: Value },
    /// Append to `volumeMounts`.
    Mount(Value),
    /// Replace the value of the `env` entry at this index (`PATH`).
    EnvValue { at: usize, value: String },
}

/// What one container needs of the plan: whatever is not there yet, computed from the container
/// as it is, without changing it. Warnings for parts left out go to `warnings`.
pub fn plan_container(container: &Value, plan: &ContainerPlan, warnings: &mut Vec<String>) -> Vec<Edit> {
    let name = container.get("name").and_then(Value::as_str).unwrap_or_default();
    let list = |key: &str| container.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    // `env` and `volumeMounts` as they will stand after the edits so far.
    let mut env: Vec<&Value> = list("env").iter().collect();
    let mut mounts: Vec<(&str, &str)> = list("volumeMounts")
        .iter()
        .map(|m| {
            let text = |key: &str| m.get(key).and_then(Value::as_str).unwrap_or_default();
            (text("mountPath"), text("name"))
        })
        .collect();
    let mut edits = Vec::new();

    // Our variables go first, the proxy right after the variable it references, so that both
    // Kubernetes' `$(VAR)` expansion (which only sees earlier entries) and the user's own
    // variables (which may reference ours) work.
    let mut after = 0;
    for entry in [Some(&plan.host_env), Some(&plan.proxy_env), plan.transfer_env.as_ref()].into_iter().flatten() {
        match env.iter().position(|e| env_name(e) == env_name(entry)) {
            Some(existing) => {
                if !same_env(env[existing], entry) {
                    warnings.push(format!("container {name} already sets {}; left as it is", env_name(entry)));
                }
                after = after.max(existing + 1);
            }
            None => {
                env.insert(after, entry);
                edits.push(Edit::Env { at: after, entry: entry.clone() });
                after += 1;
            }
        }
    }

    if let Some(socket) = &plan.socket {
        mount(&mut mounts, socket, name, &mut edits, warnings);
    }
    if let Some(tools) = &plan.tools {
        if mount(&mut mounts, tools, name, &mut edits, warnings) {
            for link in &plan.links {
                mount(&mut mounts, link, name, &mut edits, warnings);
            }
            edits.extend(prepend_path(&env, name, &tools.mount_path, after, plan.path_for_bare_containers, warnings));
        }
    }
    edits
}

/// Mounts `wanted` unless its place is taken; whether it is mounted afterwards. `mounts` holds
/// (path, volume) of the container's mounts so far.
fn mount<'a>(
    mounts: &mut Vec<(&'a str, &'a str)>,
    wanted: &'a MountPlan,
    container: &str,
    edits: &mut Vec<Edit>,
    warnings: &mut Vec<String>,
) -> bool {
    match mounts.iter().find(|(path, _)| *path == wanted.mount_path) {
        Some((_, volume)) => {
            let ours = *volume == wanted.volume;
            if !ours {
                warnings.push(format!(
                    "container {container} already mounts something at {}; that part is not injected into it",
                    wanted.mount_path
                ));
            }
            ours
        }
        None => {
            mounts.push((&wanted.mount_path, &wanted.volume));
            edits.push(Edit::Mount(wanted.entry()));
            true
        }
    }
}

/// What `edits` add to a container, for the status record; `planned` are the mount paths the
/// plan has for every target container.
pub fn added_by(edits: &[Edit], planned: &[&str]) -> super::status::Added {
    let mut added = super::status::Added::default();
    let mut mounted = Vec::new();
    for edit in edits {
        match edit {
            Edit::Env { entry, .. } => added.env.push(env_name(entry).to_owned()),
            Edit::EnvValue { .. } => added.path_prefixed = true,
            Edit::Mount(entry) => mounted.extend(entry.get("mountPath").and_then(Value::as_str)),
        }
    }
    added.not_mounted = planned.iter().filter(|p| !mounted.contains(p)).map(|p| (*p).to_owned()).collect();
    added
}

impl ContainerPlan {
    /// Every mount path of the plan: the socket, the tools directory, the linked tools.
    pub fn mount_paths(&self) -> Vec<&str> {
        self.socket.iter().chain(&self.tools).chain(&self.links).map(|m| m.mount_path.as_str()).collect()
    }
}

/// Writes a container's edits under `base`, its JSON pointer (`/spec/containers/0`).
pub fn apply(builder: &mut PatchBuilder, base: &str, edits: Vec<Edit>) -> Result<(), PatchError> {
    for edit in edits {
        match edit {
            Edit::Env { at, entry } => builder.insert(&format!("{base}/env"), at, entry)?,
            Edit::Mount(entry) => builder.push(&format!("{base}/volumeMounts"), entry)?,
            Edit::EnvValue { at, value } => builder.replace(format!("{base}/env/{at}/value"), Value::String(value))?,
        }
    }
    Ok(())
}

/// The tools directory first on a PATH the container sets by value, once. A container without
/// PATH keeps its image's (only `prepend` mode sets one, with the common default after it).
fn prepend_path(
    env: &[&Value],
    container: &str,
    dir: &str,
    insert_at: usize,
    set_when_missing: bool,
    warnings: &mut Vec<String>,
) -> Option<Edit> {
    let Some(index) = env.iter().position(|e| env_name(e) == "PATH") else {
        let value = format!("{dir}:{DEFAULT_LINUX_PATH}");
        return set_when_missing.then(|| Edit::Env { at: insert_at, entry: json!({"name": "PATH", "value": value}) });
    };
    let entry = env[index];
    if entry.get("valueFrom").is_some() {
        warnings.push(format!(
            "container {container} sets PATH from a source; {dir} was not added to it (call {dir}/dfget)"
        ));
        return None;
    }
    let current = entry.get("value").and_then(Value::as_str).unwrap_or_default();
    if current == dir || current.starts_with(&format!("{dir}:")) {
        return None;
    }
    let value = if current.is_empty() { dir.to_owned() } else { format!("{dir}:{current}") };
    Some(Edit::EnvValue { at: index, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `prepend` mode, today's behaviour behind `tools.path: prepend`.
    fn plan() -> ContainerPlan {
        ContainerPlan {
            host_env: json!({"name": "NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}),
            proxy_env: json!({"name": "DRAGONFLY_INJECT_PROXY", "value": "http://$(NODE_NAME):4001"}),
            transfer_env: Some(json!({"name": "DFGET_TRANSFER_FROM_DFDAEMON", "value": "true"})),
            socket: Some(MountPlan::new("dragonfly-socket", "/var/run/dragonfly")),
            tools: Some(MountPlan::new("dragonfly-tools", "/dragonfly/bin")),
            links: Vec::new(),
            path_for_bare_containers: true,
        }
    }

    /// `link` mode, the default.
    fn link_plan() -> ContainerPlan {
        let link = |tool: &str| MountPlan {
            sub_path: Some(tool.to_owned()),
            ..MountPlan::new("dragonfly-tools", &format!("/usr/local/bin/{tool}"))
        };
        ContainerPlan { links: vec![link("dfget"), link("dfcache")], path_for_bare_containers: false, ..plan() }
    }

    fn inject_with(container: Value, plan: &ContainerPlan) -> (Value, Vec<String>) {
        let mut warnings = Vec::new();
        let edits = plan_container(&container, plan, &mut warnings);
        let mut builder = PatchBuilder::new(json!({"spec": {"containers": [container]}}));
        apply(&mut builder, "/spec/containers/0", edits).unwrap();
        (builder.finish().1["spec"]["containers"][0].clone(), warnings)
    }

    fn inject(container: Value) -> (Value, Vec<String>) {
        inject_with(container, &plan())
    }

    #[test]
    fn link_mode_mounts_each_tool_on_the_default_path_and_leaves_the_images_path_alone() {
        let (container, warnings) = inject_with(json!({"name": "app"}), &link_plan());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(names(&container), ["NODE_NAME", "DRAGONFLY_INJECT_PROXY", "DFGET_TRANSFER_FROM_DFDAEMON"]);
        let mounts = container["volumeMounts"].as_array().unwrap();
        assert_eq!(mounts[1], json!({"name": "dragonfly-tools", "mountPath": "/dragonfly/bin", "readOnly": true}));
        assert_eq!(
            mounts[2],
            json!({"name": "dragonfly-tools", "mountPath": "/usr/local/bin/dfget", "subPath": "dfget", "readOnly": true})
        );
        assert_eq!(mounts[3]["mountPath"], "/usr/local/bin/dfcache");
        let (again, _) = inject_with(container.clone(), &link_plan());
        assert_eq!(again, container, "a second pass adds nothing");
    }

    #[test]
    fn link_mode_still_prepends_to_a_path_the_container_sets() {
        let (container, _) = inject_with(
            json!({"name": "app", "env": [{"name": "PATH", "value": "/opt/conda/bin:/usr/bin"}]}),
            &link_plan(),
        );
        let path = container["env"].as_array().unwrap().iter().find(|e| env_name(e) == "PATH").unwrap();
        assert_eq!(path["value"], "/dragonfly/bin:/opt/conda/bin:/usr/bin");
    }

    #[test]
    fn link_mode_skips_a_tool_whose_place_is_taken_with_a_warning() {
        let mine = json!({"name": "mine", "mountPath": "/usr/local/bin/dfget", "subPath": "x"});
        let (container, warnings) = inject_with(json!({"name": "app", "volumeMounts": [mine.clone()]}), &link_plan());
        assert!(warnings.iter().any(|w| w.contains("/usr/local/bin/dfget")), "{warnings:?}");
        let mounts = container["volumeMounts"].as_array().unwrap();
        assert_eq!(mounts.iter().filter(|m| m["mountPath"] == "/usr/local/bin/dfget").count(), 1);
        assert!(mounts.contains(&mine));
        assert!(mounts.iter().any(|m| m["mountPath"] == "/usr/local/bin/dfcache"));
    }

    fn names(container: &Value) -> Vec<&str> {
        container["env"].as_array().unwrap().iter().map(env_name).collect()
    }

    #[test]
    fn a_bare_container_gets_env_in_expansion_order_mounts_and_path() {
        let (container, warnings) = inject(json!({"name": "app"}));
        assert!(warnings.is_empty());
        assert_eq!(names(&container), ["NODE_NAME", "DRAGONFLY_INJECT_PROXY", "DFGET_TRANSFER_FROM_DFDAEMON", "PATH"]);
        assert_eq!(container["env"][3]["value"], format!("/dragonfly/bin:{DEFAULT_LINUX_PATH}"));
        assert_eq!(container["volumeMounts"][0]["mountPath"], "/var/run/dragonfly");
        assert_eq!(
            container["volumeMounts"][1],
            json!({"name": "dragonfly-tools", "mountPath": "/dragonfly/bin", "readOnly": true})
        );
    }

    #[test]
    fn user_variables_stay_after_ours_so_they_can_reference_them() {
        let (container, _) =
            inject(json!({"name": "app", "env": [{"name": "HTTP_PROXY", "value": "$(DRAGONFLY_INJECT_PROXY)"}]}));
        assert_eq!(
            names(&container),
            ["NODE_NAME", "DRAGONFLY_INJECT_PROXY", "DFGET_TRANSFER_FROM_DFDAEMON", "PATH", "HTTP_PROXY"]
        );
    }

    #[test]
    fn an_existing_node_name_is_reused_and_the_proxy_follows_it() {
        let user_node_name = json!({"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}});
        let (container, warnings) =
            inject(json!({"name": "app", "env": [{"name": "A", "value": "1"}, user_node_name]}));
        assert!(warnings.is_empty(), "same definition needs no warning: {warnings:?}");
        assert_eq!(
            names(&container),
            ["A", "NODE_NAME", "DRAGONFLY_INJECT_PROXY", "DFGET_TRANSFER_FROM_DFDAEMON", "PATH"]
        );
    }

    #[test]
    fn a_users_own_value_is_left_alone_with_a_warning() {
        let (container, warnings) =
            inject(json!({"name": "app", "env": [{"name": "DRAGONFLY_INJECT_PROXY", "value": "http://mine:1"}]}));
        assert_eq!(
            container["env"].as_array().unwrap().iter().filter(|e| env_name(e) == "DRAGONFLY_INJECT_PROXY").count(),
            1
        );
        let proxy =
            container["env"].as_array().unwrap().iter().find(|e| env_name(e) == "DRAGONFLY_INJECT_PROXY").unwrap();
        assert_eq!(proxy["value"], "http://mine:1");
        assert_eq!(warnings, ["container app already sets DRAGONFLY_INJECT_PROXY; left as it is"]);
    }

    #[test]
    fn path_set_by_value_is_prepended_once() {
        let (container, _) = inject(json!({"name": "app", "env": [{"name": "PATH", "value": "/opt/bin:/usr/bin"}]}));
        let path = container["env"].as_array().unwrap().iter().find(|e| env_name(e) == "PATH").unwrap();
        assert_eq!(path["value"], "/dragonfly/bin:/opt/bin:/usr/bin");
        let (again, _) = inject(container.clone());
        assert_eq!(again, container);
    }

    #[test]
    fn path_from_a_source_is_left_with_a_warning() {
        let from = json!({"name": "PATH", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "path"}}});
        let (container, warnings) = inject(json!({"name": "app", "env": [from.clone()]}));
        assert!(container["env"].as_array().unwrap().contains(&from));
        assert!(warnings[0].contains("sets PATH from a source"), "{warnings:?}");
    }

    #[test]
    fn a_clashing_mount_path_skips_that_part_only() {
        let (container, warnings) =
            inject(json!({"name": "app", "volumeMounts": [{"name": "mine", "mountPath": "/dragonfly/bin"}]}));
        assert!(warnings[0].contains("already mounts something at /dragonfly/bin"), "{warnings:?}");
        assert!(!names(&container).contains(&"PATH"), "no PATH entry for tools that are not mounted");
        assert_eq!(container["volumeMounts"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_second_pass_changes_nothing() {
        let (once, _) = inject(json!({"name": "app", "env": [{"name": "X", "value": "1"}]}));
        let mut warnings = Vec::new();
        assert_eq!(plan_container(&once, &plan(), &mut warnings), []);
        assert!(warnings.is_empty());
    }
}
