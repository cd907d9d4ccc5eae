//! CSI's Identity and Node services for inline ephemeral volumes, and the rule that guards the
//! socket: a `socket` volume is published only into pods of namespaces that carry the label an
//! administrator set. Any pod may write a `csi` volume of this driver into its own spec, so this
//! is the one place where that rule can hold; the webhook's own check only spares such pods a
//! failed mount.
//!
//! What the plugin trusts: the kubelet's `csi.storage.k8s.io/*` keys in the volume context (the
//! kubelet writes them over anything the pod's author put there, with `podInfoOnMount`), and
//! the target path, which must lie in the kubelet's directory of that very pod. The volume's
//! own attributes come from the pod's author and only choose what kind of volume it is.

use super::grpc::{Code, Status};
use super::messages::{self, PublishRequest, UnpublishRequest};
use super::mounts;
use crate::config::LabelRequirement;
use crate::inject::CSI_KIND_ATTRIBUTE as KIND_ATTRIBUTE;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
const EPHEMERAL: &str = "csi.storage.k8s.io/ephemeral";

/// A namespace's labels as the plugin's cache knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceLookup {
    /// The cache has not finished its first list.
    NotLoaded,
    /// The cache is loaded and has no such namespace.
    Unknown,
    Labels(Arc<BTreeMap<String, String>>),
}

pub type Namespaces = Arc<dyn Fn(&str) -> NamespaceLookup + Send + Sync>;

/// What the services need; the directories are as this process sees them, which the
/// DaemonSet makes the host's own paths for the kubelet's directory.
pub struct Driver {
    pub name: String,
    pub node_id: String,
    pub kubelet_dir: PathBuf,
    /// The host's dfdaemon socket directory, bound into pods for `socket` volumes.
    pub socket_dir: PathBuf,
    pub label: LabelRequirement,
    pub namespaces: Namespaces,
}

fn invalid(message: impl Into<String>) -> Status {
    Status::new(Code::InvalidArgument, message)
}

impl Driver {
    /// Dispatches one call of the Identity or Node service.
    pub fn handle(&self, method: &str, message: &[u8]) -> Result<Vec<u8>, Status> {
        match method {
            "/csi.v1.Identity/GetPluginInfo" => Ok(messages::plugin_info(&self.name, env!("CARGO_PKG_VERSION"))),
            "/csi.v1.Identity/GetPluginCapabilities" | "/csi.v1.Node/NodeGetCapabilities" => Ok(messages::empty()),
            "/csi.v1.Identity/Probe" => Ok(messages::probe(true)),
            "/csi.v1.Node/NodeGetInfo" => Ok(messages::node_info(&self.node_id)),
            "/csi.v1.Node/NodePublishVolume" => {
                self.publish(&PublishRequest::decode(message)?).map(|()| messages::empty())
            }
            "/csi.v1.Node/NodeUnpublishVolume" => {
                self.unpublish(&UnpublishRequest::decode(message)?).map(|()| messages::empty())
            }
            other => Err(Status::new(Code::Unimplemented, format!("{other} is not served by this node plugin"))),
        }
    }

    /// `target` must be `<kubelet dir>/pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount`,
    /// written plainly; returns the pod's uid.
    fn pod_of_target(&self, target: &str) -> Result<String, Status> {
        let path = Path::new(target);
        let plain =
            path.is_absolute() && path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        let rest = path.strip_prefix(self.kubelet_dir.join("pods")).ok().filter(|_| plain);
        let parts: Vec<&str> = rest.iter().flat_map(|r| r.iter()).filter_map(|p| p.to_str()).collect();
        match parts.as_slice() {
            [uid, "volumes", "kubernetes.io~csi", _, "mount"] => Ok((*uid).to_owned()),
            _ => Err(invalid(format!(
                "target path {target} is not a pod's CSI volume in the kubelet directory {}",
                self.kubelet_dir.display()
            ))),
        }
    }

    /// The namespace label rule, for a `socket` volume.
    fn allowed(&self, context: &BTreeMap<String, String>) -> Result<(), Status> {
        let namespace = context.get(POD_NAMESPACE).filter(|ns| !ns.is_empty()).ok_or_else(|| {
            Status::new(
                Code::FailedPrecondition,
                format!(
                    "the kubelet sent no {POD_NAMESPACE}: the CSIDriver object {} needs podInfoOnMount: true",
                    self.name
                ),
            )
        })?;
        let LabelRequirement { key, value } = &self.label;
        let lacks = || {
            Status::new(
                Code::PermissionDenied,
                format!(
                    "namespace {namespace} lacks the label {key}={value} that allows the dfdaemon socket; \
                     a cluster administrator grants it with: kubectl label namespace {namespace} {key}={value}"
                ),
            )
        };
        match (self.namespaces)(namespace) {
            NamespaceLookup::NotLoaded => {
                Err(Status::new(Code::Unavailable, "the namespace labels are not loaded yet; the kubelet will retry"))
            }
            NamespaceLookup::Unknown => Err(lacks()),
            NamespaceLookup::Labels(labels) if labels.get(key) == Some(value) => Ok(()),
            NamespaceLookup::Labels(_) => Err(lacks()),
        }
    }

