//! The injection engine: pod JSON in, decision and JSON Patch out. No I/O here; the HTTP edge
//! (`crate::admission`) and the offline `inject` command both call [`evaluate`].

mod container;
pub mod keys;
mod overrides;
mod patch;
mod policy;
mod shape;
mod status;

pub use container::DEFAULT_LINUX_PATH;
pub use patch::{escape_token, PatchOp};
pub use policy::{NamespaceLabels, SkipReason};
pub use status::Status;

use crate::config::{Config, HostFrom, ToolsPath};
use container::{inject_container, ContainerPlan, MountPlan};
use patch::{PatchBuilder, PatchError};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::BTreeSet;

pub const TOOLS_VOLUME: &str = "dragonfly-tools";
pub const SOCKET_VOLUME: &str = "dragonfly-socket";
pub const INIT_CONTAINER: &str = "dragonfly-tools";

/// Host directories that are shared by much more than dfdaemon: a socket directly inside one of
/// them is mounted as a file, never the whole directory.
const SHARED_SYSTEM_DIRS: [&str; 5] = ["/", "/run", "/var/run", "/tmp", "/var"];

/// Where dfget looks for dfdaemon when not told (`--endpoint`; it reads no environment variable
/// for it). Inside the pod the socket is always there, wherever the host keeps it.
pub const DFGET_SOCKET: &str = "/var/run/dragonfly/dfdaemon.sock";
const DFGET_SOCKET_DIR: &str = "/var/run/dragonfly";
const DFGET_SOCKET_FILE: &str = "dfdaemon.sock";

/// How the dfdaemon socket reaches the containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketMount {
    pub host_path: String,
    /// `DirectoryOrCreate` for the socket's directory; `Socket` for the file alone.
    pub host_path_type: &'static str,
    /// Where the containers see it: dfget's default directory, or its default socket path.
    pub mount_path: &'static str,
    /// The socket file alone is mounted: a dfdaemon restart leaves pods with a dead socket.
    pub file_only: bool,
}

impl SocketMount {
    /// The socket's own directory is mounted at dfget's default directory when that shows the
    /// socket at dfget's default path; otherwise (a shared system directory, or a socket of
    /// another name) the file alone is mounted at dfget's default path.
    pub fn for_socket(path: &str) -> Self {
        let (parent, file) = match path.rsplit_once('/') {
            Some(("", file)) => ("/", file),
            Some((parent, file)) => (parent, file),
            None => ("/", path),
        };
        if SHARED_SYSTEM_DIRS.contains(&parent) || file != DFGET_SOCKET_FILE {
            SocketMount {
                host_path: path.to_owned(),
                host_path_type: "Socket",
                mount_path: DFGET_SOCKET,
                file_only: true,
            }
        } else {
            SocketMount {
                host_path: parent.to_owned(),
                host_path_type: "DirectoryOrCreate",
                mount_path: DFGET_SOCKET_DIR,
                file_only: false,
            }
        }
    }
}

/// The config compiled for the request path.
#[derive(Debug, Clone)]
pub struct Settings {
    pub proxy_port: u16,
    pub host_from: HostFrom,
    pub proxy_env_name: String,
    pub transfer_from_dfdaemon: bool,
    pub socket: Option<SocketMount>,
    pub tools_mount_path: String,
    pub tools_path: ToolsPath,
    /// `link` mode: each tool's name and where it is mounted in the target containers.
    pub tool_links: Vec<(String, String)>,
    pub run_as_user: Option<u32>,
    pub pull_policy: &'static str,
    pub resources: Value,
    pub image_pull_secrets: Vec<String>,
    pub excluded_namespaces: BTreeSet<String>,
}

