//! The kubelet's plugin registration client dials the registration socket by its path with
//! grpc-go, which then sends that path as the HTTP/2 `:authority`; hyper's HTTP/2 layer refuses
//! such a request as malformed and resets the stream, so the kubelet never learns the driver
//! (kubernetes/kubernetes#108254; the kubelet's CSI client sets `localhost` itself, its
//! registration client does not, still in 1.36). This wrapper sits under hyper on each accepted
//! connection and rewrites the value of every literal `:authority` field in the HEADERS frames
//! the client sends to `localhost`, keeping the field's representation, so both ends' HPACK
//! tables get an entry at the same index; every other byte passes through untouched.
//!
//! The tables' byte accounting differs by the length the value lost, which only matters once a
//! table fills its 4,096 bytes: the kubelet's registration connection carries two calls.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const END_HEADERS_PADDED_PRIORITY: (u8, u8) = (0x8, 0x20);
/// `:authority` in HPACK's static table.
const AUTHORITY_INDEX: u64 = 1;
const LOCALHOST: &[u8] = b"localhost";

/// An HPACK integer with an `n`-bit prefix (RFC 7541, 5.1) at `at`: its value and where the
/// bytes after it start; `None` when the block ends first.
fn integer(block: &[u8], at: usize, n: u32) -> Option<(u64, usize)> {
    let max = (1u64 << n) - 1;
    let first = u64::from(*block.get(at)?) & max;
    if first < max {
        return Some((first, at + 1));
    }
    let (mut value, mut shift, mut i) = (max, 0u32, at + 1);
    loop {
        let byte = *block.get(i)?;
        value = value.checked_add(u64::from(byte & 0x7f).checked_shl(shift)?)?;
        i += 1;
        if byte & 0x80 == 0 {
            return Some((value, i));
        }
        shift += 7;
        if shift > 56 {
            return None;
        }
    }
}

/// A string literal at `at`: where its bytes are, whether Huffman-coded, and where it ends.
fn string(block: &[u8], at: usize) -> Option<(std::ops::Range<usize>, bool, usize)> {
    let huffman = block.get(at)? & 0x80 != 0;
    let (len, start) = integer(block, at, 7)?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= block.len()).then_some((start..end, huffman, end))
}

/// The header block with every literal `:authority` value replaced by `localhost`, or `None`
/// when it has none. A block cut short (continued in CONTINUATION frames) is rewritten up to
/// the representation that is cut, and kept as it is from there.
pub fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len());
    let (mut at, mut copied, mut changed) = (0, 0, false);
    while at < block.len() {
        let byte = block[at];
        let prefix = match byte {
            b if b & 0x80 != 0 => {
                // Indexed: the field is in a table already.
                match integer(block, at, 7) {
                    Some((_, next)) => at = next,
                    None => break,
                }
                continue;
            }
            b if b & 0xc0 == 0x40 => 6,
            b if b & 0xe0 == 0x20 => {
                // A dynamic table size update.
                match integer(block, at, 5) {
                    Some((_, next)) => at = next,
                    None => break,
                }
                continue;
            }
            _ => 4,
        };
        let Some((index, mut next)) = integer(block, at, prefix) else { break };
        let is_authority = if index == 0 {
            let Some((name, huffman, after)) = string(block, next) else { break };
            next = after;
            !huffman && &block[name] == b":authority"
        } else {
            index == AUTHORITY_INDEX
        };
        let Some((_, _, after)) = string(block, next) else { break };
        if is_authority {
            out.extend_from_slice(&block[copied..next]);
            out.push(LOCALHOST.len() as u8);
            out.extend_from_slice(LOCALHOST);
            copied = after;
            changed = true;
        }
        at = after;
    }
    if !changed {
        return None;
    }
    out.extend_from_slice(&block[copied..]);
    Some(out)
}

