//! The wire format of `admission.k8s.io/v1` AdmissionReview, as far as the injector reads it.
//! `object` stays raw JSON: the patch is computed against it, never against typed structs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewIn {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub request: Option<RequestIn>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestIn {
    pub uid: Option<String>,
    pub kind: Option<GroupVersionKind>,
    pub sub_resource: Option<String>,
    pub namespace: Option<String>,
    pub operation: Option<String>,
    pub object: Option<Value>,
    pub dry_run: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
}

/// The response's wire form, as serde would write it: [`response_body`] writes the same bytes
/// directly, and the tests hold the two equal.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewOut<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub response: ResponseOut<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseOut<'a> {
    pub uid: &'a str,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// Base64 of the JSON Patch document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The AdmissionReview response for `uid`, allowed, with the JSON Patch `patch` (base64-encoded
/// here, straight into the body) and `warnings`. Written directly rather than through a struct:
/// serde would first build the base64 string, then scan all of it for characters to escape,
/// none of which base64 has (a tenth of a large pod's review).
pub fn response_body(uid: &str, patch: Option<&[u8]>, warnings: &[String]) -> Vec<u8> {
    use base64::Engine as _;
    let encoded_len = patch.map_or(0, |p| p.len().div_ceil(3) * 4);
    let mut body =
        Vec::with_capacity(128 + uid.len() + encoded_len + warnings.iter().map(|w| w.len() + 8).sum::<usize>());
    body.extend_from_slice(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#);
    serde_json::to_writer(&mut body, uid).expect("a string serialises");
    body.extend_from_slice(br#","allowed":true"#);
    if let Some(patch) = patch {
        body.extend_from_slice(br#","patchType":"JSONPatch","patch":""#);
        let start = body.len();
        body.resize(start + encoded_len, 0);
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(patch, &mut body[start..])
            .expect("the buffer fits the encoding");
        body.truncate(start + written);
        body.push(b'"');
    }
    if !warnings.is_empty() {
        body.extend_from_slice(br#","warnings":"#);
        serde_json::to_writer(&mut body, warnings).expect("strings serialise");
    }
    body.extend_from_slice(b"}}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_response_is_what_serde_writes() {
        let patch = br#"[{"op":"add","path":"/a","value":"\u00e9"}]"#;
        for (uid, patch, warnings) in [
            ("u-1", None, vec![]),
            ("odd \"uid\" \u{1}", Some(&patch[..]), vec!["a \"quoted\" warning".to_owned(), "é".to_owned()]),
            ("u", Some(&b"x"[..]), vec![]),
            ("u", Some(&b"xy"[..]), vec!["w".to_owned()]),
        ] {
            use base64::Engine as _;
            let expected = serde_json::to_vec(&ReviewOut {
                api_version: API_VERSION,
                kind: KIND,
                response: ResponseOut {
                    uid,
                    allowed: true,
                    patch_type: patch.map(|_| "JSONPatch"),
                    patch: patch.map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
                    warnings: warnings.clone(),
                },
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(response_body(uid, patch, &warnings)).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
