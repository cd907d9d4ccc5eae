//! What the webhook reads from the cluster: the client (a kubeconfig, the pod's service account,
//! or none), the injector's own namespace, and watch caches, metadata only, never an API call on
//! the request path: namespace labels decide namespace-level opt-in and the Pod Security check
//! ([`NamespaceCache`]); node labels tell which platforms the tools image must serve
//! ([`NodeCache`]).

mod namespaces;
mod nodes;

pub use namespaces::NamespaceCache;
pub use nodes::NodeCache;

use anyhow::Context as _;
use clap::Args;
use futures::StreamExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use std::path::PathBuf;

/// Starts a metadata-only watch of every `K` into a store, in the background, retrying with
/// backoff. An Api over PartialObjectMeta makes metadata-only requests: labels without specs.
pub(crate) fn watch_metadata<K>(client: Client, on_error: &'static str) -> Store<PartialObjectMeta<K>>
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

const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Kubeconfig for namespace labels when running outside a cluster. Inside one, the pod's
    /// service account is used. With neither, namespace opt-in and the Pod Security check are off.
    #[arg(long, env = "DRAGONFLY_INJECTOR_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The injector's own namespace, always excluded (default: the service account's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
}

impl ClusterArgs {
    /// `--namespace`, else the service account's namespace, else none.
    pub fn own_namespace(&self) -> Option<String> {
        self.namespace.clone().or_else(|| {
            std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                .ok()
                .map(|ns| ns.trim().to_owned())
                .filter(|ns| !ns.is_empty())
        })
    }

    /// A client from `--kubeconfig`, else from the pod's service account; `None` outside a
    /// cluster without a kubeconfig.
    pub async fn client(&self) -> anyhow::Result<Option<kube::Client>> {
        let config = if let Some(path) = &self.kubeconfig {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("kubeconfig {} is not usable", path.display()))?
        } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            kube::Config::incluster().context("running in a cluster, but its service account is not usable")?
        } else {
            return Ok(None);
        };
        Ok(Some(kube::Client::try_from(config).context("building the Kubernetes client")?))
    }
}