/// A HEADERS frame's payload with its header block rewritten, padding and priority kept.
fn rewrite_headers_payload(flags: u8, payload: &[u8]) -> Option<Vec<u8>> {
    let (padded, priority) = END_HEADERS_PADDED_PRIORITY;
    let mut start = 0;
    let mut pad = 0;
    if flags & padded != 0 {
        pad = usize::from(*payload.first()?);
        start = 1;
    }
    if flags & priority != 0 {
        start += 5;
    }
    let end = payload.len().checked_sub(pad)?;
    let block = payload.get(start..end)?;
    let rewritten = rewrite_block(block)?;
    let mut out = Vec::with_capacity(payload.len());
    out.extend_from_slice(&payload[..start]);
    out.extend_from_slice(&rewritten);
    out.extend_from_slice(&payload[end..]);
    Some(out)
}

/// What the client has sent so far, turned into what hyper reads: whole frames only, after the
/// connection preface.
#[derive(Debug, Default)]
pub struct Rewriter {
    preface_seen: usize,
    pending: Vec<u8>,
}

impl Rewriter {
    /// Takes bytes as they arrive; appends to `out` what may be passed on now.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut bytes = bytes;
        if self.preface_seen < PREFACE_LEN {
            let take = bytes.len().min(PREFACE_LEN - self.preface_seen);
            out.extend_from_slice(&bytes[..take]);
            self.preface_seen += take;
            bytes = &bytes[take..];
        }
        self.pending.extend_from_slice(bytes);
        loop {
            let Some(header) = self.pending.get(..FRAME_HEADER_LEN) else { return };
            let length = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let (kind, flags) = (header[3], header[4]);
            let Some(frame) = self.pending.get(..FRAME_HEADER_LEN + length) else { return };
            let rewritten = (kind == HEADERS)
                .then(|| rewrite_headers_payload(flags, &frame[FRAME_HEADER_LEN..]))
                .flatten()
                .filter(|payload| payload.len() < 1 << 24);
            match rewritten {
                Some(payload) => {
                    let len = payload.len();
                    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
                    out.extend_from_slice(&frame[3..FRAME_HEADER_LEN]);
                    out.extend_from_slice(&payload);
                }
                None => out.extend_from_slice(frame),
            }
            self.pending.drain(..FRAME_HEADER_LEN + length);
        }
    }
}

/// A connection whose incoming bytes go through a [`Rewriter`].
pub struct FixAuthority<S> {
    inner: S,
    rewriter: Rewriter,
    ready: Vec<u8>,
    read_at: usize,
}

