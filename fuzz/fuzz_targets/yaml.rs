//! Any text as manifests for the offline `inject`: never a panic; what reads writes back as
//! YAML that reads as the same values.
#![no_main]

use dragonfly_injector::offline::yaml::{parse_documents, to_yaml};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Equal as data: integers written as floats read back as floats of the same value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(documents) = parse_documents(text) else { return };
    for document in &documents {
        let written = to_yaml(document);
        let read = parse_documents(&written).unwrap_or_else(|e| panic!("our own output does not read: {e}\n{written}"));
        assert!(read.len() == 1 && same(&read[0], document), "{document}\nwritten:\n{written}\nread: {read:?}");
    }
});
