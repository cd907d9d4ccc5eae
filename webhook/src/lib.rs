//! Dragonfly Injector: a mutating admission webhook that wires pods to Dragonfly's dfdaemon.
//!
//! - [`inject`]: the engine, pure decision and patch logic (pod JSON in, JSON Patch out).
//! - [`admission`]: AdmissionReview parsing and response building around it.
//! - [`server`]: `serve`, the HTTPS webhook, the admin port, certificate reloading, shutdown.
//! - [`offline`]: `inject`, the engine run over manifests for GitOps.
//! - [`pinning`]: the tools image pinned to its index digest, and `resolve`.
//! - [`cluster`]: the Kubernetes client and the namespace and node watch caches.
//! - [`config`], [`image`]: the config file and image references.
//! - [`cli`]: the composition root; nothing imports it.
//!
//! Each module imports only modules listed below it in `tests/module_graph.rs`.

pub mod admission;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod image;
pub mod inject;
pub mod logging;
pub mod metrics;
pub mod offline;
pub mod pinning;
pub mod server;
