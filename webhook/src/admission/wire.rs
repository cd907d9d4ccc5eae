//! The wire format of `admission.k8s.io/v1` AdmissionReview, as far as the injector reads it.
//! `object` stays raw JSON: the patch is computed against it, never against typed structs.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

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
    pub object: Option<Object>,
    pub dry_run: Option<bool>,
}

/// The pod as raw JSON, less `metadata.managedFields`. The API server fills that in before
/// admission (a map of every field each manager set, about as many keys as the spec itself);
/// nothing here reads it and no operation goes near it, so it is skipped instead of being parsed
/// into the tree and freed again. Anything that is not an object stays as it is, for the engine
/// to refuse.
#[derive(Debug)]
pub struct Object(pub Value);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Level { metadata: false }).map(Object)
    }
}

/// Reads the pod (`metadata: false`) or its metadata (`true`, where managedFields is skipped).
struct Level {
    metadata: bool,
}

impl<'de> de::DeserializeSeed<'de> for Level {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match (self.metadata, key.as_str()) {
                (false, "metadata") => map.next_value_seed(Level { metadata: true })?,
                (true, "managedFields") => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                _ => map.next_value::<Value>()?,
            };
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[derive(Debug, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
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
    use serde::Serialize;

    /// The response's wire form, as serde would write it: [`response_body`] writes the same bytes
    /// directly, and the tests hold the two equal.
    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ReviewOut<'a> {
        api_version: &'static str,
        kind: &'static str,
        response: ResponseOut<'a>,
    }

    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ResponseOut<'a> {
        uid: &'a str,
        allowed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch_type: Option<&'static str>,
        /// Base64 of the JSON Patch document.
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    }

    #[test]
    fn the_object_is_read_as_json_less_its_managed_fields() {
        let pod = serde_json::json!({
            "kind": "Pod",
            "metadata": {"name": "p", "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:spec": {}}}],
                "annotations": {"a": "b"}, "labels": null},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}], "x": 1.5, "y": -3, "z": true}],
                "managedFields": "kept: only metadata's is skipped"},
        });
        let read: Object = serde_json::from_value(pod.clone()).unwrap();
        let mut expected = pod;
        expected["metadata"].as_object_mut().unwrap().shift_remove("managedFields");
        assert_eq!(read.0, expected);
        assert_eq!(
            read.0["metadata"].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["name", "annotations", "labels"]
        );
        for odd in [
            serde_json::json!(5),
            serde_json::json!("pod"),
            serde_json::json!([1, {"metadata": 2}]),
            serde_json::json!({"metadata": "x"}),
        ] {
            assert_eq!(serde_json::from_value::<Object>(odd.clone()).unwrap().0, odd);
        }
        let review: ReviewIn = serde_json::from_str(r#"{"request": {"object": null}}"#).unwrap();
        assert!(review.request.unwrap().object.is_none());
    }

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