    fn publish(&self, request: &PublishRequest) -> Result<(), Status> {
        if request.volume_id.is_empty() || request.target_path.is_empty() {
            return Err(invalid("volume_id and target_path are required"));
        }
        if request.block {
            return Err(invalid("this driver serves directories, not block devices"));
        }
        let uid = self.pod_of_target(&request.target_path)?;
        let context = &request.volume_context;
        if context.get(EPHEMERAL).map(String::as_str) != Some("true") {
            return Err(invalid(format!("{} serves only inline ephemeral volumes in a pod's spec", self.name)));
        }
        if context.get(POD_UID) != Some(&uid) {
            return Err(invalid(format!("the target path is not in the directory of pod {POD_UID} the kubelet named")));
        }
        let source = match context.get(KIND_ATTRIBUTE).map(String::as_str) {
            Some("socket") => {
                self.allowed(context)?;
                &self.socket_dir
            }
            other => {
                return Err(invalid(format!(
                    "volume attribute {KIND_ATTRIBUTE} is {}; this driver serves \"socket\"",
                    other.map_or("missing".to_owned(), |k| format!("{k:?}"))
                )))
            }
        };
        let target = Path::new(&request.target_path);
        let internal = |what: &str, error: std::io::Error| Status::new(Code::Internal, format!("{what}: {error}"));
        // A repeated call after a success (the kubelet retrying, or a restarted plugin) finds the
        // mount in the table and succeeds without mounting twice.
        if mounts::mounts_at(target).map_err(|e| internal("reading the mount table", e))? > 0 {
            return Ok(());
        }
        if !source.is_dir() {
            return Err(Status::new(
                Code::Unavailable,
                format!("the dfdaemon socket directory {} does not exist on this node", source.display()),
            ));
        }
        std::fs::create_dir_all(target).map_err(|e| internal("creating the target directory", e))?;
        mounts::bind_read_only(source, target).map_err(|e| internal("mounting", e))?;
        tracing::info!(path = %request.target_path, namespace = context.get(POD_NAMESPACE).map(String::as_str), "published the dfdaemon socket");
        Ok(())
    }

