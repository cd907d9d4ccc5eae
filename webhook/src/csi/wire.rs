//! The protobuf wire format, as much of it as CSI and the kubelet's plugin registration use:
//! strings, bools, enums, nested messages, repeated fields and string maps. Written from the
//! encoding's specification instead of generated, so the plugin brings no crate and no build step
//! into a binary that is cross-built for five platforms; the message types in
//! [`super::messages`] name their fields by the numbers of the `.proto` files.

use std::collections::BTreeMap;

/// A message the plugin cannot read. The kubelet never sends one; anything else gets
/// `INVALID_ARGUMENT` with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the message ends inside a field")]
    Truncated,
    #[error("a varint is longer than ten bytes")]
    LongVarint,
    #[error("field {field} uses wire type {wire_type}, which proto3 messages do not")]
    WireType { field: u32, wire_type: u8 },
    #[error("field {field} is not valid UTF-8")]
    Utf8 { field: u32 },
    #[error("field number 0 is not allowed")]
    FieldZero,
}

/// One field's value as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64,
    Fixed32,
    Bytes(&'a [u8]),
}

impl<'a> Value<'a> {
    /// A `string` field; another wire type reads as empty, as protobuf's own parsers skip it.
    pub fn string(self, field: u32) -> Result<&'a str, WireError> {
        match self {
            Value::Bytes(bytes) => std::str::from_utf8(bytes).map_err(|_| WireError::Utf8 { field }),
            _ => Ok(""),
        }
    }

    /// A `bool` or enum field.
    pub fn varint(self) -> u64 {
        match self {
            Value::Varint(v) => v,
            _ => 0,
        }
    }

    /// An embedded message's bytes.
    pub fn message(self) -> &'a [u8] {
        match self {
            Value::Bytes(bytes) => bytes,
            _ => &[],
        }
    }
}

/// The fields of one message, in wire order; unknown fields are the caller's to skip.
pub struct Fields<'a> {
    rest: &'a [u8],
}

pub fn fields(message: &[u8]) -> Fields<'_> {
    Fields { rest: message }
}

fn read_varint(bytes: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for shift in 0..10 {
        let (&byte, rest) = bytes.split_first().ok_or(WireError::Truncated)?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << (shift * 7);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::LongVarint)
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if bytes.len() < n {
        return Err(WireError::Truncated);
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = (|| {
            let key = read_varint(&mut self.rest)?;
            let field = u32::try_from(key >> 3).unwrap_or(u32::MAX);
            if field == 0 {
                return Err(WireError::FieldZero);
            }
            let wire_type = (key & 7) as u8;
            let value = match wire_type {
                0 => Value::Varint(read_varint(&mut self.rest)?),
                1 => take(&mut self.rest, 8).map(|_| Value::Fixed64)?,
                2 => {
                    let len = usize::try_from(read_varint(&mut self.rest)?).map_err(|_| WireError::Truncated)?;
                    Value::Bytes(take(&mut self.rest, len)?)
                }
                5 => take(&mut self.rest, 4).map(|_| Value::Fixed32)?,
                _ => return Err(WireError::WireType { field, wire_type }),
            };
            Ok((field, value))
        })();
        if item.is_err() {
            // One error ends the message: what follows a bad key cannot be framed.
            self.rest = &[];
        }
        Some(item)
    }
}

/// A `map<string, string>` entry (key = 1, value = 2), added to `into`.
pub fn map_entry(entry: &[u8], field: u32, into: &mut BTreeMap<String, String>) -> Result<(), WireError> {
    let (mut key, mut value) = ("", "");
    for item in fields(entry) {
        match item? {
            (1, v) => key = v.string(field)?,
            (2, v) => value = v.string(field)?,
            _ => {}
        }
    }
    into.insert(key.to_owned(), value.to_owned());
    Ok(())
}