impl<S> FixAuthority<S> {
    pub fn new(inner: S) -> Self {
        FixAuthority { inner, rewriter: Rewriter::default(), ready: Vec::new(), read_at: 0 }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FixAuthority<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.read_at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.read_at);
                buf.put_slice(&this.ready[this.read_at..this.read_at + n]);
                this.read_at += n;
                return Poll::Ready(Ok(()));
            }
            this.ready.clear();
            this.read_at = 0;
            let mut raw = [0u8; 16 * 1024];
            let mut raw_buf = ReadBuf::new(&mut raw);
            match Pin::new(&mut this.inner).poll_read(cx, &mut raw_buf) {
                Poll::Ready(Ok(())) if raw_buf.filled().is_empty() => {
                    // End of stream: what is left of a cut frame goes as it is, for hyper to refuse.
                    this.ready.append(&mut this.rewriter.pending);
                    if this.ready.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Ok(())) => this.rewriter.feed(raw_buf.filled(), &mut this.ready),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FixAuthority<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A literal with incremental indexing, name from the static table, raw value.
    fn literal(index: u8, value: &[u8]) -> Vec<u8> {
        let mut field = vec![0x40 | index, value.len() as u8];
        field.extend_from_slice(value);
        field
    }

    const PATH: &[u8] = b"/var/lib/kubelet/plugins_registry/csi.dragonfly.io-reg.sock";

    #[test]
    fn a_literal_authority_becomes_localhost_and_the_rest_stays() {
        // :method POST, :scheme http (indexed), :path, :authority (literals), a size update.
        let mut block = vec![0x83, 0x86];
        block.extend(literal(4, b"/pluginregistration.Registration/GetInfo"));
        block.extend(literal(1, PATH));
        block.push(0x3f);
        block.push(0x01); // size update to 32, a two-byte integer
        block.extend(literal(31, b"application/grpc"));
        let rewritten = rewrite_block(&block).unwrap();
        let mut wanted = vec![0x83, 0x86];
        wanted.extend(literal(4, b"/pluginregistration.Registration/GetInfo"));
        wanted.extend(literal(1, b"localhost"));
        wanted.extend_from_slice(&[0x3f, 0x01]);
        wanted.extend(literal(31, b"application/grpc"));
        assert_eq!(rewritten, wanted);
    }

    #[test]
    fn huffman_values_never_indexed_fields_and_literal_names_are_rewritten_too() {
        // Never indexed (0x10), static name 1, a "Huffman" value (its bytes are not read).
        let block = [0x11, 0x83, 0xaa, 0xbb, 0xcc];
        assert_eq!(rewrite_block(&block).unwrap(), [&[0x11, 0x09][..], LOCALHOST].concat());
        // Without indexing, the name written out.
        let mut block = vec![0x00, 10];
        block.extend_from_slice(b":authority");
        block.extend_from_slice(&[3, b'a', b'/', b'b']);
        let mut wanted = vec![0x00, 10];
        wanted.extend_from_slice(b":authority");
        wanted.push(9);
        wanted.extend_from_slice(LOCALHOST);
        assert_eq!(rewrite_block(&block).unwrap(), wanted);
    }

    #[test]
    fn blocks_without_a_literal_authority_or_cut_short_are_left_alone() {
        // The second call on a connection: :authority indexed from the dynamic table.
        assert_eq!(rewrite_block(&[0x83, 0x86, 0xbe, 0xbf]), None);
        assert_eq!(rewrite_block(&literal(4, b"/x")), None);
        // Cut inside the value: nothing to rewrite safely.
        let cut = &literal(1, PATH)[..10];
        assert_eq!(rewrite_block(cut), None);
        assert_eq!(rewrite_block(&[0x7f]), None);
        assert_eq!(rewrite_block(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), None);
    }

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags, 0, 0, 0, 1];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn frames_are_rewritten_whole_whatever_the_reads_cut() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let settings = frame(0x4, 0, &[0, 3, 0, 0, 0, 100]);
        // PADDED and PRIORITY: two bytes of padding, five of priority.
        let mut payload = vec![2, 0, 0, 0, 0, 16];
        payload.extend(literal(1, PATH));
        payload.extend_from_slice(&[0, 0]);
        let headers = frame(HEADERS, 0x4 | 0x8 | 0x20, &payload);
        let data = frame(0x0, 0x1, &[0, 0, 0, 0, 0]);
        let input = [&preface[..], &settings, &headers, &data].concat();

        let mut wanted_payload = vec![2, 0, 0, 0, 0, 16];
        wanted_payload.extend(literal(1, b"localhost"));
        wanted_payload.extend_from_slice(&[0, 0]);
        let wanted = [&preface[..], &settings, &frame(HEADERS, 0x4 | 0x8 | 0x20, &wanted_payload), &data].concat();
        for chunk in [1, 2, 7, 9, 10, 64, input.len()] {
            let mut rewriter = Rewriter::default();
            let mut out = Vec::new();
            for piece in input.chunks(chunk) {
                rewriter.feed(piece, &mut out);
            }
            assert_eq!(out, wanted, "read {chunk} bytes at a time");
            assert!(rewriter.pending.is_empty());
        }
    }

    #[tokio::test]
    async fn the_wrapper_reads_the_rewritten_stream_and_writes_through() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(64);
        let mut fixed = FixAuthority::new(server);
        let headers = frame(HEADERS, 0x4, &literal(1, PATH));
        let sent = [&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], &headers].concat();
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let writer = tokio::spawn(async move {
            client_write.write_all(&sent).await.unwrap();
            client_write.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        fixed.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert!(got.ends_with(&frame(HEADERS, 0x4, &literal(1, b"localhost"))));
        fixed.write_all(b"answer").await.unwrap();
        let mut answer = [0u8; 6];
        client_read.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"answer");
    }
}
