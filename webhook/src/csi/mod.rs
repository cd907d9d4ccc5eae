//! `csi`: the node plugin that serves the dfdaemon socket to pods through CSI inline ephemeral
//! volumes, for namespaces whose Pod Security (`baseline`, `restricted`, OpenShift's
//! `restricted-v2`) forbids the hostPath the webhook otherwise mounts. `csi` volumes are allowed
//! there; only the plugin's own DaemonSet needs the host. One per node, from the webhook's image.
//!
//! - [`grpc`]: unary gRPC over HTTP/2 on a unix socket, with [`authority`] mending the
//!   `:authority` the kubelet's registration client sends; [`wire`] and [`messages`]: the protobuf
//!   messages, by field number, written by hand so the binary carries no generated code.
//! - [`registration`]: the kubelet's plugin registration, served here instead of by a sidecar.
//! - [`node`]: Identity and Node, and the namespace label rule that guards the socket.
//! - [`mounts`]: read-only bind mounts, and the mount table as the plugin's only state.

mod authority;
mod grpc;
mod messages;
mod mounts;
mod node;
mod registration;
/// Public for the tests that speak to the plugin as the kubelet does.
pub mod wire;

use crate::cluster::{ClusterArgs, NamespaceCache};
use crate::config::LabelRequirement;
use crate::server::admin::readiness;
use anyhow::Context as _;
use axum::routing::get;
use clap::Args;
use node::{Driver, NamespaceLookup, Namespaces};
use registration::Registration;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio::sync::watch;

#[derive(Debug, Args)]
pub struct CsiArgs {
    /// The driver's name: the CSIDriver object's, which pods' `csi` volumes name.
    #[arg(long, env = "DRAGONFLY_CSI_DRIVER", default_value = "csi.dragonfly.io")]
    pub driver: String,
    /// This node's name (the Downward API's spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// The kubelet's directory, mounted at the same path in the plugin's container (with
    /// Bidirectional propagation, so the kubelet sees the mounts made under it).
    #[arg(long, env = "DRAGONFLY_CSI_KUBELET_DIR", default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,
    /// The host's dfdaemon socket directory, as the plugin's container sees it.
    #[arg(long, env = "DRAGONFLY_CSI_SOCKET_DIR", default_value = "/var/run/dragonfly")]
    pub socket_dir: PathBuf,
    /// The label (`key=value`) a namespace needs for the socket; required, so the socket is never
    /// granted without an administrator's decision.
    #[arg(long, env = "DRAGONFLY_CSI_NAMESPACE_LABEL", value_parser = parse_label)]
    pub namespace_label: LabelRequirement,
    /// The probes' port: `/livez`, and `/readyz` once the kubelet has registered the driver and the
    /// namespace labels are loaded.
    #[arg(long, env = "DRAGONFLY_CSI_ADMIN_ADDR", default_value = "0.0.0.0:9809")]
    pub admin_addr: SocketAddr,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

fn parse_label(text: &str) -> Result<LabelRequirement, String> {
    LabelRequirement::try_from(text.to_owned())
}

/// A fresh listener at `path`: a socket left by an earlier run is replaced.
fn listen(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("removing the old socket {}", path.display()))
        }
        _ => {}
    }
    UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))
}

/// Runs the plugin until SIGTERM or SIGINT, then removes its sockets: the kubelet forgets the
/// driver, and pods that need it wait until a plugin registers again. Mounts already published
/// stay: they live in the host's mount table, not in this process.
pub async fn run(args: CsiArgs) -> anyhow::Result<()> {
    let mut signals = crate::server::Signals::new()?;
    let client =
        args.cluster.client().await?.context(
            "the plugin reads namespace labels from the API server: run it in a cluster or give --kubeconfig",
        )?;
    let cache = NamespaceCache::start(client);
    let registered = Arc::new(AtomicBool::new(false));
    let endpoint = args.kubelet_dir.join("plugins").join(&args.driver).join("csi.sock");
    let registration_socket = args.kubelet_dir.join("plugins_registry").join(format!("{}-reg.sock", args.driver));

    let labels = cache.clone();
    let namespaces: Namespaces = Arc::new(move |namespace| {
        if !labels.is_synced() {
            return NamespaceLookup::NotLoaded;
        }
        labels.labels(namespace).map_or(NamespaceLookup::Unknown, NamespaceLookup::Labels)
    });
    let driver = Arc::new(Driver {
        name: args.driver.clone(),
        node_id: args.node_name.clone(),
        kubelet_dir: args.kubelet_dir.clone(),
        socket_dir: args.socket_dir.clone(),
        label: args.namespace_label.clone(),
        namespaces,
    });
    let registration = Arc::new(Registration {
        name: args.driver.clone(),
        endpoint: endpoint.to_string_lossy().into_owned(),
        registered: registered.clone(),
    });
    let (stop, stopped) = watch::channel(false);
    // The CSI socket serves before the registration socket appears: the kubelet calls the
    // endpoint as soon as it has registered the driver.
    let serving = driver.clone();
    let csi =
        tokio::spawn(grpc::serve(listen(&endpoint)?, Arc::new(move |m, b| serving.handle(m, b)), stopped.clone()));
    let registering = registration.clone();
    let reg = tokio::spawn(grpc::serve(
        listen(&registration_socket)?,
        Arc::new(move |m, b| registering.handle(m, b)),
        stopped.clone(),
    ));
    let admin_listener =
        tokio::net::TcpListener::bind(args.admin_addr).await.with_context(|| format!("binding {}", args.admin_addr))?;
    let ready = move || {
        let mut missing = Vec::new();
        if !registered.load(Ordering::SeqCst) {
            missing.push("the kubelet has not registered the driver");
        }
        if !cache.is_synced() {
            missing.push("namespace labels not loaded");
        }
        readiness(&missing)
    };
    let admin = axum::Router::new().route("/livez", get(|| async { "ok\n" })).route(
        "/readyz",
        get(move || {
            let answer = ready();
            async move { answer }
        }),
    );
    let mut admin_stopped = stopped.clone();
    let admin = tokio::spawn(async move {
        let shutdown = async move {
            let _ = admin_stopped.wait_for(|stop| *stop).await;
        };
        axum::serve(admin_listener, admin).with_graceful_shutdown(shutdown).await
    });
    tracing::info!(driver = %args.driver, endpoint = %endpoint.display(), label = %String::from(args.namespace_label.clone()), "CSI node plugin serving");

    signals.next().await;
    let _ = stop.send(true);
    // The registration socket first: the kubelet stops sending calls before the endpoint goes.
    for socket in [&registration_socket, &endpoint] {
        let _ = std::fs::remove_file(socket);
    }
    // The endpoint's own directory, which this plugin made; nothing else lives there.
    if let Some(dir) = endpoint.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    let _ = tokio::join!(csi, reg, admin);
    tracing::info!("CSI node plugin stopped");
    Ok(())
}
