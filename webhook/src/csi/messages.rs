//! The messages the plugin reads and writes, by the field numbers of CSI's `csi.proto` (package
//! `csi.v1`) and the kubelet's `pluginregistration/v1/api.proto`. Only the fields the plugin
//! uses are named; the rest are skipped when read and never written. Requests without fields
//! (`GetPluginInfoRequest`, `ProbeRequest`, `InfoRequest`, …) are not read at all.

use super::wire::{fields, map_entry, WireError, Writer};
use std::collections::BTreeMap;

/// `NodePublishVolumeRequest`: volume_id = 1, target_path = 4, volume_capability = 5,
/// readonly = 6, volume_context = 8 (publish_context = 2, staging_target_path = 3 and
/// secrets = 7 are not used by an ephemeral volume, and never logged).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    pub volume_id: String,
    pub target_path: String,
    /// `VolumeCapability.block` (= 1) was set: a raw block device, which this driver never serves.
    pub block: bool,
    pub readonly: bool,
    pub volume_context: BTreeMap<String, String>,
}

impl PublishRequest {
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut request = PublishRequest::default();
        for item in fields(bytes) {
            match item? {
                (1, v) => request.volume_id = v.string(1)?.to_owned(),
                (4, v) => request.target_path = v.string(4)?.to_owned(),
                (5, v) => {
                    for capability in fields(v.message()) {
                        if capability?.0 == 1 {
                            request.block = true;
                        }
                    }
                }
                (6, v) => request.readonly = v.varint() != 0,
                (8, v) => map_entry(v.message(), 8, &mut request.volume_context)?,
                _ => {}
            }
        }
        Ok(request)
    }
}

/// `NodeUnpublishVolumeRequest`: volume_id = 1, target_path = 2.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpublishRequest {
    pub volume_id: String,
    pub target_path: String,
}

impl UnpublishRequest {
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut request = UnpublishRequest::default();
        for item in fields(bytes) {
            match item? {
                (1, v) => request.volume_id = v.string(1)?.to_owned(),
                (2, v) => request.target_path = v.string(2)?.to_owned(),
                _ => {}
            }
        }
        Ok(request)
    }
}

/// `pluginregistration.RegistrationStatus`: plugin_registered = 1, error = 2.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RegistrationStatus {
    pub registered: bool,
    pub error: String,
}

impl RegistrationStatus {
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut status = RegistrationStatus::default();
        for item in fields(bytes) {
            match item? {
                (1, v) => status.registered = v.varint() != 0,
                (2, v) => status.error = v.string(2)?.to_owned(),
                _ => {}
            }
        }
        Ok(status)
    }
}

/// `GetPluginInfoResponse`: name = 1, vendor_version = 2.
pub fn plugin_info(name: &str, version: &str) -> Vec<u8> {
    Writer::default().string(1, name).string(2, version).finish()
}

/// `ProbeResponse`: ready = 1, a `google.protobuf.BoolValue` (value = 1).
pub fn probe(ready: bool) -> Vec<u8> {
    Writer::default().message(1, Writer::default().bool(1, ready)).finish()
}

/// `NodeGetInfoResponse`: node_id = 1; no volume limit, no topology.
pub fn node_info(node_id: &str) -> Vec<u8> {
    Writer::default().string(1, node_id).finish()
}

/// `pluginregistration.PluginInfo`: type = 1, name = 2, endpoint = 3, supported_versions = 4.
pub fn registration_info(name: &str, endpoint: &str, versions: &[&str]) -> Vec<u8> {
    Writer::default().string(1, "CSIPlugin").string(2, name).string(3, endpoint).strings(4, versions).finish()
}

/// The responses without fields: `GetPluginCapabilitiesResponse` and
/// `NodeGetCapabilitiesResponse` with no capability (no controller, no staging, no stats),
/// `NodePublishVolumeResponse`, `NodeUnpublishVolumeResponse`, `RegistrationStatusResponse`.
pub fn empty() -> Vec<u8> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csi::wire::Value;

    /// A request as the kubelet sends it for an inline volume with `podInfoOnMount`.
    fn kubelet_publish() -> Vec<u8> {
        let mut context = BTreeMap::new();
        context.insert("csi.storage.k8s.io/pod.namespace".to_owned(), "team-a".to_owned());
        context.insert("csi.storage.k8s.io/ephemeral".to_owned(), "true".to_owned());
        context.insert("dragonfly.io/volume".to_owned(), "socket".to_owned());
        let mut secrets = BTreeMap::new();
        secrets.insert("token".to_owned(), "never-read".to_owned());
        let mount = Writer::default().string(1, "ext4");
        let access_mode = Writer::default().uint(1, 1);
        Writer::default()
            .string(1, "csi-0123abcd")
            .map(2, &BTreeMap::new())
            .string(4, "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/dragonfly-socket/mount")
            .message(5, Writer::default().message(2, mount).message(3, access_mode))
            .bool(6, true)
            .map(7, &secrets)
            .map(8, &context)
            .finish()
    }

    #[test]
    fn a_publish_request_reads_the_fields_the_plugin_uses() {
        let request = PublishRequest::decode(&kubelet_publish()).unwrap();
        assert_eq!(request.volume_id, "csi-0123abcd");
        assert_eq!(request.target_path, "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/dragonfly-socket/mount");
        assert!(request.readonly);
        assert!(!request.block);
        assert_eq!(request.volume_context.len(), 3);
        assert_eq!(request.volume_context["csi.storage.k8s.io/pod.namespace"], "team-a");
        let block = Writer::default().message(5, Writer::default().message(1, Writer::default())).finish();
        assert!(PublishRequest::decode(&block).unwrap().block);
    }

    #[test]
    fn unpublish_and_registration_status_read_back() {
        let bytes = Writer::default().string(1, "v").string(2, "/t").finish();
        assert_eq!(
            UnpublishRequest::decode(&bytes).unwrap(),
            UnpublishRequest { volume_id: "v".into(), target_path: "/t".into() }
        );
        let bytes = Writer::default().bool(1, false).string(2, "no such driver").finish();
        assert_eq!(
            RegistrationStatus::decode(&bytes).unwrap(),
            RegistrationStatus { registered: false, error: "no such driver".into() }
        );
        assert!(PublishRequest::decode(&[0x22, 0x09, b'/']).is_err());
    }

    #[test]
    fn responses_carry_their_fields_by_number() {
        let probe = probe(true);
        let (field, ready) = fields(&probe).next().unwrap().unwrap();
        assert_eq!(field, 1);
        assert_eq!(fields(ready.message()).next(), Some(Ok((1, Value::Varint(1)))));
        // Not ready is still a present BoolValue, holding false.
        assert_eq!(super::probe(false), vec![0x0a, 0x00]);
        let info = registration_info("csi.dragonfly.io", "/k/plugins/csi.dragonfly.io/csi.sock", &["1.0.0"]);
        let read: Vec<_> = fields(&info).collect::<Result<_, _>>().unwrap();
        assert_eq!(read[0], (1, Value::Bytes(b"CSIPlugin")));
        assert_eq!(read[1], (2, Value::Bytes(b"csi.dragonfly.io")));
        assert_eq!(read[3], (4, Value::Bytes(b"1.0.0")));
        assert_eq!(fields(&node_info("n1")).next(), Some(Ok((1, Value::Bytes(b"n1")))));
        assert_eq!(fields(&plugin_info("d", "0.1.0")).nth(1), Some(Ok((2, Value::Bytes(b"0.1.0")))));
    }
}