/// A message being written. proto3 leaves out scalars at their default value; embedded
/// messages are always written, since their presence means something (`Probe`'s `ready`).
#[derive(Debug, Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.bytes.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.bytes.push(value as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire_type));
    }

    fn length_delimited(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.bytes.extend_from_slice(bytes);
    }

    pub fn string(mut self, field: u32, value: &str) -> Self {
        if !value.is_empty() {
            self.length_delimited(field, value.as_bytes());
        }
        self
    }

    /// A `repeated string`: every element, empty ones too.
    pub fn strings(mut self, field: u32, values: &[&str]) -> Self {
        for value in values {
            self.length_delimited(field, value.as_bytes());
        }
        self
    }

    pub fn bool(self, field: u32, value: bool) -> Self {
        self.uint(field, u64::from(value))
    }

    /// An unsigned varint (`bool`, enums, `int64` that is never negative).
    pub fn uint(mut self, field: u32, value: u64) -> Self {
        if value != 0 {
            self.key(field, 0);
            self.varint(value);
        }
        self
    }

    pub fn message(mut self, field: u32, message: Writer) -> Self {
        self.length_delimited(field, &message.bytes);
        self
    }

    pub fn map(self, field: u32, entries: &BTreeMap<String, String>) -> Self {
        entries.iter().fold(self, |w, (k, v)| w.message(field, Writer::default().string(1, k).string(2, v)))
    }

    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_field_by_field() {
        let mut map = BTreeMap::new();
        map.insert("a".to_owned(), "b".to_owned());
        map.insert("ключ".to_owned(), String::new());
        let bytes = Writer::default()
            .string(1, "csi.dragonfly.io")
            .uint(2, 300)
            .bool(3, true)
            .bool(4, false)
            .message(5, Writer::default())
            .map(8, &map)
            .strings(9, &["1.0.0", ""])
            .finish();
        let read: Vec<(u32, Value<'_>)> = fields(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(read[0], (1, Value::Bytes(b"csi.dragonfly.io")));
        assert_eq!(read[1], (2, Value::Varint(300)));
        assert_eq!(read[2], (3, Value::Varint(1)));
        // false is the default: not written; the empty message is.
        assert_eq!(read[3], (5, Value::Bytes(b"")));
        let mut back = BTreeMap::new();
        for (field, value) in &read[4..6] {
            assert_eq!(*field, 8);
            map_entry(value.message(), 8, &mut back).unwrap();
        }
        assert_eq!(back, map);
        assert_eq!(read[6], (9, Value::Bytes(b"1.0.0")));
        assert_eq!(read[7], (9, Value::Bytes(b"")));
        assert_eq!(read.len(), 8);
    }

    #[test]
    fn a_varint_reads_as_the_encoding_specification_says() {
        // The specification's own example: 150 is 0x96 0x01, in field 1.
        let read: Vec<_> = fields(&[0x08, 0x96, 0x01]).collect();
        assert_eq!(read, vec![Ok((1, Value::Varint(150)))]);
        let max = Writer::default().uint(1, u64::MAX).finish();
        assert_eq!(fields(&max).next(), Some(Ok((1, Value::Varint(u64::MAX)))));
    }

    #[test]
    fn fixed_width_fields_are_skipped_whole() {
        let mut bytes = vec![0x09]; // field 1, fixed64
        bytes.extend_from_slice(&[0; 8]);
        bytes.push(0x15); // field 2, fixed32
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&[0x18, 0x01]);
        let read: Vec<_> = fields(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(read, vec![(1, Value::Fixed64), (2, Value::Fixed32), (3, Value::Varint(1))]);
    }

    #[test]
    fn malformed_messages_are_errors_that_end_the_reading() {
        let cases: [(&[u8], WireError); 6] = [
            (&[0x0a, 0x05, b'a'], WireError::Truncated),
            (&[0x08], WireError::Truncated),
            (&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], WireError::LongVarint),
            (&[0x0b], WireError::WireType { field: 1, wire_type: 3 }),
            (&[0x00, 0x01], WireError::FieldZero),
            (&[0x09, 0x00], WireError::Truncated),
        ];
        for (bytes, error) in cases {
            let mut read = fields(bytes);
            assert_eq!(read.next(), Some(Err(error)), "{bytes:?}");
            assert_eq!(read.next(), None, "{bytes:?}");
        }
        let not_utf8 = [0x0a, 0x01, 0xff];
        let (field, value) = fields(&not_utf8).next().unwrap().unwrap();
        assert_eq!(value.string(field), Err(WireError::Utf8 { field: 1 }));
    }

    #[test]
    fn a_length_beyond_the_message_is_truncated_not_a_panic() {
        let huge = Writer::default().uint(1, 0).finish();
        assert!(huge.is_empty());
        let mut bytes = vec![0x0a];
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(fields(&bytes).next(), Some(Err(WireError::Truncated)));
    }
}
