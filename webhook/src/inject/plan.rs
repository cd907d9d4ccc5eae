//! What one opted-in pod receives, decided from the pod as it is, without changing it: names
//! that collide with nothing of the user's, which parts are already there, whether the socket is
//! mounted (Pod Security, the pod's own opt-out), which containers are targets and what each of
//! them lacks, and the record for a second pass. [`super::emit`] then writes exactly this.

use super::container::{added_by, plan_container, ContainerPlan, Edit, MountPlan};
use super::overrides::read_overrides;
use super::policy::{annotation, over_limit, SkipReason};
use super::status::{choose_name, Added, Status};
use super::{
    escape_token, keys, PodContext, Settings, CSI_KIND_ATTRIBUTE, INIT_CONTAINER, SOCKET_VOLUME, TOOLS_VOLUME,
};
use crate::config::{SocketMode, ToolsPath};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};

/// Everything to add, as values ready to write; `None` and empty lists mean "already there".
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub tools_volume: Option<Value>,
    pub socket_volume: Option<Value>,
    /// Inserted first among the init containers, so the tools are in place before any other.
    pub init_container: Option<Value>,
    pub pull_secrets: Vec<Value>,
    /// Each target container's JSON pointer (as it stands after the init container's insertion)
    /// and its edits.
    pub containers: Vec<(String, Vec<Edit>)>,
    /// The `dragonfly.io/injected` annotation's key (escaped for a JSON Pointer) and value, when
    /// it changes.
    pub annotation: Option<(String, Value)>,
    pub status: Status,
}

impl Plan {
    /// Nothing to write: a second pass over an injected pod.
    pub fn is_empty(&self) -> bool {
        self.tools_volume.is_none()
            && self.socket_volume.is_none()
            && self.init_container.is_none()
            && self.pull_secrets.is_empty()
            && self.containers.iter().all(|(_, edits)| edits.is_empty())
            && self.annotation.is_none()
    }
}

/// With `socket.namespaceLabel` set, only namespaces that carry it get the socket; the
/// warning says which label the cluster admins would set.
fn namespace_allows_socket(context: &PodContext<'_>, settings: &Settings, warnings: &mut Vec<String>) -> bool {
    let Some(required) = &settings.socket_namespace_label else { return true };
    if context.namespace_labels.get(&required.key) == Some(required.value.as_str()) {
        return true;
    }
    warnings.push(format!(
        "namespace {} lacks the label {}={} that allows the dfdaemon socket; the socket is not mounted",
        context.namespace, required.key, required.value
    ));
    false
}

fn names_at<'a>(pod: &'a Value, pointers: &[&str]) -> Vec<&'a str> {
    pointers
        .iter()
        .filter_map(|pointer| super::patch::walk(pod, pointer).and_then(Value::as_array))
        .flatten()
        .filter_map(|item| item.get("name").and_then(Value::as_str))
        .collect()
}

