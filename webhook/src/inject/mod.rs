//! The injection engine: pod JSON in, decision and JSON Patch out. No I/O here; the HTTP edge
//! (`crate::admission`) and the offline `inject` command both call [`evaluate`].

mod container;
mod emit;
pub mod keys;
mod overrides;
mod patch;
mod plan;
mod policy;
mod shape;
mod status;
mod undo;

pub use container::DEFAULT_LINUX_PATH;
pub use patch::{escape_token, PatchOp};
pub use policy::{check_request, over_limit, NamespaceLabels, RequestFacts, SkipReason};
pub use status::Status;
pub use undo::undo;

use crate::config::{Config, HostFrom, LabelRequirement, LimitsConfig, SocketMode, SocketMount, ToolsPath};
use patch::PatchBuilder;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::BTreeSet;

pub const TOOLS_VOLUME: &str = "dragonfly-tools";
pub const SOCKET_VOLUME: &str = "dragonfly-socket";
pub const INIT_CONTAINER: &str = "dragonfly-tools";
/// The `csi` volume attribute that tells the node plugin what the volume holds.
pub const CSI_KIND_ATTRIBUTE: &str = "dragonfly.io/volume";

/// The config compiled for the request path.
#[derive(Debug, Clone)]
pub struct Settings {
    pub proxy_port: u16,
    pub host_from: HostFrom,
    pub proxy_env_name: String,
    pub transfer_from_dfdaemon: bool,
    pub socket: Option<SocketMount>,
    /// The namespace label cluster admins set to allow the socket, when the config asks for one.
    pub socket_namespace_label: Option<LabelRequirement>,
    pub socket_mode: SocketMode,
    pub csi_driver: String,
    pub tools_mount_path: String,
    pub tools_path: ToolsPath,
    /// `link` mode: each tool's name and where it is mounted in the target containers.
    pub tool_links: Vec<(String, String)>,
    pub run_as_user: Option<u32>,
    pub pull_policy: &'static str,
    pub resources: Value,
    pub image_pull_secrets: Vec<String>,
    pub excluded_namespaces: BTreeSet<String>,
    pub limits: LimitsConfig,
}

impl Settings {
    /// The config has passed its checks (overlapping directories are refused there).
    /// `own_namespace` (the injector's) is always excluded: injecting the injector's own pods
    /// would make their start depend on the webhook they provide.
    pub fn new(config: &Config, own_namespace: Option<&str>) -> Self {
        let socket = config.socket.enabled.then(|| SocketMount::for_socket(config.socket.path.as_str()));
        let tools_mount_path = config.tools.mount_path.as_str().to_owned();
        let link_dir = config.tools.link_dir.as_str().trim_end_matches('/');
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
        Settings {
            proxy_port: config.proxy.port.0,
            host_from: config.proxy.host_from,
            proxy_env_name: config.proxy.env_name.as_str().to_owned(),
            transfer_from_dfdaemon: config.transfer_from_dfdaemon.0,
            socket,
            socket_namespace_label: config.socket.namespace_label.clone(),
            socket_mode: config.socket.mode,
            csi_driver: config.socket.csi_driver.as_str().to_owned(),
            tools_mount_path,
            tools_path: config.tools.path,
            tool_links,
            run_as_user: config.tools.run_as_user,
            pull_policy: config.tools.pull_policy.as_str(),
            resources,
            image_pull_secrets: config.tools.image_pull_secrets.iter().map(|s| s.as_str().to_owned()).collect(),
            excluded_namespaces,
            limits: config.limits,
        }
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

/// What became of a pod: the one outcome type, from the engine to the HTTP edge and `inject`,
/// which only turn it into the wire form, log fields and metric labels.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Injected(Status),
    /// Opted in, but everything was already in place: empty patch.
    Unchanged,
    Skipped(SkipReason),
}

impl Outcome {
    /// Low-cardinality metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Injected(_) => "injected",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped(_) => "skipped",
        }
    }

    /// The skip reason's label; empty unless skipped.
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Skipped(reason) => reason.label(),
            _ => "",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    /// The JSON Patch: empty unless injected.
    pub ops: Vec<PatchOp>,
    /// The pod with the patch applied: only when injected.
    pub patched: Option<Value>,
    /// For the user (AdmissionResponse warnings), without the injector's prefix.
    pub warnings: Vec<String>,
}

impl Decision {
    pub fn skipped(reason: SkipReason, warnings: Vec<String>) -> Self {
        Decision { outcome: Outcome::Skipped(reason), ops: Vec::new(), patched: None, warnings }
    }
}

/// Decides about one pod and computes the patch against its raw JSON. The pod is copied only
/// when it is injected; [`evaluate_owned`] avoids even that.
pub fn evaluate(pod: &Value, context: &PodContext<'_>, settings: &Settings) -> Decision {
    evaluate_cow(Cow::Borrowed(pod), context, settings)
}

/// As [`evaluate`], for a caller that no longer needs the pod (the admission path): the patch
/// is recorded on the pod itself instead of on a copy, and `patched` is `None`.
pub fn evaluate_owned(pod: Value, context: &PodContext<'_>, settings: &Settings) -> Decision {
    evaluate_cow(Cow::Owned(pod), context, settings)
}

fn evaluate_cow(pod: Cow<'_, Value>, context: &PodContext<'_>, settings: &Settings) -> Decision {
    let mut warnings = Vec::new();
    let decided =
        policy::decide(&pod, context.namespace, context.namespace_labels, &settings.excluded_namespaces, &mut warnings);
    if let Err(reason) = decided {
        return Decision::skipped(reason, warnings);
    }
    let plan = match plan::plan(&pod, context, settings, &mut warnings) {
        Ok(plan) => plan,
        Err(reason) => return Decision::skipped(reason, warnings),
    };
    if plan.is_empty() {
        return Decision { outcome: Outcome::Unchanged, ops: Vec::new(), patched: None, warnings };
    }
    let status = plan.status.clone();
    // An owned pod is the admission path's, which never reads the patched pod.
    let keep = match pod {
        Cow::Owned(_) => patch::Keep::Skeleton,
        Cow::Borrowed(_) => patch::Keep::Whole,
    };
    let mut builder = PatchBuilder::with_copy(pod.into_owned(), keep);
    match emit::emit(plan, &mut builder) {
        Ok(()) => {
            let (ops, patched) = builder.finish();
            let patched = (keep == patch::Keep::Whole).then_some(patched);
            Decision { outcome: Outcome::Injected(status), ops, patched, warnings }
        }
        Err(error) => {
            let reason = policy::unreadable(&error, &mut warnings);
            Decision::skipped(reason, warnings)
        }
    }
}

#[cfg(test)]
mod tests;
