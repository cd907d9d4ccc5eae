//! JSON Patch (RFC 6902) operations, recorded while they are applied to a working copy of the
//! request's raw JSON. Recording against the working copy means each operation's array index is
//! right for the document as it stands at that step, and fields we do not model are never
//! touched: nothing is re-serialised from typed structs.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PatchOp {
    Add { path: String, value: Value },
    Replace { path: String, value: Value },
}

/// An operation that does not fit the document: a bug in the engine, never the user's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("internal patch error at {path}: {reason}")]
pub struct PatchError {
    pub path: String,
    pub reason: &'static str,
}

/// Escapes one JSON Pointer reference token (RFC 6901): `~` as `~0`, `/` as `~1`.
pub fn escape_token(token: &str) -> std::borrow::Cow<'_, str> {
    if token.contains(['~', '/']) {
        token.replace('~', "~0").replace('/', "~1").into()
    } else {
        token.into()
    }
}

fn unescape_token(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

pub struct PatchBuilder {
    doc: Value,
    ops: Vec<PatchOp>,
}

impl PatchBuilder {
    pub fn new(doc: Value) -> Self {
        Self { doc, ops: Vec::new() }
    }

    #[cfg(test)]
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// Adds an object member, inserts into an array at an index, or appends with `-`.
    pub fn add(&mut self, path: String, value: Value) -> Result<(), PatchError> {
        self.apply(&path, value.clone(), false)?;
        self.ops.push(PatchOp::Add { path, value });
        Ok(())
    }

    pub fn replace(&mut self, path: String, value: Value) -> Result<(), PatchError> {
        self.apply(&path, value.clone(), true)?;
        self.ops.push(PatchOp::Replace { path, value });
        Ok(())
    }

    /// Makes `pointer` an array when it is missing or null; a JSON Patch `add` below a missing
    /// array fails on the API server ("doc is missing path").
    pub fn ensure_array(&mut self, pointer: &str) -> Result<(), PatchError> {
        match self.doc.pointer(pointer) {
            Some(Value::Array(_)) => Ok(()),
            None | Some(Value::Null) => self.add(pointer.to_owned(), Value::Array(Vec::new())),
            Some(_) => Err(PatchError { path: pointer.to_owned(), reason: "not an array" }),
        }
    }

    /// Makes `pointer` an object when it is missing or null.
    pub fn ensure_object(&mut self, pointer: &str) -> Result<(), PatchError> {
        match self.doc.pointer(pointer) {
            Some(Value::Object(_)) => Ok(()),
            None | Some(Value::Null) => self.add(pointer.to_owned(), Value::Object(Default::default())),
            Some(_) => Err(PatchError { path: pointer.to_owned(), reason: "not an object" }),
        }
    }

    /// Appends to the array at `pointer`, creating it first when needed.
    pub fn push(&mut self, pointer: &str, value: Value) -> Result<(), PatchError> {
        self.insert_at(pointer, None, value)
    }

    /// Inserts into the array at `pointer` at `index`, creating it first when needed.
    pub fn insert(&mut self, pointer: &str, index: usize, value: Value) -> Result<(), PatchError> {
        self.insert_at(pointer, Some(index), value)
    }

    /// A missing (or null) array is added with the value in it: one operation, not an empty
    /// array and then an item.
    fn insert_at(&mut self, pointer: &str, index: Option<usize>, value: Value) -> Result<(), PatchError> {
        if matches!(self.doc.pointer(pointer), None | Some(Value::Null)) && index.is_none_or(|i| i == 0) {
            return self.add(pointer.to_owned(), Value::Array(vec![value]));
        }
        self.ensure_array(pointer)?;
        match index {
            Some(index) => self.add(format!("{pointer}/{index}"), value),
            None => self.add(format!("{pointer}/-"), value),
        }
    }

    pub fn finish(self) -> (Vec<PatchOp>, Value) {
        (self.ops, self.doc)
    }

    fn apply(&mut self, path: &str, value: Value, must_exist: bool) -> Result<(), PatchError> {
        let error = |reason| PatchError { path: path.to_owned(), reason };
        let (parent, last) = path.rsplit_once('/').ok_or_else(|| error("not a JSON pointer"))?;
        let last = unescape_token(last);
        match self.doc.pointer_mut(parent) {
            Some(Value::Object(map)) => {
                if must_exist && !map.contains_key(&last) {
                    return Err(error("replace of a missing member"));
                }
                map.insert(last, value);
                Ok(())
            }
            Some(Value::Array(items)) => {
                if last == "-" && !must_exist {
                    items.push(value);
                    return Ok(());
                }
                let index: usize = last.parse().map_err(|_| error("not an array index"))?;
                if must_exist {
                    let slot = items.get_mut(index).ok_or_else(|| error("index out of range"))?;
                    *slot = value;
                } else {
                    if index > items.len() {
                        return Err(error("index out of range"));
                    }
                    items.insert(index, value);
                }
                Ok(())
            }
            Some(_) => Err(error("parent is neither object nor array")),
            None => Err(error("parent does not exist")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_slash_and_tilde_in_keys() {
        assert_eq!(escape_token("dragonfly.io/injected"), "dragonfly.io~1injected");
        assert_eq!(escape_token("a~b/c"), "a~0b~1c");
        assert_eq!(escape_token("plain"), "plain");
    }

    #[test]
    fn missing_arrays_are_added_with_their_first_item_and_maps_created_first() {
        let mut builder = PatchBuilder::new(json!({"metadata": {}, "spec": {}}));
        builder.push("/spec/volumes", json!({"name": "v"})).unwrap();
        builder.push("/spec/volumes", json!({"name": "w"})).unwrap();
        builder.ensure_object("/metadata/annotations").unwrap();
        builder.add(format!("/metadata/annotations/{}", escape_token("a/b")), json!("x")).unwrap();
        let (ops, doc) = builder.finish();
        assert_eq!(
            serde_json::to_value(&ops).unwrap(),
            json!([
                {"op": "add", "path": "/spec/volumes", "value": [{"name": "v"}]},
                {"op": "add", "path": "/spec/volumes/-", "value": {"name": "w"}},
                {"op": "add", "path": "/metadata/annotations", "value": {}},
                {"op": "add", "path": "/metadata/annotations/a~1b", "value": "x"},
            ])
        );
        assert_eq!(doc["metadata"]["annotations"]["a/b"], "x");
    }

    #[test]
    fn null_is_treated_as_missing_and_other_types_are_refused() {
        let mut builder = PatchBuilder::new(json!({"env": null, "bad": "x"}));
        builder.insert("/env", 0, json!(1)).unwrap();
        assert_eq!(builder.doc()["env"], json!([1]));
        assert!(builder.ensure_array("/bad").is_err());
        assert!(builder.add("/missing/x".into(), json!(1)).is_err());
        assert!(builder.replace("/env/5".into(), json!(1)).is_err());
    }

    #[test]
    fn recorded_operations_reproduce_the_working_copy() {
        let original = json!({"a": [1, 2, 3], "b": {"c": "d"}});
        let mut builder = PatchBuilder::new(original.clone());
        builder.insert("/a", 1, json!(9)).unwrap();
        builder.insert("/a", 0, json!(8)).unwrap();
        builder.replace("/b/c".into(), json!("e")).unwrap();
        let (ops, doc) = builder.finish();
        let patch: json_patch::Patch = serde_json::from_value(serde_json::to_value(ops).unwrap()).unwrap();
        let mut applied = original;
        json_patch::patch(&mut applied, &patch).unwrap();
        assert_eq!(applied, doc);
        assert_eq!(doc["a"], json!([8, 1, 9, 2, 3]));
    }
}