    fn unpublish(&self, request: &UnpublishRequest) -> Result<(), Status> {
        if request.volume_id.is_empty() || request.target_path.is_empty() {
            return Err(invalid("volume_id and target_path are required"));
        }
        self.pod_of_target(&request.target_path)?;
        let target = Path::new(&request.target_path);
        let internal = |what: &str, error: std::io::Error| Status::new(Code::Internal, format!("{what}: {error}"));
        // Bounded: a mount that will not go is an error, not a loop.
        for _ in 0..8 {
            if mounts::mounts_at(target).map_err(|e| internal("reading the mount table", e))? == 0 {
                return match std::fs::remove_dir(target) {
                    Ok(()) => {
                        tracing::info!(path = %request.target_path, "unpublished");
                        Ok(())
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(error) => Err(internal("removing the target directory", error)),
                };
            }
            mounts::unmount(target).map_err(|e| internal("unmounting", e))?;
        }
        Err(Status::new(Code::Internal, format!("{} stays mounted", request.target_path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = "/k/pods/0f3e/volumes/kubernetes.io~csi/dragonfly-socket/mount";

    fn driver(lookup: NamespaceLookup) -> Driver {
        Driver {
            name: "csi.dragonfly.io".into(),
            node_id: "n1".into(),
            kubelet_dir: "/k".into(),
            socket_dir: "/nonexistent/dragonfly".into(),
            label: LabelRequirement::try_from("dragonfly.io/dfdaemon-socket=allowed".to_owned()).unwrap(),
            namespaces: Arc::new(move |_| lookup.clone()),
        }
    }

    fn labelled(labels: &[(&str, &str)]) -> NamespaceLookup {
        NamespaceLookup::Labels(Arc::new(labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()))
    }

    fn request(kind: Option<&str>) -> PublishRequest {
        let mut context: BTreeMap<String, String> = [(POD_NAMESPACE, "team-a"), (POD_UID, "0f3e"), (EPHEMERAL, "true")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        if let Some(kind) = kind {
            context.insert(KIND_ATTRIBUTE.into(), kind.into());
        }
        PublishRequest {
            volume_id: "v".into(),
            target_path: TARGET.into(),
            block: false,
            readonly: true,
            volume_context: context,
        }
    }

    #[test]
    fn a_namespace_without_the_label_is_refused_with_the_label_named() {
        for lookup in [labelled(&[]), labelled(&[("dragonfly.io/dfdaemon-socket", "yes")]), NamespaceLookup::Unknown] {
            let status = driver(lookup).publish(&request(Some("socket"))).unwrap_err();
            assert_eq!(status.code, Code::PermissionDenied);
            assert!(status.message.contains("namespace team-a lacks the label dragonfly.io/dfdaemon-socket=allowed"));
            assert!(status.message.contains("kubectl label namespace team-a dragonfly.io/dfdaemon-socket=allowed"));
        }
        let status = driver(NamespaceLookup::NotLoaded).publish(&request(Some("socket"))).unwrap_err();
        assert_eq!(status.code, Code::Unavailable);
    }

    #[test]
    fn a_labelled_namespace_passes_the_rule_and_reaches_the_socket_directory() {
        let status = driver(labelled(&[("dragonfly.io/dfdaemon-socket", "allowed")]))
            .publish(&request(Some("socket")))
            .unwrap_err();
        // The rule passed; this machine has no such socket directory.
        assert_eq!(status.code, Code::Unavailable);
        assert!(status.message.contains("/nonexistent/dragonfly"), "{}", status.message);
    }

    #[test]
    fn the_kind_must_be_named_and_known() {
        let allowed = driver(labelled(&[("dragonfly.io/dfdaemon-socket", "allowed")]));
        for kind in [None, Some("host"), Some("")] {
            let status = allowed.publish(&request(kind)).unwrap_err();
            assert_eq!(status.code, Code::InvalidArgument);
            assert!(status.message.contains(KIND_ATTRIBUTE), "{}", status.message);
        }
    }

    #[test]
    fn only_inline_volumes_of_the_pod_the_kubelet_named_are_served() {
        let allowed = driver(labelled(&[("dragonfly.io/dfdaemon-socket", "allowed")]));
        let mut persistent = request(Some("socket"));
        persistent.volume_context.remove(EPHEMERAL);
        assert!(allowed.publish(&persistent).unwrap_err().message.contains("inline ephemeral"));
        let mut other_pod = request(Some("socket"));
        other_pod.volume_context.insert(POD_UID.into(), "1a2b".into());
        assert_eq!(allowed.publish(&other_pod).unwrap_err().code, Code::InvalidArgument);
        let mut block = request(Some("socket"));
        block.block = true;
        assert_eq!(allowed.publish(&block).unwrap_err().code, Code::InvalidArgument);
    }

    #[test]
    fn target_paths_outside_a_pods_csi_volume_are_refused() {
        let d = driver(NamespaceLookup::NotLoaded);
        assert_eq!(d.pod_of_target(TARGET).unwrap(), "0f3e");
        for bad in [
            "/k/pods/0f3e/volumes/kubernetes.io~csi/v/mount/..",
            "/k/pods/0f3e/../../etc/volumes/kubernetes.io~csi/v/mount",
            "/k/pods/0f3e/volumes/kubernetes.io~empty-dir/v/mount",
            "/other/pods/0f3e/volumes/kubernetes.io~csi/v/mount",
            "k/pods/0f3e/volumes/kubernetes.io~csi/v/mount",
            "/k/pods/0f3e/volumes/kubernetes.io~csi/v/mount/deeper",
            "/k/pods",
        ] {
            assert_eq!(d.pod_of_target(bad).unwrap_err().code, Code::InvalidArgument, "{bad}");
            let unpublish = UnpublishRequest { volume_id: "v".into(), target_path: bad.into() };
            assert_eq!(d.unpublish(&unpublish).unwrap_err().code, Code::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn identity_and_node_info_answer_and_unknown_methods_are_unimplemented() {
        let d = driver(NamespaceLookup::NotLoaded);
        assert_eq!(d.handle("/csi.v1.Node/NodeGetInfo", &[]).unwrap(), messages::node_info("n1"));
        assert_eq!(d.handle("/csi.v1.Identity/Probe", &[]).unwrap(), messages::probe(true));
        assert!(d.handle("/csi.v1.Node/NodeGetCapabilities", &[]).unwrap().is_empty());
        assert_eq!(d.handle("/csi.v1.Node/NodeStageVolume", &[]).unwrap_err().code, Code::Unimplemented);
        assert_eq!(d.handle("/csi.v1.Node/NodePublishVolume", &[0x22]).unwrap_err().code, Code::InvalidArgument);
        assert_eq!(d.handle("/csi.v1.Node/NodeUnpublishVolume", &[]).unwrap_err().code, Code::InvalidArgument);
    }
}
