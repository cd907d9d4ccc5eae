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

fn unescape_token(token: &str) -> std::borrow::Cow<'_, str> {
    if token.contains('~') {
        token.replace("~1", "/").replace("~0", "~").into()
    } else {
        token.into()
    }
}

/// An array index token (RFC 6901: digits, no leading zero).
fn index_token(token: &str) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// Walks a JSON Pointer. serde_json's `pointer` unescapes every token with two `str::replace`
/// calls, allocating twice per token: that was an eighth of a large pod's review. This one
/// allocates only for a token that has an escape in it.
pub fn walk<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(doc);
    }
    pointer.strip_prefix('/')?.split('/').try_fold(doc, |node, token| match node {
        Value::Object(map) => map.get(&*unescape_token(token)),
        Value::Array(items) => items.get(index_token(token)?),
        _ => None,
    })
}

/// As [`walk`], for changing what it finds.
pub fn walk_mut<'a>(doc: &'a mut Value, pointer: &str) -> Option<&'a mut Value> {
    if pointer.is_empty() {
        return Some(doc);
    }
    pointer.strip_prefix('/')?.split('/').try_fold(doc, |node, token| match node {
        Value::Object(map) => map.get_mut(&*unescape_token(token)),
        Value::Array(items) => items.get_mut(index_token(token)?),
        _ => None,
    })
}

/// What the working copy keeps of an added value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The value itself: the caller wants the patched pod (offline `inject`, the tests).
    Whole,
    /// Only what later operations can address: an array's length, an empty object (`metadata`,
    /// `annotations`, created to be written into). The admission path never reads the patched
    /// pod, and cloning every added value into it was a tenth of a large pod's review.
    Skeleton,
}

fn skeleton(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(vec![Value::Null; items.len()]),
        Value::Object(map) if map.is_empty() => Value::Object(Default::default()),
        _ => Value::Null,
    }
}

pub struct PatchBuilder {
    doc: Value,
    ops: Vec<PatchOp>,
    keep: Keep,
}

impl PatchBuilder {
    #[cfg(test)]
    pub fn new(doc: Value) -> Self {
        Self::with_copy(doc, Keep::Whole)
    }

    pub fn with_copy(doc: Value, keep: Keep) -> Self {
        Self { doc, ops: Vec::new(), keep }
    }

    #[cfg(test)]
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    fn copy_of(&self, value: &Value) -> Value {
        match self.keep {
            Keep::Whole => value.clone(),
            Keep::Skeleton => skeleton(value),
        }
    }

    /// Adds an object member, inserts into an array at an index, or appends with `-`.
    pub fn add(&mut self, path: String, value: Value) -> Result<(), PatchError> {
        self.apply(&path, self.copy_of(&value), false)?;
        self.ops.push(PatchOp::Add { path, value });
        Ok(())
    }

    pub fn replace(&mut self, path: String, value: Value) -> Result<(), PatchError> {
        self.apply(&path, self.copy_of(&value), true)?;
        self.ops.push(PatchOp::Replace { path, value });
        Ok(())
    }

    /// Makes `pointer` an object when it is missing or null.
    pub fn ensure_object(&mut self, pointer: &str) -> Result<(), PatchError> {
        match walk(&self.doc, pointer) {
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
    /// array and then an item. An existing one is walked to once.
    fn insert_at(&mut self, pointer: &str, index: Option<usize>, value: Value) -> Result<(), PatchError> {
        let copy = self.copy_of(&value);
        let path = match walk_mut(&mut self.doc, pointer) {
            Some(Value::Array(items)) => match index {
                Some(index) if index > items.len() => {
                    return Err(PatchError { path: format!("{pointer}/{index}"), reason: "index out of range" })
                }
                Some(index) => {
                    items.insert(index, copy);
                    format!("{pointer}/{index}")
                }
                None => {
                    items.push(copy);
                    format!("{pointer}/-")
                }
            },
            None | Some(Value::Null) if index.is_none_or(|i| i == 0) => {
                return self.add(pointer.to_owned(), Value::Array(vec![value]));
            }
            None | Some(Value::Null) => {
                return Err(PatchError { path: pointer.to_owned(), reason: "index out of range" })
            }
            Some(_) => return Err(PatchError { path: pointer.to_owned(), reason: "not an array" }),
        };
        self.ops.push(PatchOp::Add { path, value });
        Ok(())
    }

    pub fn finish(self) -> (Vec<PatchOp>, Value) {
        (self.ops, self.doc)
    }

    fn apply(&mut self, path: &str, value: Value, must_exist: bool) -> Result<(), PatchError> {
        let error = |reason| PatchError { path: path.to_owned(), reason };
        let (parent, last) = path.rsplit_once('/').ok_or_else(|| error("not a JSON pointer"))?;
        match walk_mut(&mut self.doc, parent) {
            Some(Value::Object(map)) => {
                let last = unescape_token(last);
                if must_exist && !map.contains_key(&*last) {
                    return Err(error("replace of a missing member"));
                }
                map.insert(last.into_owned(), value);
                Ok(())
            }
            Some(Value::Array(items)) => {
                if last == "-" && !must_exist {
                    items.push(value);
                    return Ok(());
                }
                let index = index_token(last).ok_or_else(|| error("not an array index"))?;
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
    fn walks_pointers_as_serde_json_does() {
        let doc = json!({"a/b": {"c~d": [10, {"": 1}]}, "n": [1, 2], "0": "zero", "e": {"": "empty"}});
        for pointer in [
            "",
            "/a~1b",
            "/a~1b/c~0d",
            "/a~1b/c~0d/1",
            "/a~1b/c~0d/1/",
            "/n/0",
            "/n/01",
            "/n/-",
            "/n/2",
            "/0",
            "/e/",
            "/missing",
            "no-slash",
            "/n/+1",
            "/a~1b/c~0d/0/x",
        ] {
            assert_eq!(walk(&doc, pointer), doc.pointer(pointer), "{pointer:?}");
            assert_eq!(
                walk_mut(&mut doc.clone(), pointer).cloned(),
                doc.clone().pointer_mut(pointer).cloned(),
                "{pointer:?}"
            );
        }
    }

    #[test]
    fn the_skeleton_keeps_what_later_operations_address() {
        let ops = |keep| {
            let mut builder = PatchBuilder::with_copy(json!({"spec": {"containers": [{"name": "a"}]}}), keep);
            builder.push("/spec/volumes", json!({"name": "v"})).unwrap();
            builder.push("/spec/volumes", json!({"name": "w"})).unwrap();
            builder.insert("/spec/containers/0/env", 0, json!({"name": "X"})).unwrap();
            builder.insert("/spec/containers/0/env", 1, json!({"name": "Y"})).unwrap();
            builder.replace("/spec/containers/0/env/1".into(), json!({"name": "Z"})).unwrap();
            builder.ensure_object("/metadata").unwrap();
            builder.ensure_object("/metadata/annotations").unwrap();
            builder.add("/metadata/annotations/k".into(), json!("v")).unwrap();
            builder.finish()
        };
        let (whole, doc) = ops(Keep::Whole);
        let (skeleton, bones) = ops(Keep::Skeleton);
        assert_eq!(whole, skeleton);
        assert_eq!(doc["spec"]["volumes"][1], json!({"name": "w"}));
        assert_eq!(bones["spec"]["volumes"], json!([null, null]), "lengths, not values");
    }

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
        assert!(builder.push("/bad", json!(1)).is_err());
        assert!(builder.insert("/missing", 1, json!(1)).is_err(), "index 1 of a missing array");
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
