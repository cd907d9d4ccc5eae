//! Watch caches, metadata only, never an API call on the request path: namespace labels decide
//! namespace-level opt-in and the Pod Security check; node labels tell which platforms the
//! tools image must serve.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Starts a metadata-only watch of every `K` into a store, in the background, retrying with
/// backoff. An Api over PartialObjectMeta makes metadata-only requests: labels without specs.
fn watch_metadata<K>(client: Client, on_error: &'static str) -> Store<PartialObjectMeta<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let api: Api<PartialObjectMeta<K>> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff().reflect(writer).applied_objects();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(error) = event {
                tracing::warn!(%error, "{on_error}; retrying with backoff");
            }
        }
    });
    store
}

#[derive(Clone)]
pub struct NamespaceCache {
    store: Store<PartialObjectMeta<Namespace>>,
    synced: Arc<AtomicBool>,
}

impl NamespaceCache {
    /// Starts the watch in the background. The cache reports synced after the initial list.
    pub fn start(client: Client) -> Self {
        let store = watch_metadata::<Namespace>(client, "namespace watch error");
        let synced = Arc::new(AtomicBool::new(false));
        let cache = NamespaceCache { store: store.clone(), synced: synced.clone() };
        tokio::spawn(async move {
            if store.wait_until_ready().await.is_ok() {
                synced.store(true, Ordering::SeqCst);
                tracing::info!(namespaces = store.len(), "namespace cache synced");
            }
        });
        cache
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// The namespace's labels; `None` when the namespace is not (yet) in the cache.
    pub fn labels(&self, namespace: &str) -> Option<Arc<BTreeMap<String, String>>> {
        let object = self.store.get(&ObjectRef::new(namespace))?;
        Some(Arc::new(object.metadata.labels.clone().unwrap_or_default()))
    }
}

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
