//! Validated scalar types used by the config file: the strings `validated_string!` makes, and
//! the hand-written ones (a count, a port, a label requirement, tool and resource names).
//!
//! Each type checks its value while it is being deserialised, so a bad value is reported by the
//! YAML parser together with the key path and the line, instead of surfacing later as a pod the
//! API server rejects.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! validated_string {
    ($(#[$meta:meta])* $name:ident, $check:path) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                $check(&value).map(|()| Self(value))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

validated_string!(
    /// An absolute path without `:` (it ends up inside `PATH`) or whitespace.
    AbsolutePath,
    check_absolute_path
);
validated_string!(
    /// A Kubernetes resource quantity such as `10m`, `64Mi` or `0.5`.
    Quantity,
    check_quantity
);
validated_string!(
    /// A container environment variable name, as Kubernetes validates it.
    EnvName,
    check_env_name
);
validated_string!(
    /// An image reference: `[registry/]repository[:tag][@sha256:<64 hex>]`.
    ImageRef,
    check_image_ref
);
validated_string!(
    /// A DNS-1123 label: namespace and Secret names.
    DnsLabel,
    check_dns_label
);
validated_string!(
    /// A DNS-1123 subdomain: Secret names may contain dots.
    DnsSubdomain,
    check_dns_subdomain
);

/// `500ms`, `5s`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration (like 500ms, 5s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?} has an unknown unit (use ms, s, m or h)")),
    };
    std::time::Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// As [`parse_duration`], for a command-line interval or timeout that must not be zero (a zero
/// timer would spin).
pub fn parse_nonzero_duration(text: &str) -> Result<std::time::Duration, String> {
    match parse_duration(text)? {
        zero if zero.is_zero() => Err(format!("{text:?} must be longer than zero")),
        duration => Ok(duration),
    }
}

/// A duration written as `30s`, `5m` or `1h` in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConfigDuration(pub std::time::Duration);

impl TryFrom<String> for ConfigDuration {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match parse_duration(&value)? {
            zero if zero.is_zero() => Err(format!("{value:?} must be longer than zero")),
            duration => Ok(ConfigDuration(duration)),
        }
    }
}

impl From<ConfigDuration> for String {
    fn from(value: ConfigDuration) -> String {
        format!("{}ms", value.0.as_millis())
    }
}

validated_string!(
    /// A platform `os/architecture[/variant]`, such as `linux/arm64` or `linux/arm/v7`.
    Platform,
    check_platform
);

pub fn check_platform(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split('/').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    if ok {
        Ok(())
    } else {
        Err(format!("{value:?} is not a platform (os/architecture[/variant], like linux/arm64)"))
    }
}

pub fn check_absolute_path(value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err(format!("{value:?} is not an absolute path"));
    }
    if value.contains(':') || value.chars().any(char::is_whitespace) {
        return Err(format!("{value:?} must not contain ':' or whitespace"));
    }
    if value.len() > 1 && value.ends_with('/') {
        return Err(format!("{value:?} must not end with '/'"));
    }
    if value.split('/').any(|part| part == "..") {
        return Err(format!("{value:?} must not contain '..'"));
    }
    Ok(())
}

/// Kubernetes' quantity grammar: a signed decimal number followed by an optional binary
/// (`Ki`..`Ei`) or decimal (`m`, `k`, `M`..`E`) suffix or a decimal exponent.
pub fn check_quantity(value: &str) -> Result<(), String> {
    let bad = || Err(format!("{value:?} is not a Kubernetes quantity (for example 10m, 64Mi, 0.5)"));
    let unsigned = value.strip_prefix(['+', '-']).unwrap_or(value);
    let number_len = unsigned.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_len);
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    let fraction_ok = fraction.is_none_or(|f| !f.contains('.'));
    if number.is_empty() || !fraction_ok || (whole.is_empty() && fraction.is_none_or(str::is_empty)) {
        return bad();
    }
    let suffix_ok = match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        exponent if exponent.starts_with(['e', 'E']) => {
            let digits = exponent[1..].strip_prefix(['+', '-']).unwrap_or(&exponent[1..]);
            !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    };
    if suffix_ok {
        Ok(())
    } else {
        bad()
    }
}

/// Kubernetes accepts any printable ASCII except `=` since 1.30, but `$(NAME)` expansion and
/// shells only work with C identifiers plus `-` and `.`, which is what older API servers enforce.
pub fn check_env_name(value: &str) -> Result<(), String> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '-' || c == '.');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
        Ok(())
    } else {
        Err(format!("{value:?} is not a valid environment variable name"))
    }
}

pub fn check_dns_label(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("{value:?} is not a valid DNS label (lowercase letters, digits and '-')"))
    }
}

