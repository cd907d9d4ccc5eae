//! The webhook's config file (YAML). Every key is optional; unknown keys are rejected.
//!
//! The Helm chart maps its values onto this file, so the key names are part of the interface.
//! See docs/configuration.md for every key and its default.

mod checks;
mod socket;
mod values;

pub use socket::{SocketMount, DFGET_SOCKET};

pub use values::{
    parse_duration, parse_nonzero_duration, AbsolutePath, ConfigDuration, Count, DnsLabel, DnsSubdomain, EnvName,
    ImageRef, LabelRequirement, Platform, Port, Quantity, ResourceName, ToolName,
};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The tools image that carries `dfget` and the copier; the release process publishes it with
/// the same version as the webhook.
pub const DEFAULT_TOOLS_IMAGE: &str =
    concat!("docker.io/dragonflyoss/dragonfly-injector-tools:v", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub socket: SocketConfig,
    pub tools: ToolsConfig,
    pub transfer_from_dfdaemon: TransferFromDfdaemon,
    pub exclude_namespaces: ExcludeNamespaces,
    pub registry: RegistryConfig,
    pub limits: LimitsConfig,
}

/// What one pod may cost the webhook. A pod beyond a limit is admitted unchanged with a warning
/// (reason `over_limit` in the metrics), never half-patched: pods that large are attacks or
/// mistakes, and the API server's own limits (1.5 MiB objects in etcd) are far above them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Containers (with init containers, when those are injected) injected into one pod.
    pub containers: Count,
    /// Bytes of JSON Patch for one pod (before base64).
    pub patch_bytes: Count,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        // A typical patch is 2 to 4 KB, plus about 1.5 KB per further container.
        LimitsConfig { containers: Count(250), patch_bytes: Count(1024 * 1024) }
    }
}

