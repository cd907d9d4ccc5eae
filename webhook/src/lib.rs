//! Dragonfly Injector: a mutating admission webhook that wires pods to Dragonfly's dfdaemon.
//!
//! - [`inject`]: the engine, pure decision and patch logic (pod JSON in, JSON Patch out).
//! - [`admission`]: AdmissionReview parsing and response building around it.
//! - [`server`]: `serve`, the HTTPS webhook, the admin port, certificate reloading, shutdown.
//! - [`csi`]: `csi`, the node plugin that brings the dfdaemon socket to pods through CSI volumes.
//! - [`offline`]: `inject`, the engine run over manifests for GitOps.
//! - [`pinning`]: the tools image pinned to its index digest, and `resolve`.
//! - [`cluster`]: the Kubernetes client and the namespace and node watch caches.
//! - [`logging`], [`metrics`]: JSON or text logs and their flags; the Prometheus metrics.
//! - [`config`], [`image`]: the config file and image references.
//! - [`cli`]: the composition root; nothing imports it.
//!
//! Each module imports only modules listed below it in `tests/module_graph.rs`. Without the
//! default `server` feature only the engine is built (admission, config, image, inject and
//! offline's YAML round trip): what the fuzz targets need.

pub mod admission;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod cluster;
pub mod config;
#[cfg(feature = "server")]
pub mod csi;
pub mod image;
pub mod inject;
mod labels;
#[cfg(feature = "server")]
pub mod logging;
#[cfg(feature = "server")]
pub mod metrics;
pub mod offline;
#[cfg(feature = "server")]
pub mod pinning;
#[cfg(feature = "server")]
pub mod server;
