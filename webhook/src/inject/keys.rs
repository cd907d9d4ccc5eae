//! Annotation and label keys: part of the user-facing interface, documented in the README.

/// Pod annotation, `"true"` or `"false"`; namespace label `enabled` (or `true`).
pub const INJECT: &str = "dragonfly.io/inject-p2p";
/// The Go injector's key, accepted the same way so its users can move over.
pub const LEGACY_INJECT: &str = "dragonfly.io/inject";
/// Comma-separated names of the containers to inject (default: all of `spec.containers`).
pub const INJECT_CONTAINERS: &str = "dragonfly.io/inject-containers";
pub const PROXY_PORT: &str = "dragonfly.io/proxy-port";
pub const TOOLS_IMAGE: &str = "dragonfly.io/tools-image";
pub const SKIP_SOCKET: &str = "dragonfly.io/skip-socket";
/// Written by the injector: what it injected, as JSON.
pub const STATUS: &str = "dragonfly.io/injected";

pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";
pub const MIRROR_POD: &str = "kubernetes.io/config.mirror";
pub const NODE_OS: &str = "kubernetes.io/os";
