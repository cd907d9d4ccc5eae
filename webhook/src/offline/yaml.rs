//! YAML as Kubernetes tooling reads it, for the offline `inject` command.
//!
//! kubectl, Helm, Argo CD and Flux all turn YAML into JSON with go-yaml's YAML 1.1 rules, where
//! a plain `0755` is the octal number 493 and a plain `yes` is `true`. YAML 1.2 parsers (such as
//! serde_yaml's) read those as the strings "0755" and "yes", so a manifest passed through them
//! and written back changes meaning (a `defaultMode: 0755` becomes a string the API server
//! rejects). This module reads plain scalars with the YAML 1.1 rules and writes strings quoted
//! whenever either YAML version could read them as anything but a string.
//!
//! Hostile input is bounded as go-yaml bounds it: nesting deeper than 10,000 and documents whose
//! aliases expand out of proportion ("excessive aliasing", the billion-laughs shape) are
//! refused, and a document never expands to more than 2,000,000 values. Output stays linear in
//! the data: below a depth of 32 values are written in flow style, so deep nesting does not
//! multiply indentation.

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

/// go-yaml's limit on nesting (flow and block alike).
const MAX_DEPTH: usize = 10_000;
/// Values one document may expand to, aliases included: far above any real manifest.
const MAX_VALUES: u64 = 2_000_000;

enum Frame {
    Sequence { items: Vec<Value>, anchor: usize, start: Counts },
    Mapping { map: Map<String, Value>, key: Option<String>, anchor: usize, start: Counts },
}

/// Values decoded so far and aliases among them, expansions counted in full, as go-yaml counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    values: u64,
    aliases: u64,
}

impl Counts {
    fn since(self, start: Counts) -> Counts {
        Counts { values: self.values - start.values, aliases: self.aliases - start.aliases }
    }
}

/// go-yaml's rule against alias bombs: past 100 aliases and 1,000 values, the share of aliases
/// may fall from 0.99 (up to 400,000 values) to 0.10 (from 4,000,000).
fn excessive_aliasing(counts: Counts) -> bool {
    let values = counts.values as f64;
    let allowed = if values <= 400_000.0 {
        0.99
    } else if values >= 4_000_000.0 {
        0.10
    } else {
        0.99 - 0.89 * ((values - 400_000.0) / 3_600_000.0)
    };
    counts.aliases > 100 && counts.values > 1000 && counts.aliases as f64 / values > allowed
}