pub fn check_dns_subdomain(value: &str) -> Result<(), String> {
    if value.len() <= 253 && value.split('.').all(|label| check_dns_label(label).is_ok()) {
        Ok(())
    } else {
        Err(format!("{value:?} is not a valid Kubernetes object name"))
    }
}

pub fn check_image_ref(value: &str) -> Result<(), String> {
    crate::image::ImageParts::parse(value).map(|_| ()).map_err(|error| error.to_string())
}

// The hand-written validated types: a number, a port, a label requirement and two names whose
// checks do not fit `validated_string!`.

/// A positive whole number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Count(pub usize);

impl TryFrom<u64> for Count {
    type Error = String;
    fn try_from(value: u64) -> Result<Self, String> {
        match usize::try_from(value) {
            Ok(count) if count > 0 => Ok(Count(count)),
            _ => Err(format!("{value} must be a positive whole number")),
        }
    }
}

impl From<Count> for u64 {
    fn from(count: Count) -> u64 {
        count.0 as u64
    }
}

/// A TCP port, 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u16")]
pub struct Port(pub u16);

impl TryFrom<u64> for Port {
    type Error = String;
    fn try_from(value: u64) -> Result<Self, String> {
        match u16::try_from(value) {
            Ok(port) if port > 0 => Ok(Port(port)),
            _ => Err(format!("{value} is not a port (1 to 65535)")),
        }
    }
}

impl From<Port> for u16 {
    fn from(port: Port) -> u16 {
        port.0
    }
}

/// A label a namespace must carry, written `key=value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LabelRequirement {
    pub key: String,
    pub value: String,
}

impl TryFrom<String> for LabelRequirement {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a label requirement (key=value, a Kubernetes label key and value)");
        let (key, value) = text.split_once('=').ok_or_else(bad)?;
        let (prefix, name) = key.rsplit_once('/').map_or((None, key), |(p, n)| (Some(p), n));
        let name_ok = |s: &str, max: usize| {
            !s.is_empty()
                && s.len() <= max
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        };
        let value_ok = value.is_empty() || name_ok(value, 63);
        if !name_ok(name, 63) || prefix.is_some_and(|p| check_dns_subdomain(p).is_err() || p.is_empty()) || !value_ok {
            return Err(bad());
        }
        Ok(LabelRequirement { key: key.to_owned(), value: value.to_owned() })
    }
}

impl From<LabelRequirement> for String {
    fn from(requirement: LabelRequirement) -> String {
        format!("{}={}", requirement.key, requirement.value)
    }
}

/// A file name in the tools directory: no slash, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ToolName(pub(super) String);

impl TryFrom<String> for ToolName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let ok = !value.is_empty()
            && value.len() <= 255
            && value != "."
            && value != ".."
            && !value.contains('/')
            && !value.chars().any(char::is_control);
        if ok {
            Ok(Self(value))
        } else {
            Err(format!("{value:?} is not a file name"))
        }
    }
}

impl From<ToolName> for String {
    fn from(value: ToolName) -> String {
        value.0
    }
}

impl ToolName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `cpu`, `memory`, `ephemeral-storage` or a qualified extended resource name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceName(String);

impl TryFrom<String> for ResourceName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let ok = !value.is_empty()
            && value.len() <= 253
            && value.chars().all(|c| c.is_ascii_alphanumeric() || "-._/".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric());
        if ok {
            Ok(Self(value))
        } else {
            Err(format!("{value:?} is not a resource name"))
        }
    }
}

impl From<ResourceName> for String {
    fn from(value: ResourceName) -> String {
        value.0
    }
}

impl ResourceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_follow_the_kubernetes_grammar() {
        for good in ["10m", "64Mi", "0.5", "1", "1.5Gi", ".5", "1e3", "2E-2", "+1k", "100"] {
            assert!(check_quantity(good).is_ok(), "{good} should be accepted");
        }
        for bad in ["", "ten", "10 m", "10mb", "Mi", ".", "1e", "1.2.3", "64MI", "--1"] {
            assert!(check_quantity(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn absolute_paths_reject_path_separators_and_relative_forms() {
        assert!(check_absolute_path("/dragonfly/bin").is_ok());
        assert!(check_absolute_path("/").is_ok());
        for bad in ["dragonfly/bin", "/a:b", "/a b", "/a/", "/a/../b", ""] {
            assert!(check_absolute_path(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        use std::time::Duration;
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn env_names_and_dns_labels() {
        assert!(check_env_name("DRAGONFLY_INJECT_PROXY").is_ok());
        assert!(check_env_name("1ABC").is_err());
        assert!(check_env_name("A=B").is_err());
        assert!(check_dns_label("kube-system").is_ok());
        assert!(check_dns_label("Kube").is_err());
        assert!(check_dns_subdomain("regcred.v2").is_ok());
        assert!(check_dns_subdomain("regcred..v2").is_err());
    }
}
