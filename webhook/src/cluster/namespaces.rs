//! Namespace labels from a metadata-only watch: namespace-level opt-in and the Pod Security check.

use super::watch_metadata;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
