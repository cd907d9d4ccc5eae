//! YAML as Kubernetes tooling reads it, for the offline `inject` command.
//!
//! kubectl, Helm, Argo CD and Flux all turn YAML into JSON with go-yaml's YAML 1.1 rules, where
//! a plain `0755` is the octal number 493 and a plain `yes` is `true`. YAML 1.2 parsers (such as
//! serde_yaml's) read those as the strings "0755" and "yes", so a manifest passed through them
//! and written back changes meaning (a `defaultMode: 0755` becomes a string the API server
//! rejects). This module reads plain scalars with the YAML 1.1 rules and writes strings quoted
//! whenever either YAML version could read them as anything but a string.

use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message} at line {line} column {column}")]
pub struct YamlError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

impl YamlError {
    fn at(message: impl Into<String>, mark: &Marker) -> Self {
        YamlError { message: message.into(), line: mark.line(), column: mark.col() + 1 }
    }
}

enum Frame {
    Sequence { items: Vec<Value>, anchor: usize },
    Mapping { map: Map<String, Value>, key: Option<String>, merges: Vec<Map<String, Value>>, anchor: usize },
}

/// Every document of a stream, as JSON values; empty documents are left out.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut documents = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Value> = HashMap::new();
    let mut document: Option<Value> = None;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError::at(e.info(), e.marker()))?;
        let completed = match event {
            Event::StreamEnd => break,
            Event::DocumentStart | Event::StreamStart | Event::Nothing => None,
            Event::DocumentEnd => {
                documents.extend(document.take().filter(|d| !d.is_null()));
                anchors.clear();
                None
            }
            Event::Alias(id) => {
                Some((anchors.get(&id).cloned().ok_or_else(|| YamlError::at("alias to an unknown anchor", &mark))?, 0))
            }
            Event::Scalar(text, style, anchor, tag) => Some((scalar(text, style, tag.as_ref(), &mark)?, anchor)),
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Sequence { items: Vec::new(), anchor });
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Mapping { map: Map::new(), key: None, merges: Vec::new(), anchor });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Sequence { items, anchor }) => Some((Value::Array(items), anchor)),
                _ => return Err(YamlError::at("unbalanced sequence", &mark)),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Mapping { mut map, merges, anchor, .. }) => {
                    // `<<` merge keys: explicit keys win, earlier merges win over later ones.
                    for merged in merges {
                        for (key, value) in merged {
                            map.entry(key).or_insert(value);
                        }
                    }
                    Some((Value::Object(map), anchor))
                }
                _ => return Err(YamlError::at("unbalanced mapping", &mark)),
            },
        };
        let Some((value, anchor)) = completed else { continue };
        if anchor > 0 {
            anchors.insert(anchor, value.clone());
        }
        match stack.last_mut() {
            None => document = Some(value),
            Some(Frame::Sequence { items, .. }) => items.push(value),
            Some(Frame::Mapping { map, key, merges, .. }) => match key.take() {
                None => *key = Some(mapping_key(value, &mark)?),
                Some(name) if name == "<<" => match value {
                    Value::Object(merged) => merges.push(merged),
                    Value::Array(list) if list.iter().all(Value::is_object) => {
                        merges.extend(list.into_iter().filter_map(|v| match v {
                            Value::Object(m) => Some(m),
                            _ => None,
                        }))
                    }
                    _ => return Err(YamlError::at("a merge key (<<) needs a mapping or a list of mappings", &mark)),
                },
                // A repeated key: the last one wins, as in sigs.k8s.io/yaml.
                Some(name) => {
                    map.insert(name, value);
                }
            },
        }
    }
    Ok(documents)
}

/// JSON object keys are strings: a key that reads as another type takes its JSON text, as
/// sigs.k8s.io/yaml does (`on:` becomes "true").
fn mapping_key(value: Value, mark: &Marker) -> Result<String, YamlError> {
    match value {
        Value::String(key) => Ok(key),
        Value::Bool(_) | Value::Number(_) | Value::Null => Ok(value.to_string()),
        _ => Err(YamlError::at("a mapping or sequence as a key is not supported", mark)),
    }
}

fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>, mark: &Marker) -> Result<Value, YamlError> {
    if let Some(tag) = tag {
        let suffix = match tag.handle.as_str() {
            "!!" | "tag:yaml.org,2002:" => tag.suffix.as_str(),
            _ => "",
        };
        let bad = || YamlError::at(format!("{text:?} is not a valid !!{suffix}"), mark);
        return match suffix {
            "str" | "binary" | "timestamp" => Ok(Value::String(text)),
            "int" => match resolve_plain(&text) {
                value @ Value::Number(_) if value.is_i64() || value.is_u64() => Ok(value),
                _ => Err(bad()),
            },
            "float" => match resolve_plain(&text) {
                Value::Number(n) => {
                    Ok(Number::from_f64(n.as_f64().unwrap_or_default()).map_or(Value::Null, Value::Number))
                }
                _ => Err(bad()),
            },
            "bool" => match resolve_plain(&text) {
                value @ Value::Bool(_) => Ok(value),
                _ => Err(bad()),
            },
            "null" => Ok(Value::Null),
            _ if style == TScalarStyle::Plain => Ok(resolve_plain(&text)),
            _ => Ok(Value::String(text)),
        };
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text));
    }
    if is_special_float(&text) {
        return Err(YamlError::at(
            format!("{text} is infinity or NaN, which JSON and the API server cannot hold"),
            mark,
        ));
    }
    Ok(resolve_plain(&text))
}

