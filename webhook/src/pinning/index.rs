//! What a manifest says about platforms: an index (manifest list) names one manifest per
//! platform; attestation entries (`unknown/unknown`, BuildKit's provenance) are not platforms;
//! an entry may itself be an index, which the resolver fetches and walks in turn.

use serde::Deserialize;
use std::collections::BTreeSet;

pub const INDEX_MEDIA_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
pub const IMAGE_MEDIA_TYPES: [&str; 2] =
    ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    media_type: Option<String>,
    manifests: Option<Vec<Entry>>,
    config: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    media_type: Option<String>,
    digest: String,
    platform: Option<Platform>,
    #[serde(default)]
    annotations: std::collections::HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    /// Platforms listed directly, and digests of nested indexes to walk.
    Index { platforms: BTreeSet<String>, nested: Vec<String> },
    /// A single-platform image manifest.
    Image,
}

pub fn read_manifest(bytes: &[u8]) -> Result<ManifestKind, String> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("not a manifest: {e}"))?;
    let is_index =
        manifest.manifests.is_some() || manifest.media_type.as_deref().is_some_and(|t| INDEX_MEDIA_TYPES.contains(&t));
    if !is_index {
        return match manifest.config {
            Some(_) => Ok(ManifestKind::Image),
            None => Err("neither an index nor an image manifest".into()),
        };
    }
    let mut platforms = BTreeSet::new();
    let mut nested = Vec::new();
    for entry in manifest.manifests.unwrap_or_default() {
        let attestation =
            entry.annotations.get("vnd.docker.reference.type").is_some_and(|t| t == "attestation-manifest");
        if entry.media_type.as_deref().is_some_and(|t| INDEX_MEDIA_TYPES.contains(&t)) {
            nested.push(entry.digest);
            continue;
        }
        match entry.platform {
            Some(p) if !attestation && p.os != "unknown" && p.architecture != "unknown" => {
                platforms.insert(match p.variant.filter(|v| !v.is_empty()) {
                    Some(variant) => format!("{}/{}/{variant}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                });
            }
            _ => {}
        }
    }
    Ok(ManifestKind::Index { platforms, nested })
}

/// The required platforms an index lacks. `linux/arm64` is satisfied by `linux/arm64/v8`, as
/// container runtimes treat them alike.
pub fn missing(required: &[String], available: &BTreeSet<String>) -> Vec<String> {
    let satisfied =
        |wanted: &str| available.contains(wanted) || (wanted == "linux/arm64" && available.contains("linux/arm64/v8"));
    required.iter().filter(|wanted| !satisfied(wanted)).cloned().collect()
}

/// The node platforms (`os/arch` from node labels, which carry no variant) that no platform of
/// the index can serve. Windows nodes are left out: Windows pods are never injected.
pub fn missing_for_nodes(nodes: &BTreeSet<String>, available: &BTreeSet<String>) -> Vec<String> {
    nodes
        .iter()
        .filter(|node| !node.starts_with("windows/"))
        .filter(|node| !available.iter().any(|p| p == *node || p.starts_with(&format!("{node}/"))))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn platforms_are_read_and_attestations_skipped() {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:a", "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:b", "size": 1, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:c", "size": 1, "platform": {"os": "unknown", "architecture": "unknown"},
                 "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": "sha256:a"}},
                {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:d", "size": 1},
            ]
        });
        let kind = read_manifest(&serde_json::to_vec(&index).unwrap()).unwrap();
        let ManifestKind::Index { platforms, nested } = kind else { panic!("{kind:?}") };
        assert_eq!(platforms.into_iter().collect::<Vec<_>>(), ["linux/amd64", "linux/arm/v7"]);
        assert_eq!(nested, ["sha256:d"]);
    }

    #[test]
    fn single_manifests_and_junk_are_told_apart() {
        let image = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {}, "layers": []});
        assert_eq!(read_manifest(&serde_json::to_vec(&image).unwrap()), Ok(ManifestKind::Image));
        assert!(read_manifest(b"{}").is_err());
        assert!(read_manifest(b"nope").is_err());
    }

    #[test]
    fn node_platforms_are_served_by_any_variant() {
        let available: BTreeSet<String> = ["linux/amd64", "linux/arm/v7", "linux/arm64/v8"].map(String::from).into();
        let nodes: BTreeSet<String> =
            ["linux/amd64", "linux/arm", "linux/arm64", "linux/s390x", "windows/amd64"].map(String::from).into();
        assert_eq!(missing_for_nodes(&nodes, &available), ["linux/s390x"]);
    }

    #[test]
    fn missing_platforms_count_arm64_v8_as_arm64() {
        let available: BTreeSet<String> = ["linux/amd64".to_owned(), "linux/arm64/v8".to_owned()].into();
        let required = ["linux/amd64", "linux/arm64", "linux/s390x"].map(String::from);
        assert_eq!(missing(&required, &available), ["linux/s390x"]);
    }
}