impl Settings {
    /// `own_namespace` (the injector's) is always excluded: injecting the injector's own pods
    /// would make their start depend on the webhook they provide.
    pub fn new(config: &Config, own_namespace: Option<&str>) -> Result<Self, String> {
        let socket = config.socket.enabled.then(|| SocketMount::for_socket(config.socket.path.as_str()));
        let tools_mount_path = config.tools.mount_path.as_str().to_owned();
        let nested = |a: &str, b: &str| a == b || a.starts_with(&format!("{}/", b.trim_end_matches('/')));
        if let Some(socket) = &socket {
            if nested(&tools_mount_path, socket.mount_path) || nested(socket.mount_path, &tools_mount_path) {
                return Err(format!(
                    "tools.mountPath {tools_mount_path} overlaps the socket's mount at {}; choose another directory",
                    socket.mount_path
                ));
            }
        }
        let link_dir = config.tools.link_dir.as_str().trim_end_matches('/');
        if config.tools.path == ToolsPath::Link
            && (nested(&tools_mount_path, link_dir) || nested(link_dir, &tools_mount_path))
        {
            return Err(format!(
                "tools.mountPath {tools_mount_path} overlaps tools.linkDir {link_dir}; choose another directory"
            ));
        }
        let tool_links = match config.tools.path {
            ToolsPath::Link => config
                .tools
                .binaries
                .iter()
                .map(|tool| (tool.as_str().to_owned(), format!("{link_dir}/{}", tool.as_str())))
                .collect(),
            ToolsPath::Prepend => Vec::new(),
        };
        // The config's own serialisation, minus empty `requests` or `limits`.
        let mut resources = serde_json::to_value(&config.tools.resources).expect("resources serialise");
        if let Some(map) = resources.as_object_mut() {
            map.retain(|_, quantities| quantities.as_object().is_some_and(|q| !q.is_empty()));
        }
        let mut excluded_namespaces: BTreeSet<String> =
            config.exclude_namespaces.0.iter().map(|ns| ns.as_str().to_owned()).collect();
        excluded_namespaces.extend(own_namespace.map(str::to_owned));
        Ok(Settings {
            proxy_port: config.proxy.port.0,
            host_from: config.proxy.host_from,
            proxy_env_name: config.proxy.env_name.as_str().to_owned(),
            transfer_from_dfdaemon: config.transfer_from_dfdaemon.0,
            socket,
            tools_mount_path,
            tools_path: config.tools.path,
            tool_links,
            run_as_user: config.tools.run_as_user,
            pull_policy: config.tools.pull_policy.as_str(),
            resources,
            image_pull_secrets: config.tools.image_pull_secrets.iter().map(|s| s.as_str().to_owned()).collect(),
            excluded_namespaces,
        })
    }

    fn host_env(&self) -> (&'static str, Value) {
        let (name, field_path) = match self.host_from {
            HostFrom::NodeName => ("NODE_NAME", "spec.nodeName"),
            HostFrom::HostIp => ("HOST_IP", "status.hostIP"),
        };
        (name, json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field_path}}}))
    }
}

/// The tools image reference to inject now: the pinned one, or the config's as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolsImage {
    pub reference: String,
    /// Set while a tag is injected although pinning is wanted (`preferred`, not resolved yet).
    pub unpinned_warning: Option<String>,
}

/// Where the pod comes from.
#[derive(Debug, Clone, Copy)]
pub struct PodContext<'a> {
    /// The request's namespace: pods created by controllers have no `metadata.namespace` yet.
    pub namespace: &'a str,
    pub namespace_labels: NamespaceLabels<'a>,
    /// The tools image reference to inject unless the pod overrides it.
    pub tools_image: &'a str,
}

// One per review, moved once to the caller and never stored in bulk: boxing the large variant
// would buy nothing but an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Skipped(SkipReason),
    /// `ops` is empty when everything was already in place.
    Injected {
        ops: Vec<PatchOp>,
        patched: Value,
        status: Status,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    /// For the user (AdmissionResponse warnings), without the injector's prefix.
    pub warnings: Vec<String>,
}

impl Decision {
    fn skipped(reason: SkipReason, warnings: Vec<String>) -> Self {
        Decision { outcome: Outcome::Skipped(reason), warnings }
    }
}

/// Decides about one pod and computes the patch against its raw JSON. The pod is copied only
/// when it is injected; [`evaluate_owned`] avoids even that.
pub fn evaluate(pod: &Value, context: &PodContext<'_>, settings: &Settings) -> Decision {
    evaluate_cow(Cow::Borrowed(pod), context, settings)
}

/// As [`evaluate`], for a caller that no longer needs the pod (the admission path): the patch
/// is recorded on the pod itself instead of on a copy.
pub fn evaluate_owned(pod: Value, context: &PodContext<'_>, settings: &Settings) -> Decision {
    evaluate_cow(Cow::Owned(pod), context, settings)
}

fn evaluate_cow(pod: Cow<'_, Value>, context: &PodContext<'_>, settings: &Settings) -> Decision {
    let mut warnings = Vec::new();
    if let Err(reason) =
        policy::decide(&pod, context.namespace, context.namespace_labels, &settings.excluded_namespaces, &mut warnings)
    {
        return Decision::skipped(reason, warnings);
    }
    if let Err(why) = shape::check_pod_shape(&pod) {
        warnings.push(format!("the pod could not be read ({why}); not injected"));
        return Decision::skipped(SkipReason::InvalidPod, warnings);
    }
    match build_patch(pod, context, settings, &mut warnings) {
        Ok((ops, patched, status)) => Decision { outcome: Outcome::Injected { ops, patched, status }, warnings },
        Err(error) => {
            warnings.push(format!("not injected: {error}"));
            Decision::skipped(SkipReason::InvalidPod, warnings)
        }
    }
}

fn names_at<'a>(pod: &'a Value, pointers: &[&str]) -> Vec<&'a str> {
    pointers
        .iter()
        .filter_map(|pointer| pod.pointer(pointer).and_then(Value::as_array))
        .flatten()
        .filter_map(|item| item.get("name").and_then(Value::as_str))
        .collect()
}

