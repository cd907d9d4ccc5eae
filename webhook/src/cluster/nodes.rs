//! Node platforms from a metadata-only watch: which platforms the tools image must serve.

use super::watch_metadata;
use k8s_openapi::api::core::v1::Node;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use kube::Client;
use std::collections::BTreeSet;

/// The platforms of the cluster's nodes, from their `kubernetes.io/os` and `kubernetes.io/arch`
/// labels. Needs `list` and `watch` on nodes.
#[derive(Clone)]
pub struct NodeCache {
    store: Store<PartialObjectMeta<Node>>,
}

impl NodeCache {
    pub fn start(client: Client) -> Self {
        let store =
            watch_metadata::<Node>(client, "node watch error (the architecture check needs list/watch on nodes)");
        NodeCache { store }
    }

    /// `None` until the first list has arrived.
    pub fn platforms(&self) -> Option<BTreeSet<String>> {
        if self.store.is_empty() {
            return None;
        }
        Some(
            self.store
                .state()
                .iter()
                .filter_map(|node| {
                    let labels = node.metadata.labels.as_ref()?;
                    let arch = labels.get("kubernetes.io/arch")?;
                    let os = labels.get("kubernetes.io/os").map_or("linux", String::as_str);
                    Some(format!("{os}/{arch}"))
                })
                .collect(),
        )
    }
}
