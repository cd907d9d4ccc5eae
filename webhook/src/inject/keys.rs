//! Annotation and label keys: part of the user-facing interface, documented in docs/injection.md.

/// Pod annotation, `"true"` or `"false"`; namespace label `enabled` (or `true`).
pub const INJECT: &str = "dragonfly.io/inject-p2p";
/// The Go injector's key, accepted the same way so its users can move over.
pub const LEGACY_INJECT: &str = "dragonfly.io/inject";
/// Comma-separated names of the containers to inject (default: all of `spec.containers`).
pub const INJECT_CONTAINERS: &str = "dragonfly.io/inject-containers";
/// `"true"`: also inject the pod's own init containers and native sidecars (after the tools init
/// container, so they can run dfget). The name is the one of the Go injector's PR #68.
pub const INJECT_INIT_CONTAINERS: &str = "dragonfly.io/inject-init-containers";
pub const PROXY_PORT: &str = "dragonfly.io/proxy-port";
pub const TOOLS_IMAGE: &str = "dragonfly.io/tools-image";
pub const SKIP_SOCKET: &str = "dragonfly.io/skip-socket";
/// The Go injector's names for the same two, as Dragonfly's documentation tells users to write
/// them; ours win when both are set.
pub const LEGACY_TOOLS_IMAGE: &str = "dragonfly.io/init-container-image";
pub const LEGACY_SKIP_SOCKET: &str = "dragonfly.io/skip-unix-sock-inject";
/// Written by the injector: what it injected, as JSON.
pub const STATUS: &str = "dragonfly.io/injected";

pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";
pub const MIRROR_POD: &str = "kubernetes.io/config.mirror";
pub const NODE_OS: &str = "kubernetes.io/os";