/// Plans the injection of a pod that policy let through and whose shape was checked; refuses a
/// pod beyond `limits.containers` before any work that grows with it.
pub fn plan(
    pod: &Value,
    context: &PodContext<'_>,
    settings: &Settings,
    warnings: &mut Vec<String>,
) -> Result<Plan, SkipReason> {
    let container_names = names_at(pod, &["/spec/containers"]);
    let init_names = names_at(pod, &["/spec/initContainers"]);
    let overrides = read_overrides(pod, &container_names, &init_names, settings.proxy_port, warnings);
    let existing_status = annotation(pod, keys::STATUS);
    let recorded = Status::parse(existing_status);
    let recorded = recorded.as_ref();

    // hostPath, or the CSI plugin's volume where the mode says so: always for `csi`, and for
    // `auto` where Pod Security forbids hostPath.
    let forbids_host_path = context.namespace_labels.forbids_host_path();
    let via_csi = match settings.socket_mode {
        SocketMode::HostPath => false,
        SocketMode::Csi => true,
        SocketMode::Auto => forbids_host_path,
    };
    let socket = match &settings.socket {
        Some(_) if overrides.skip_socket => None,
        Some(_) if !namespace_allows_socket(context, settings, warnings) => None,
        Some(_) if forbids_host_path && !via_csi => {
            warnings.push(format!(
                "namespace {} enforces Pod Security {:?}, which forbids hostPath volumes; the dfdaemon socket is not mounted \
                 (socket.mode csi or auto brings it through the CSI plugin)",
                context.namespace,
                context.namespace_labels.get(keys::POD_SECURITY_ENFORCE).unwrap_or_default()
            ));
            None
        }
        other => other.as_ref(),
    };
    if let Some(socket) = socket.filter(|s| s.file_only) {
        warnings.push(format!(
            "the dfdaemon socket is mounted as a file ({}), because its directory is shared; after a dfdaemon restart, restart this pod",
            socket.host_path
        ));
    }

    let volume_names: HashSet<&str> = names_at(pod, &["/spec/volumes"]).into_iter().collect();
    let all_container_names: HashSet<&str> =
        names_at(pod, &["/spec/containers", "/spec/initContainers", "/spec/ephemeralContainers"]).into_iter().collect();
    let (tools_volume, tools_volume_present) =
        choose_name(&volume_names, recorded.and_then(|s| s.tools_volume.as_deref()), TOOLS_VOLUME);
    let (socket_volume, socket_volume_present) =
        choose_name(&volume_names, recorded.and_then(|s| s.socket_volume.as_deref()), SOCKET_VOLUME);
    let (init_name, init_present) =
        choose_name(&all_container_names, recorded.and_then(|s| s.init_container.as_deref()), INIT_CONTAINER);
    // The pod's own init containers, when asked for; never ours (present on a second pass).
    let init_targets: Vec<usize> =
        overrides.init_targets.iter().copied().filter(|&i| init_names[i] != init_name.as_str()).collect();
    let count = overrides.targets.len() + init_targets.len();
    over_limit("containers injected", count, settings.limits.containers.0, "containers", warnings)?;

    let (host_env_name, host_env) = settings.host_env();
    let shared = ContainerPlan {
        proxy_env: json!({
            "name": settings.proxy_env_name,
            "value": format!("http://$({host_env_name}):{}", overrides.proxy_port),
        }),
        host_env,
        transfer_env: settings
            .transfer_from_dfdaemon
            .then(|| json!({"name": "DFGET_TRANSFER_FROM_DFDAEMON", "value": "true"})),
        socket: socket.map(|s| MountPlan::new(&socket_volume, s.mount_path)),
        tools: Some(MountPlan::new(&tools_volume, &settings.tools_mount_path)),
        links: settings
            .tool_links
            .iter()
            .map(|(tool, at)| MountPlan { sub_path: Some(tool.clone()), ..MountPlan::new(&tools_volume, at) })
            .collect(),
        path_for_bare_containers: settings.tools_path == ToolsPath::Prepend,
    };
    // Ours is inserted first among init containers when it is not there yet.
    let shift = usize::from(!init_present);
    let mut containers = Vec::with_capacity(overrides.targets.len() + init_targets.len());
    let mut added: BTreeMap<String, Added> = recorded.map(|r| r.added.clone()).unwrap_or_default();
    let already: HashSet<&str> = recorded.iter().flat_map(|r| r.containers.iter().map(String::as_str)).collect();
    let planned = shared.mount_paths();
    let targets = overrides
        .targets
        .iter()
        .map(|&i| ("containers", i, i, container_names[i]))
        .chain(init_targets.iter().map(|&i| ("initContainers", i, i + shift, init_names[i])));
    for (list, index, patched_index, name) in targets {
        if let Some(container) = super::patch::walk(pod, &format!("/spec/{list}/{index}")) {
            let edits = plan_container(container, &shared, warnings);
            let mut now = added_by(&edits, &planned);
            if already.contains(name) {
                now.not_mounted.clear();
            }
            if now != Added::default() {
                added.entry(name.to_owned()).or_default().merge(now);
            }
            containers.push((format!("/spec/{list}/{patched_index}"), edits));
        }
    }

    let existing_secrets: Vec<&str> = names_at(pod, &["/spec/imagePullSecrets"]);
    let new_secrets: Vec<&String> =
        settings.image_pull_secrets.iter().filter(|s| !existing_secrets.contains(&s.as_str())).collect();
    let pull_secrets = new_secrets.iter().map(|secret| json!({"name": secret})).collect();
    let mut added_secrets: Vec<String> = recorded.map(|r| r.pull_secrets.clone()).unwrap_or_default();
    added_secrets.extend(new_secrets.into_iter().filter(|s| !added_secrets.contains(s)).cloned().collect::<Vec<_>>());

    // A second pass over an injected pod must yield an empty patch: rewrite the record only
    // when it changed (a container added by a later webhook, say), and keep the union.
    let mut targets: Vec<String> = recorded.map(|r| r.containers.clone()).unwrap_or_default();
    let mut listed: HashSet<String> = targets.iter().cloned().collect();
    for name in overrides.targets.iter().map(|&i| container_names[i]).chain(init_targets.iter().map(|&i| init_names[i]))
    {
        if listed.insert(name.to_owned()) {
            targets.push(name.to_owned());
        }
    }
    let status = Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        containers: targets,
        init_container: Some(init_name.clone()),
        tools_volume: Some(tools_volume.clone()),
        socket_volume: socket.map(|_| socket_volume.clone()),
        added,
        pull_secrets: added_secrets,
        mounts: {
            let mut mounts: Vec<String> = recorded.map(|r| r.mounts.clone()).unwrap_or_default();
            mounts.extend(
                planned.iter().filter(|p| !mounts.iter().any(|m| m == *p)).map(|p| (*p).to_owned()).collect::<Vec<_>>(),
            );
            mounts
        },
    };
    let annotation_value = Value::String(status.to_annotation());
    let annotation = (existing_status != Some(&annotation_value))
        .then(|| (format!("/metadata/annotations/{}", escape_token(keys::STATUS)), annotation_value));

    let image = overrides.tools_image.as_deref().unwrap_or(context.tools_image);
    Ok(Plan {
        tools_volume: (!tools_volume_present).then(|| json!({"name": tools_volume, "emptyDir": {}})),
        socket_volume: socket.filter(|_| !socket_volume_present).map(|socket| {
            if via_csi {
                json!({"name": socket_volume, "csi": {
                    "driver": settings.csi_driver,
                    "readOnly": true,
                    "volumeAttributes": {CSI_KIND_ATTRIBUTE: "socket"},
                }})
            } else {
                json!({"name": socket_volume, "hostPath": {"path": socket.host_path, "type": socket.host_path_type}})
            }
        }),
        init_container: (!init_present).then(|| init_container(&init_name, image, &tools_volume, settings)),
        pull_secrets,
        containers,
        annotation,
        status,
    })
}

fn init_container(name: &str, image: &str, volume: &str, settings: &Settings) -> Value {
    let mut container = json!({
        "name": name,
        "image": image,
        "imagePullPolicy": settings.pull_policy,
        "args": ["--to", settings.tools_mount_path],
        "volumeMounts": [{"name": volume, "mountPath": settings.tools_mount_path}],
        // Pod Security `restricted`, so the injected container never makes a pod non-compliant.
        // No fixed user unless configured: the image runs as 65532, and OpenShift's restricted
        // SCC assigns one from the namespace's range (a fixed one outside it is refused).
        "securityContext": {
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    if let Some(uid) = settings.run_as_user {
        container["securityContext"]["runAsUser"] = json!(uid);
    }
    if settings.resources.as_object().is_some_and(|r| !r.is_empty()) {
        container["resources"] = settings.resources.clone();
    }
    container
}