fn build_patch(
    pod: Cow<'_, Value>,
    context: &PodContext<'_>,
    settings: &Settings,
    warnings: &mut Vec<String>,
) -> Result<(Vec<PatchOp>, Value, Status), PatchError> {
    let container_names = names_at(&pod, &["/spec/containers"]);
    let init_names = names_at(&pod, &["/spec/initContainers"]);
    let overrides = overrides::read_overrides(&pod, &container_names, &init_names, settings.proxy_port, warnings);
    let existing_status = policy::annotation(&pod, keys::STATUS).cloned();
    let recorded = Status::parse(existing_status.as_ref());
    let recorded = recorded.as_ref();

    let socket = match &settings.socket {
        Some(_) if overrides.skip_socket => None,
        Some(_) if context.namespace_labels.forbids_host_path() => {
            warnings.push(format!(
                "namespace {} enforces Pod Security {:?}, which forbids hostPath volumes; the dfdaemon socket is not mounted",
                context.namespace,
                context.namespace_labels.get(keys::POD_SECURITY_ENFORCE).unwrap_or_default()
            ));
            None
        }
        other => other.as_ref(),
    };
    if socket.is_some_and(|s| s.file_only) {
        warnings.push(format!(
            "the dfdaemon socket is mounted as a file ({}), because its directory is shared; after a dfdaemon restart, restart this pod",
            settings.socket.as_ref().map(|s| s.host_path.as_str()).unwrap_or_default()
        ));
    }

    let volume_names = names_at(&pod, &["/spec/volumes"]);
    let all_container_names =
        names_at(&pod, &["/spec/containers", "/spec/initContainers", "/spec/ephemeralContainers"]);
    let (tools_volume, tools_volume_present) =
        status::choose_name(&volume_names, recorded.and_then(|s| s.tools_volume.as_deref()), TOOLS_VOLUME);
    let (socket_volume, socket_volume_present) =
        status::choose_name(&volume_names, recorded.and_then(|s| s.socket_volume.as_deref()), SOCKET_VOLUME);
    let (init_name, init_present) =
        status::choose_name(&all_container_names, recorded.and_then(|s| s.init_container.as_deref()), INIT_CONTAINER);
    // The pod's own init containers, when asked for; never ours (present on a second pass).
    let init_targets: Vec<usize> =
        overrides.init_targets.iter().copied().filter(|&i| init_names[i] != init_name.as_str()).collect();
    let target_names: Vec<String> = overrides
        .targets
        .iter()
        .map(|&i| container_names[i].to_owned())
        .chain(init_targets.iter().map(|&i| init_names[i].to_owned()))
        .collect();
    let status = Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        containers: target_names,
        init_container: Some(init_name.clone()),
        tools_volume: Some(tools_volume.clone()),
        socket_volume: socket.map(|_| socket_volume.clone()),
    };

    let mut builder = PatchBuilder::new(pod.into_owned());
    if !tools_volume_present {
        builder.push("/spec/volumes", json!({"name": tools_volume, "emptyDir": {}}))?;
    }
    if let Some(socket) = socket {
        if !socket_volume_present {
            let host_path = json!({"path": socket.host_path, "type": socket.host_path_type});
            builder.push("/spec/volumes", json!({"name": socket_volume, "hostPath": host_path}))?;
        }
    }
    if !init_present {
        let image = overrides.tools_image.as_deref().unwrap_or(context.tools_image);
        builder.insert("/spec/initContainers", 0, init_container(&init_name, image, &tools_volume, settings))?;
    }
    let pull_secrets: Vec<String> = builder
        .array("/spec/imagePullSecrets")
        .iter()
        .filter_map(|s| s.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    for secret in settings.image_pull_secrets.iter().filter(|s| !pull_secrets.contains(s)) {
        builder.push("/spec/imagePullSecrets", json!({"name": secret}))?;
    }

    let (host_env_name, host_env) = settings.host_env();
    let plan = ContainerPlan {
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
    for &index in &overrides.targets {
        inject_container(&mut builder, &format!("/spec/containers/{index}"), &plan, warnings)?;
    }
    // Ours was inserted first among init containers when it was not there yet.
    let shift = usize::from(!init_present);
    for &index in &init_targets {
        inject_container(&mut builder, &format!("/spec/initContainers/{}", index + shift), &plan, warnings)?;
    }

    // A second pass over an injected pod must yield an empty patch: rewrite the record only
    // when it changed (a container added by a later webhook, say), and keep the union.
    let mut status = status;
    if let Some(recorded) = recorded {
        let mut containers = recorded.containers.clone();
        containers.extend(status.containers.iter().filter(|c| !recorded.containers.contains(c)).cloned());
        status.containers = containers;
    }
    let annotation = Value::String(status.to_annotation());
    if existing_status.as_ref() != Some(&annotation) {
        builder.ensure_object("/metadata")?;
        builder.ensure_object("/metadata/annotations")?;
        builder.add(format!("/metadata/annotations/{}", escape_token(keys::STATUS)), annotation)?;
    }
    let (ops, patched) = builder.finish();
    Ok((ops, patched, status))
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

#[cfg(test)]
mod tests;
