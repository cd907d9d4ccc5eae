//! Dragonfly Injector: a mutating admission webhook that wires pods to Dragonfly's dfdaemon.
//!
//! - [`inject`]: the pure decision and patch logic (pod JSON in, JSON Patch out).
//! - [`admission`]: AdmissionReview parsing and response building around it.
//! - [`server`]: the HTTPS webhook, the admin port, certificate reloading, shutdown.
//! - [`manifests`]: the offline `inject` command for GitOps.

pub mod admission;
pub mod cli;
pub mod config;
pub mod inject;
pub mod logging;
pub mod manifests;
pub mod metrics;
pub mod namespaces;
pub mod pinning;
pub mod server;
