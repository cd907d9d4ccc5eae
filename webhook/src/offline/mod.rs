//! `dragonfly-injector inject`: the engine run offline over manifests for GitOps, like
//! `istioctl kube-inject`.
//! Reads YAML or JSON (one or many documents), injects Pods and the pod templates of workload
//! kinds, and writes every document back in order. Output is produced whole before anything is
//! written, so a bad document leaves standard output empty.

pub mod yaml;

// The YAML round trip above is pure; the command needs the registry client and clap, which the
// engine-only build (the fuzz targets: `default-features = false`) leaves out.
#[cfg(feature = "server")]
mod command;
#[cfg(feature = "server")]
pub use command::*;