/// YAML 1.1's `.inf` and `.nan` spellings: kubectl refuses them too.
fn is_special_float(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(text, ".nan" | ".NaN" | ".NAN")
}

/// go-yaml's YAML 1.1 resolution of a plain scalar, the way sigs.k8s.io/yaml applies it.
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => return Value::Bool(true),
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false)
        }
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return Value::String(text.to_owned());
    }
    let plain: String = text.chars().filter(|&c| c != '_').collect();
    if let Some(number) = parse_go_int(&plain) {
        return number;
    }
    if is_yaml_float(&plain) {
        if let Some(number) = plain.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(number);
        }
    }
    Value::String(text.to_owned())
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint`: sign, then `0x`, `0o`, `0b` or a
/// leading `0` (octal) prefix, or decimal.
fn parse_go_int(text: &str) -> Option<Value> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = match unsigned.as_bytes() {
        [b'0', b'x' | b'X', ..] => (16, &unsigned[2..]),
        [b'0', b'o' | b'O', ..] => (8, &unsigned[2..]),
        [b'0', b'b' | b'B', ..] => (2, &unsigned[2..]),
        [b'0', _, ..] => (8, &unsigned[1..]),
        _ => (10, unsigned),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        let value = 0i64.checked_sub_unsigned(magnitude)?;
        Some(Value::Number(value.into()))
    } else {
        Some(Value::Number(magnitude.into()))
    }
}

/// go-yaml's float pattern: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", fraction)) => digits(fraction),
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// Writes one document in block style.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_mapping(&mut out, map, 0, false),
        Value::Array(items) if !items.is_empty() => write_sequence(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, width: usize) {
    out.extend(std::iter::repeat_n(' ', width));
}

/// `first_inline`: the first key goes on the current line (after a sequence's `- `).
fn write_mapping(out: &mut String, map: &Map<String, Value>, width: usize, first_inline: bool) {
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 || !first_inline {
            indent(out, width);
        }
        out.push_str(&string_scalar(key));
        out.push(':');
        write_nested(out, value, width, width + 2);
    }
}

fn write_sequence(out: &mut String, items: &[Value], width: usize) {
    for item in items {
        indent(out, width);
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                out.push(' ');
                write_mapping(out, map, width + 2, true);
            }
            other => write_nested(out, other, width + 2, width + 2),
        }
    }
}

/// Writes what follows `key:` or `-`: a scalar on the same line, a block below it.
fn write_nested(out: &mut String, value: &Value, sequence_width: usize, block_width: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_mapping(out, map, block_width, false);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_sequence(out, items, sequence_width);
        }
        Value::String(text) if literal_block_fits(text) => {
            let trailing = text.len() - text.trim_end_matches('\n').len();
            out.push_str(match trailing {
                0 => " |-\n",
                1 => " |\n",
                _ => " |+\n",
            });
            for line in text.trim_end_matches('\n').split('\n') {
                if !line.is_empty() {
                    indent(out, block_width);
                    out.push_str(line);
                }
                out.push('\n');
            }
            out.extend(std::iter::repeat_n('\n', trailing.saturating_sub(1)));
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

/// Multi-line text reads best as a literal block, where that can hold it exactly.
fn literal_block_fits(text: &str) -> bool {
    text.contains('\n')
        && !text.starts_with([' ', '\t', '\n'])
        && !text.chars().any(|c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{feff}' || c == '\u{85}')
        && text.lines().all(|line| line.trim_end() == line)
}

fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_scalar(s),
        Value::Array(_) => "[]".to_owned(),
        Value::Object(_) => "{}".to_owned(),
    }
}

/// A string plain when nothing could read it as another type or as YAML syntax; JSON-quoted
/// (valid YAML double-quoted) otherwise.
fn string_scalar(text: &str) -> String {
    if plain_is_safe(text) {
        text.to_owned()
    } else {
        serde_json::to_string(text).expect("strings serialise")
    }
}

fn plain_is_safe(text: &str) -> bool {
    let Some(first) = text.chars().next() else { return false };
    // Leading digits, signs and dots could be numbers, dates or times under some YAML version.
    if first.is_ascii_digit() || "-+.?:,[]{}#&*!|>'\"%@`~ ".contains(first) {
        return false;
    }
    if text.ends_with([' ', ':']) || text.contains(": ") || text.contains(" #") {
        return false;
    }
    if text.chars().any(|c| c.is_control() || c == '\u{feff}' || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}') {
        return false;
    }
    // YAML 1.1 booleans and nulls in any spelling YAML 1.2 or other parsers might accept too.
    let lower = text.to_ascii_lowercase();
    !matches!(lower.as_str(), "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null" | "nan" | "inf")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Value {
        parse_documents(text).unwrap().remove(0)
    }

    #[test]
    fn plain_scalars_resolve_as_kubectl_reads_them() {
        let cases = [
            ("0755", json!(493)),
            ("0o755", json!(493)),
            ("0x1F", json!(31)),
            ("0b101", json!(5)),
            ("1_000", json!(1000)),
            ("-12", json!(-12)),
            ("420", json!(420)),
            ("09", json!(9.0)),
            ("1e3", json!(1000.0)),
            (".5", json!(0.5)),
            ("yes", json!(true)),
            ("Off", json!(false)),
            ("y", json!(true)),
            ("~", json!(null)),
            ("", json!(null)),
            ("01:30", json!("01:30")),
            ("2001-12-14", json!("2001-12-14")),
            (".inf", json!(".inf")),
            ("nginx:1.27", json!("nginx:1.27")),
            ("100m", json!("100m")),
            ("18446744073709551615", json!(18446744073709551615u64)),
        ];
        for (plain, expected) in cases {
            assert_eq!(resolve_plain(plain), expected, "{plain}");
        }
    }

    #[test]
    fn quoting_tags_anchors_and_merge_keys() {
        let value = one("base: &base {a: 1, b: two}\n\
             quoted: '0755'\n\
             double: \"yes\"\n\
             tagged: !!str 12\n\
             int: !!int \"7\"\n\
             merged:\n  <<: *base\n  b: mine\n\
             alias: *base\n\
             on: x\n");
        assert_eq!(value["quoted"], "0755");
        assert_eq!(value["double"], "yes");
        assert_eq!(value["tagged"], "12");
        assert_eq!(value["int"], 7);
        assert_eq!(value["merged"], json!({"b": "mine", "a": 1}));
        assert_eq!(value["alias"], json!({"a": 1, "b": "two"}));
        assert_eq!(value["true"], "x", "a YAML 1.1 boolean key becomes its JSON text");
    }

    #[test]
    fn documents_are_split_and_empty_ones_dropped() {
        let documents = parse_documents("---\na: 1\n---\n---\n# only a comment\n---\nb: [1, 2]\n...\n").unwrap();
        assert_eq!(documents, vec![json!({"a": 1}), json!({"b": [1, 2]})]);
    }

    #[test]
    fn errors_name_the_line() {
        let error = parse_documents("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(error.line >= 2, "{error}");
        assert_eq!(parse_documents("a: 1\na: 2\n").unwrap(), vec![json!({"a": 2})], "the last repeated key wins");
        assert!(parse_documents("x: *nothing\n").is_err());
        let error = parse_documents("a: 1\nb: -.inf\n").unwrap_err();
        assert!(error.message.contains("infinity or NaN") && error.line == 2, "{error}");
    }

    #[test]
    fn strings_that_could_read_as_something_else_are_quoted() {
        for text in [
            "yes",
            "NO",
            "on",
            "0755",
            "1e3",
            "12",
            "2001-12-14",
            "01:30",
            "-x",
            "a: b",
            "x #y",
            "",
            " lead",
            "trail ",
            "~",
            "null",
            ".inf",
            "*ref",
            "!tag",
            "@x",
            "%x",
            "\t",
        ] {
            let written = string_scalar(text);
            assert!(written.starts_with('"'), "{text:?} written as {written}");
        }
        for text in [
            "nginx",
            "app.kubernetes.io/name",
            "http://$(NODE_NAME):4001",
            "/dragonfly/bin:/usr/bin",
            "IfNotPresent",
            "sh",
        ] {
            assert_eq!(string_scalar(text), text);
        }
    }

    #[test]
    fn written_yaml_reads_back_identically() {
        let value = json!({
            "apiVersion": "v1",
            "metadata": {"annotations": {"enabled": "yes", "mode": "0755", "empty": "", "n": "1"}},
            "spec": {
                "volumes": [{"name": "c", "configMap": {"name": "c", "defaultMode": 493}}],
                "containers": [{
                    "name": "app",
                    "args": ["--to", "/dragonfly/bin", "-v", "true"],
                    "command": ["sh", "-c", "set -e\necho hi\n\nexit 0\n"],
                    "script": "no trailing newline\nline",
                    "keep": "two trailing\n\n",
                    "spaced": "  starts with spaces\nx",
                    "env": [],
                    "resources": {"limits": {"cpu": 0.5, "memory": "64Mi"}},
                    "nested": [[1, 2], [], {}, null, false, -3, 1.5e300],
                }],
            },
        });
        let text = to_yaml(&value);
        assert_eq!(one(&text), value, "\n{text}");
        assert!(text.contains("defaultMode: 493"));
        assert!(text.contains("enabled: \"yes\""));
        assert!(text.contains("- |\n"), "multi-line scripts are literal blocks:\n{text}");
    }
}