/// Every document of a stream, as JSON values; empty documents are left out. A byte order mark
/// at the start is skipped, as kubectl skips it.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(offset) = text.find('\u{85}') {
        let line = text[..offset].matches('\n').count() + 1;
        return Err(YamlError {
            message: "U+0085 (NEL) is a line break to kubectl's YAML reader and not to this one; write it escaped (\\N in a double-quoted string)".into(),
            line,
            column: 1,
        });
    }
    let mut parser = Parser::new_from_str(text);
    let mut documents = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Value, Counts)> = HashMap::new();
    let mut document: Option<Value> = None;
    let mut counts = Counts::default();
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            // The scanner counts flow levels in a byte; go-yaml allows 10,000.
            let message = match e.info() {
                "recursion limit exceeded" => {
                    "flow collections ([...], {...}) nested deeper than 255 are not supported"
                }
                other => other,
            };
            YamlError::at(message, e.marker())
        })?;
        if matches!(event, Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..)) {
            counts.values += 1;
        }
        let completed = match event {
            Event::StreamEnd => break,
            Event::DocumentStart | Event::StreamStart | Event::Nothing => None,
            Event::DocumentEnd => {
                documents.extend(document.take().filter(|d| !d.is_null()));
                anchors.clear();
                counts = Counts::default();
                None
            }
            Event::Alias(id) => {
                let (value, inside) =
                    anchors.get(&id).ok_or_else(|| YamlError::at("alias to an unknown anchor", &mark))?;
                counts.values += inside.values;
                counts.aliases += 1 + inside.aliases;
                if excessive_aliasing(counts) {
                    return Err(YamlError::at("document contains excessive aliasing", &mark));
                }
                if counts.values > MAX_VALUES {
                    return Err(YamlError::at(format!("document expands to more than {MAX_VALUES} values"), &mark));
                }
                Some((value.clone(), 0, *inside))
            }
            Event::Scalar(text, style, anchor, tag) => {
                Some((scalar(text, style, tag.as_ref(), &mark)?, anchor, Counts { values: 1, aliases: 0 }))
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if stack.len() >= MAX_DEPTH => {
                return Err(YamlError::at(format!("exceeded max depth of {MAX_DEPTH}"), &mark));
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Sequence { items: Vec::new(), anchor, start: counts });
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Mapping { map: Map::new(), key: None, anchor, start: counts });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Sequence { items, anchor, start }) => {
                    // The start event was counted before the frame recorded it.
                    let inside = counts.since(start);
                    Some((Value::Array(items), anchor, Counts { values: inside.values + 1, ..inside }))
                }
                _ => return Err(YamlError::at("unbalanced sequence", &mark)),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Mapping { map, anchor, start, .. }) => {
                    let inside = counts.since(start);
                    Some((Value::Object(map), anchor, Counts { values: inside.values + 1, ..inside }))
                }
                _ => return Err(YamlError::at("unbalanced mapping", &mark)),
            },
        };
        let Some((value, anchor, inside)) = completed else { continue };
        if counts.values > MAX_VALUES {
            return Err(YamlError::at(format!("document expands to more than {MAX_VALUES} values"), &mark));
        }
        if anchor > 0 {
            anchors.insert(anchor, (value.clone(), inside));
        }
        match stack.last_mut() {
            None => document = Some(value),
            Some(Frame::Sequence { items, .. }) => items.push(value),
            Some(Frame::Mapping { map, key, .. }) => match key.take() {
                None => *key = Some(mapping_key(value, &mark)?),
                // `<<` merges in place, as sigs.k8s.io/yaml (go-yaml v2) does: a merge overrides
                // the keys before it, keys after it override the merge, and in a list of merges
                // the earlier ones win.
                Some(name) if name == "<<" => match value {
                    Value::Object(merged) => map.extend(merged),
                    Value::Array(list) if list.iter().all(Value::is_object) => {
                        for merged in list.into_iter().rev() {
                            if let Value::Object(merged) = merged {
                                map.extend(merged);
                            }
                        }
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
        Value::Number(number) if number.is_f64() => Ok(go_float_key(number.as_f64().unwrap_or_default())),
        Value::Bool(_) | Value::Number(_) | Value::Null => Ok(value.to_string()),
        _ => Err(YamlError::at("a mapping or sequence as a key is not supported", mark)),
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`, which sigs.k8s.io/yaml uses for float keys:
/// the shortest digits, in exponent form when the exponent is below -4 or at least the
/// precision (6, or the digit count when that is smaller and covers the integer part).
fn go_float_key(float: f64) -> String {
    if float == 0.0 {
        return if float.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sign = if float < 0.0 { "-" } else { "" };
    let scientific = format!("{:e}", float.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i64 = exponent.parse().unwrap_or_default();
    let (count, point) = (digits.len() as i64, exponent + 1);
    let precision = if 6 > count && count >= point { count } else { 6 };
    if exponent < -4 || exponent >= precision {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{first}{fraction}e{exponent_sign}{:02}", exponent.abs())
    } else if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if point >= count {
        format!("{sign}{digits}{}", "0".repeat((point - count) as usize))
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        format!("{sign}{whole}.{fraction}")
    }
}

/// `!!binary`: the base64 decoded, as text; bytes that are not UTF-8 each become U+FFFD, as Go's
/// JSON encoding writes them.
fn binary(text: &str, mark: &Marker) -> Result<Value, YamlError> {
    use base64::Engine as _;
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|error| YamlError::at(format!("!!binary is not base64: {error}"), mark))?;
    let mut decoded = String::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                decoded.push_str(valid);
                break;
            }
            Err(error) => {
                let (valid, after) = rest.split_at(error.valid_up_to());
                decoded.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = error.error_len().unwrap_or(after.len());
                decoded.extend(std::iter::repeat_n('\u{fffd}', bad));
                rest = &after[bad..];
            }
        }
    }
    Ok(Value::String(decoded))
}

fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>, mark: &Marker) -> Result<Value, YamlError> {
    if let Some(tag) = tag {
        let suffix = match tag.handle.as_str() {
            "!!" | "tag:yaml.org,2002:" => tag.suffix.as_str(),
            _ => "",
        };
        let bad = || YamlError::at(format!("{text:?} is not a valid !!{suffix}"), mark);
        return match suffix {
            "str" | "timestamp" => Ok(Value::String(text)),
            "binary" => binary(&text, mark),
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
            // A tag go-yaml does not know (`!foo 12`, `!!set`) leaves the text a string.
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
        Value::Array(items) if !items.is_empty() => write_sequence(&mut out, items, 0, false),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

/// From this indentation on, collections are written in flow style (`[a, {"k": v}]`): deep
/// nesting in block style repeats its indentation on every line, quadratic in the depth.
const FLOW_FROM_WIDTH: usize = 64;
/// YAML allows implicit keys of at most 1024 characters; longer ones are written `? key`.
const LONGEST_IMPLICIT_KEY: usize = 1000;

fn indent(out: &mut String, width: usize) {
    out.extend(std::iter::repeat_n(' ', width));
}

/// `first_inline`: the first key goes on the current line (after a sequence's `- `).
fn write_mapping(out: &mut String, map: &Map<String, Value>, width: usize, first_inline: bool) {
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 || !first_inline {
            indent(out, width);
        }
        let key = string_scalar(key);
        if key.len() > LONGEST_IMPLICIT_KEY {
            out.push_str("? ");
            out.push_str(&key);
            out.push('\n');
            indent(out, width);
        } else {
            out.push_str(&key);
        }
        out.push(':');
        write_nested(out, value, width, width + 2);
    }
}

/// `first_inline`: the first item goes on the current line (a sequence in a sequence, written
/// compactly as `- - x`, so a deep chain costs two columns a level, not a line each).
fn write_sequence(out: &mut String, items: &[Value], width: usize, first_inline: bool) {
    for (index, item) in items.iter().enumerate() {
        if index > 0 || !first_inline {
            indent(out, width);
        }
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() && !flows(item, width + 2) => {
                out.push(' ');
                write_mapping(out, map, width + 2, true);
            }
            Value::Array(inner) if !inner.is_empty() && !flows(item, width + 2) => {
                out.push(' ');
                write_sequence(out, inner, width + 2, true);
            }
            other => write_nested(out, other, width + 2, width + 2),
        }
    }
}

/// Whether a collection at this indentation is written in flow style: deep enough that block
/// style would repeat a long indentation, and shallow enough (192 levels) for flow style to be
/// read back (the reader takes 255).
fn flows(value: &Value, width: usize) -> bool {
    fn within(value: &Value, levels: usize) -> bool {
        match value {
            Value::Array(items) => levels > 0 && items.iter().all(|item| within(item, levels - 1)),
            Value::Object(map) => levels > 0 && map.values().all(|item| within(item, levels - 1)),
            _ => true,
        }
    }
    width >= FLOW_FROM_WIDTH && within(value, 192)
}

/// Writes what follows `key:` or `-`: a scalar on the same line, a block below it.
fn write_nested(out: &mut String, value: &Value, sequence_width: usize, block_width: usize) {
    match value {
        Value::Object(map) if !map.is_empty() && flows(value, block_width) => {
            out.push(' ');
            write_flow(out, value);
            out.push('\n');
        }
        Value::Array(items) if !items.is_empty() && flows(value, block_width) => {
            out.push(' ');
            write_flow(out, value);
            out.push('\n');
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_mapping(out, map, block_width, false);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_sequence(out, items, sequence_width, false);
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

/// A value on one line, every string double-quoted: linear in the data however deep it nests.
fn write_flow(out: &mut String, value: &Value) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_flow(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                out.push_str(&quoted(key));
                out.push_str(": ");
                write_flow(out, item);
            }
            out.push('}');
        }
        Value::String(text) => out.push_str(&quoted(text)),
        scalar => out.push_str(&inline(scalar)),
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
        quoted(text)
    }
}

/// JSON quoting, plus escapes for the characters YAML 1.1 readers take as line breaks or a
/// byte order mark, which JSON leaves raw.
fn quoted(text: &str) -> String {
    let json = serde_json::to_string(text).expect("strings serialise");
    if !json.contains(['\u{85}', '\u{2028}', '\u{2029}', '\u{feff}']) {
        return json;
    }
    json.replace('\u{85}', "\\u0085")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .replace('\u{feff}', "\\ufeff")
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

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused_as_go_yaml_refuses_them() {
        let mut bomb = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for (level, previous) in
            ["b", "c", "d", "e", "f", "g", "h", "i"].iter().zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            let refs = vec![format!("*{previous}"); 9].join(", ");
            bomb.push_str(&format!("{level}: &{level} [{refs}]\n"));
        }
        let error = parse_documents(&bomb).unwrap_err();
        assert!(
            error.message.contains("excessive aliasing") || error.message.contains("expands to more than"),
            "{error}"
        );
        // Anchors used as manifests use them are fine.
        let fine = "base: &b {x: 1}\n".to_owned() + &(0..200).map(|i| format!("k{i}: *b\n")).collect::<String>();
        assert_eq!(parse_documents(&fine).unwrap()[0]["k199"], json!({"x": 1}));
        let deep = "- ".repeat(MAX_DEPTH + 1) + "x\n";
        assert!(parse_documents(&deep).unwrap_err().message.contains("exceeded max depth of 10000"));
        let flow = "[".repeat(300) + &"]".repeat(300);
        assert!(parse_documents(&flow).unwrap_err().message.contains("nested deeper than 255"));
    }

    #[test]
    fn odd_but_legal_constructs_read_as_kubectl_reads_them() {
        assert_eq!(one("\u{feff}a: 1\n"), json!({"a": 1}), "a byte order mark is skipped");
        assert_eq!(one("a: 1\n<<: {a: 2, b: 3}\n"), json!({"a": 2, "b": 3}), "a later merge overrides");
        assert_eq!(one("<<: {a: 2, b: 3}\na: 1\n"), json!({"a": 1, "b": 3}), "a later key overrides");
        assert_eq!(one("<<: [{a: 1, b: 1}, {a: 2, c: 2}]\n"), json!({"a": 1, "b": 1, "c": 2}), "earlier merges win");
        let keys = one("1.0: a\n1.5: b\n1e3: c\n1e21: d\n1234567.0: e\n0.00001: f\n-0.0: g\n");
        let names: Vec<&str> = keys.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(names, ["1", "1.5", "1000", "1e+21", "1.234567e+06", "1e-05", "-0"]);
        assert_eq!(one("b: !!binary aGVsbG8=\nx: !!binary /w==\n"), json!({"b": "hello", "x": "\u{fffd}"}));
        assert_eq!(one("t: !foo 12\nu: !!set x\n"), json!({"t": "12", "u": "x"}));
        let error = parse_documents("a: 1\nb: x\u{85}y\n").unwrap_err();
        assert!(error.message.contains("NEL") && error.line == 2, "{error}");
    }

    #[test]
    fn what_is_written_reads_back_whatever_the_keys_characters_and_depth() {
        let long = "k".repeat(1500);
        let value =
            json!({long.clone(): {"a": 1}, "list": [{long.clone(): "v"}], "breaks": "x\u{85}y\u{2028}z\u{feff}"});
        let text = to_yaml(&value);
        assert!(text.contains(&format!("? {long}\n")), "{text}");
        assert!(!text.contains('\u{85}') && !text.contains('\u{2028}'), "line-break characters are escaped");
        assert_eq!(one(&text), value, "\n{text}");
        // Deep nesting is written in flow style: linear, not quadratic, in the depth.
        let depth = 5000;
        let input = format!("d:\n{}x\n", "- ".repeat(depth));
        let deep = std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || {
                let value = one(&input);
                let text = to_yaml(&value);
                let same = one(&text) == value;
                (text.len(), same, input.len())
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(deep.1, "the deep document reads back");
        assert!(deep.0 < 3 * deep.2, "{} bytes written for {} read", deep.0, deep.2);
    }
}