/// How the webhook reaches registries to pin the tools image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// A Docker config file (`.dockerconfigjson`, as in `kubernetes.io/dockerconfigjson`
    /// Secrets) with credentials; anonymous access without it.
    pub docker_config: Option<AbsolutePath>,
    /// PEM certificates trusted in addition to the shipped public roots.
    pub ca_bundle: Option<AbsolutePath>,
    /// Registries (`host[:port]`) spoken to over plain HTTP, for local use.
    pub plain_http: Vec<String>,
    /// Bound on each registry call; oci-client has none of its own.
    pub timeout: ConfigDuration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            docker_config: None,
            ca_bundle: None,
            plain_http: Vec::new(),
            timeout: ConfigDuration(std::time::Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransferFromDfdaemon(pub bool);

impl Default for TransferFromDfdaemon {
    fn default() -> Self {
        Self(true)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExcludeNamespaces(pub Vec<DnsLabel>);

impl Default for ExcludeNamespaces {
    fn default() -> Self {
        Self(vec![DnsLabel::try_from("kube-system".to_owned()).expect("valid label")])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// dfdaemon's HTTP proxy port on every node.
    pub port: Port,
    /// Where the node's address comes from (Downward API).
    pub host_from: HostFrom,
    /// The variable that carries the proxy URL.
    pub env_name: EnvName,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            port: Port(4001),
            // The node's IP always routes to dfdaemon on the host network; node names resolve
            // only where the cluster's DNS serves them.
            host_from: HostFrom::HostIp,
            env_name: EnvName::try_from("DRAGONFLY_INJECT_PROXY".to_owned()).expect("valid name"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HostFrom {
    /// `spec.nodeName` as `NODE_NAME`: needs node names that resolve in the cluster's DNS.
    NodeName,
    /// `status.hostIP` as `HOST_IP`: works where node names do not resolve.
    #[serde(rename = "hostIP")]
    HostIp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SocketConfig {
    pub enabled: bool,
    /// dfdaemon's unix socket on the host (the Go client used `/var/run/dfdaemon.sock`).
    pub path: AbsolutePath,
    /// When set (`key=value`), the socket goes only into pods of namespaces carrying this label,
    /// which cluster admins set: a pod cannot grant itself the socket by an annotation.
    pub namespace_label: Option<LabelRequirement>,
    /// How the socket reaches pods: a hostPath volume, a `csi` volume of the node plugin
    /// (`dragonfly-injector csi`), or hostPath where Pod Security allows it and csi where not.
    pub mode: SocketMode,
    /// The CSI driver's name, for `csi` and `auto`.
    pub csi_driver: DnsSubdomain,
}

impl Default for SocketConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: AbsolutePath::try_from("/var/run/dragonfly/dfdaemon.sock".to_owned()).expect("valid path"),
            namespace_label: None,
            mode: SocketMode::HostPath,
            csi_driver: DnsSubdomain::try_from("csi.dragonfly.io".to_owned()).expect("valid name"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SocketMode {
    HostPath,
    Csi,
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ToolsConfig {
    pub image: ImageRef,
    pub pull_policy: PullPolicy,
    /// Where the tools volume is mounted, in the init container and in the target containers.
    pub mount_path: AbsolutePath,
    pub resources: Resources,
    pub image_pull_secrets: Vec<DnsSubdomain>,
    /// Whether `serve` pins `image` to its index digest.
    pub pinning: Pinning,
    /// How often the tag is resolved again.
    pub refresh_interval: ConfigDuration,
    /// Platforms the resolved index must provide; missing ones are logged and exported.
    pub architectures: Vec<Platform>,
    /// With cluster access, also compare the index with the platforms of the cluster's nodes
    /// (a watch on node metadata; needs list and watch on nodes).
    pub check_node_architectures: bool,
    /// How the target containers find the tools: `link` mounts each of `binaries` at
    /// `linkDir/<tool>` (on every image's default PATH) and never adds PATH to a container that
    /// has none; `prepend` puts `mountPath` first on PATH, setting PATH where the container has
    /// none, which replaces the image's own PATH.
    pub path: ToolsPath,
    /// The files the tools image installs (its SHA256SUMS), linked one by one in `link` mode.
    pub binaries: Vec<ToolName>,
    /// Where `link` mode mounts each tool.
    pub link_dir: AbsolutePath,
    /// A fixed user for the init container; by default none is set, so the image's own
    /// (65532) applies and OpenShift's restricted SCC can assign one from the namespace range.
    pub run_as_user: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolsPath {
    Link,
    Prepend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Pinning {
    /// Not ready until a digest is known.
    Required,
    /// Inject the tag, with a warning, until a digest is known.
    Preferred,
    /// Inject the tag as configured; never call a registry.
    Off,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            image: ImageRef::try_from(DEFAULT_TOOLS_IMAGE.to_owned()).expect("valid image"),
            pull_policy: PullPolicy::IfNotPresent,
            mount_path: AbsolutePath::try_from("/dragonfly/bin".to_owned()).expect("valid path"),
            resources: Resources::default(),
            image_pull_secrets: Vec::new(),
            pinning: Pinning::Preferred,
            refresh_interval: ConfigDuration(std::time::Duration::from_secs(300)),
            architectures: ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x"]
                .map(|p| Platform::try_from(p.to_owned()).expect("valid"))
                .to_vec(),
            check_node_architectures: true,
            path: ToolsPath::Link,
            binaries: ["dfget", "dfcache", "dfstore", "dfctl"].map(|t| ToolName(t.to_owned())).to_vec(),
            link_dir: AbsolutePath::try_from("/usr/local/bin".to_owned()).expect("valid path"),
            run_as_user: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Requests and limits of the init container. Small by default, but present, so namespaces with
/// a ResourceQuota or a LimitRange that demands them still admit injected pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Resources {
    pub requests: BTreeMap<ResourceName, Quantity>,
    pub limits: BTreeMap<ResourceName, Quantity>,
}

impl Default for Resources {
    fn default() -> Self {
        let quantities = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(name, value)| {
                    (
                        ResourceName::try_from((*name).to_owned()).expect("valid"),
                        Quantity::try_from((*value).to_owned()).expect("valid"),
                    )
                })
                .collect()
        };
        Self {
            requests: quantities(&[("cpu", "10m"), ("memory", "16Mi")]),
            limits: quantities(&[("cpu", "100m"), ("memory", "64Mi")]),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The message from the YAML parser names the key path, line and column.
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_yaml(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })
    }

    /// Parses the file's text. An empty file (or one with only comments) means all defaults.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let only_comments = text.lines().all(|line| {
            let line = line.trim();
            line.is_empty() || line.starts_with('#') || line == "---"
        });
        if only_comments {
            return Ok(Self::default());
        }
        let config: Config = serde_yaml_ng::from_str(text).map_err(|error| describe_yaml_error(text, &error))?;
        checks::all(&config, Some(text))?;
        Ok(config)
    }
}

/// The parser names the map that holds a value it could not accept (`proxy: ... at line 2
/// column 3`), and the location points at the key itself: complete the path with that key so
/// the message reads `proxy.port: ...`.
fn describe_yaml_error(text: &str, error: &serde_yaml_ng::Error) -> String {
    let message = error.to_string();
    let Some(location) = error.location() else { return message };
    let key = text.lines().nth(location.line().saturating_sub(1)).and_then(|line| {
        // In flow style (`proxy: {port: 0}`) the location points at the brace.
        let rest = line.get(location.column().saturating_sub(1)..)?.trim_start_matches(['{', ',', ' ']);
        let (key, _) = rest.split_once(':')?;
        let key = key.trim();
        let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        plain.then_some(key)
    });
    let Some(key) = key else { return message };
    match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') && path != key && !path.ends_with(&format!(".{key}")) => {
            format!("{path}.{key}: {rest}")
        }
        Some((path, _)) if !path.contains(' ') => message,
        _ => format!("{key}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let config = Config::from_yaml("# nothing set\n").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.proxy.port, Port(4001));
        assert_eq!(config.socket.path.as_str(), "/var/run/dragonfly/dfdaemon.sock");
        assert_eq!(config.tools.mount_path.as_str(), "/dragonfly/bin");
        assert!(config.transfer_from_dfdaemon.0);
        assert_eq!(config.exclude_namespaces.0[0].as_str(), "kube-system");
        assert_eq!(config.tools.pinning, Pinning::Preferred);
        assert_eq!(config.tools.refresh_interval.0, std::time::Duration::from_secs(300));
        // The platforms the release process publishes the tools image for.
        let architectures: Vec<&str> = config.tools.architectures.iter().map(|p| p.as_str()).collect();
        assert_eq!(architectures, test_kit::pinned_default_list("TOOLS_PLATFORMS"));
        assert_eq!(config.registry.timeout.0, std::time::Duration::from_secs(10));
        assert_eq!(config.proxy.host_from, HostFrom::HostIp);
        assert_eq!(config.tools.path, ToolsPath::Link);
        assert_eq!(config.tools.link_dir.as_str(), "/usr/local/bin");
        let binaries: Vec<&str> = config.tools.binaries.iter().map(ToolName::as_str).collect();
        assert_eq!(binaries, ["dfget", "dfcache", "dfstore", "dfctl"]);
        assert_eq!(config.tools.run_as_user, None);
    }

    #[test]
    fn every_documented_key_is_read() {
        let text = r#"
proxy: {port: 65001, hostFrom: nodeName, envName: MY_PROXY}
socket: {enabled: false, path: /var/run/dfdaemon.sock}
tools:
  image: registry.local:5000/tools:v2
  pullPolicy: Always
  mountPath: /opt/df
  resources: {requests: {cpu: 5m}, limits: {memory: 32Mi}}
  imagePullSecrets: [regcred]
  pinning: required
  refreshInterval: 90s
  architectures: [linux/amd64, linux/arm/v7]
  checkNodeArchitectures: false
  path: prepend
  binaries: [dfget]
  linkDir: /opt/bin
  runAsUser: 1000
transferFromDfdaemon: false
excludeNamespaces: [kube-system, dragonfly-system]
registry:
  dockerConfig: /etc/dragonfly/registry/.dockerconfigjson
  caBundle: /etc/dragonfly/registry/ca.pem
  plainHttp: [localhost:5000]
  timeout: 3s
limits: {containers: 10, patchBytes: 65536}
"#;
        let gated = Config::from_yaml("socket: {namespaceLabel: example.com/socket=on}\n").unwrap();
        let label = gated.socket.namespace_label.unwrap();
        assert_eq!((label.key.as_str(), label.value.as_str()), ("example.com/socket", "on"));
        for bad in ["novalue", "=x", "a b=c", "-a=b", "x/=y", "k=-v", "Bad_Prefix!/k=v"] {
            let error = Config::from_yaml(&format!("socket: {{namespaceLabel: \"{bad}\"}}\n")).unwrap_err();
            assert!(error.starts_with("socket.namespaceLabel"), "{bad}: {error}");
        }
        let config = Config::from_yaml(text).unwrap();
        assert_eq!(config.limits, LimitsConfig { containers: Count(10), patch_bytes: Count(65536) });
        for zero in ["limits: {containers: 0}\n", "limits: {patchBytes: -1}\n"] {
            let error = Config::from_yaml(zero).unwrap_err();
            assert!(error.starts_with("limits."), "{error}");
        }
        assert_eq!(config.proxy.port, Port(65001));
        assert_eq!(config.proxy.host_from, HostFrom::NodeName);
        assert_eq!(config.proxy.env_name.as_str(), "MY_PROXY");
        assert_eq!(config.tools.path, ToolsPath::Prepend);
        assert_eq!(config.tools.binaries, [ToolName("dfget".to_owned())]);
        assert_eq!(config.tools.link_dir.as_str(), "/opt/bin");
        assert_eq!(config.tools.run_as_user, Some(1000));
        assert!(!config.socket.enabled);
        assert_eq!(config.socket.path.as_str(), "/var/run/dfdaemon.sock");
        assert_eq!(config.tools.image.as_str(), "registry.local:5000/tools:v2");
        assert_eq!(config.tools.pull_policy, PullPolicy::Always);
        assert_eq!(config.tools.mount_path.as_str(), "/opt/df");
        assert_eq!(config.tools.resources.requests.len(), 1);
        assert_eq!(config.tools.resources.limits.values().next().unwrap().as_str(), "32Mi");
        assert_eq!(config.tools.image_pull_secrets[0].as_str(), "regcred");
        assert!(!config.transfer_from_dfdaemon.0);
        assert_eq!(config.exclude_namespaces.0.len(), 2);
        assert_eq!(config.tools.pinning, Pinning::Required);
        assert_eq!(config.tools.refresh_interval.0, std::time::Duration::from_secs(90));
        assert_eq!(config.tools.architectures[1].as_str(), "linux/arm/v7");
        assert!(!config.tools.check_node_architectures);
        assert_eq!(
            config.registry.docker_config.as_ref().unwrap().as_str(),
            "/etc/dragonfly/registry/.dockerconfigjson"
        );
        assert_eq!(config.registry.plain_http, ["localhost:5000"]);
        assert_eq!(config.registry.timeout.0, std::time::Duration::from_secs(3));
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path_and_line() {
        let error = Config::from_yaml("proxy:\n  port: 4001\n  prot: 1\n").unwrap_err();
        assert!(error.contains("proxy"), "{error}");
        assert!(error.contains("unknown field `prot`"), "{error}");
        assert!(error.contains("line 3"), "{error}");
    }

    #[test]
    fn bad_values_are_rejected_with_their_path_and_line() {
        let cases = [
            ("proxy:\n  port: 70000\n", "proxy.port", "70000 is not a port"),
            (
                "tools:\n  resources:\n    requests:\n      cpu: lots\n",
                "tools.resources.requests.cpu",
                "not a Kubernetes quantity",
            ),
            ("tools:\n  mountPath: relative/dir\n", "tools.mountPath", "not an absolute path"),
            ("tools:\n  image: Not An Image\n", "tools.image", "not a valid image reference"),
            ("tools:\n  pullPolicy: Sometimes\n", "tools.pullPolicy", "unknown variant"),
            ("proxy:\n  hostFrom: podIP\n", "proxy.hostFrom", "unknown variant"),
            ("excludeNamespaces: [Kube_System]\n", "excludeNamespaces", "not a valid DNS label"),
            ("proxy: {port: 0}\n", "proxy.port", "0 is not a port"),
            ("transferFromDfdaemon: maybe\n", "transferFromDfdaemon", "invalid type"),
            ("tools:\n  refreshInterval: soon\n", "tools.refreshInterval", "not a duration"),
            ("tools:\n  pinning: always\n", "tools.pinning", "unknown variant"),
            ("tools:\n  architectures: [arm64]\n", "tools.architectures", "not a platform"),
            ("registry:\n  timeout: 0s\n", "registry.timeout", "longer than zero"),
            ("tools:\n  path: symlink\n", "tools.path", "unknown variant"),
            ("tools:\n  binaries: [bin/dfget]\n", "tools.binaries", "not a file name"),
            ("tools:\n  linkDir: bin\n", "tools.linkDir", "not an absolute path"),
            ("tools:\n  runAsUser: -1\n", "tools.runAsUser", "expected u32"),
        ];
        for (text, key, reason) in cases {
            let error = Config::from_yaml(text).unwrap_err();
            assert!(error.contains(key), "{text:?}: {error}");
            assert!(error.contains(reason), "{text:?}: {error}");
            assert!(error.contains("line "), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_missing_file_is_reported_with_its_path() {
        let error = Config::load(Path::new("/nonexistent/injector.yaml")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/injector.yaml"), "{error}");
    }
}
