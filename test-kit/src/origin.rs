//! The origin pods download from, and the evidence for peer-to-peer: a loopback HTTP/1.1 server
//! with GET, HEAD and byte ranges (dfdaemon downloads pieces with Range requests) that counts the
//! body bytes it served per path. A P2P test reads those counts: a file the origin served once
//! reached every later downloader from a peer.
//!
//! Besides fixed files, it serves deterministic content of any size without holding it:
//! `/gen/<bytes>/<seed>` is block `i` = SHA-256(seed, i) laid end to end, so any range is
//! computed on its own, and `/gen/<bytes>/<seed>.sha256` is that content's SHA-256 in hex.
//! `/_stats` answers a JSON object of path (as requested, without the origin's address) to the
//! body bytes served so far; requests for it are not counted.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the byte counts are served.
pub const STATS_PATH: &str = "/_stats";

/// The largest generated file: the tests' biggest is 64 MiB; a typo must not ask for terabytes.
const MAX_GENERATED: u64 = 1 << 32;
/// Generated files up to this size are kept once made, so serving them costs a copy, not a
/// SHA-256 per 32 bytes (a direct download is then timed against the network, not the origin).
const CACHED_GENERATED: u64 = 256 << 20;

pub struct Origin {
    pub address: IpAddr,
    pub port: u16,
    /// Requests served (the stats page not counted).
    pub requests: Arc<AtomicUsize>,
    served: Arc<Mutex<BTreeMap<String, u64>>>,
    stop: Arc<AtomicBool>,
}

/// Generated content by (size, seed).
type Generated<T> = Mutex<BTreeMap<(u64, String), T>>;

struct Shared {
    files: BTreeMap<String, Arc<Vec<u8>>>,
    requests: Arc<AtomicUsize>,
    served: Arc<Mutex<BTreeMap<String, u64>>>,
    /// SHA-256 of generated content, computed once per (size, seed).
    sums: Generated<String>,
    /// Generated content up to CACHED_GENERATED, made once per (size, seed).
    cache: Generated<Arc<Vec<u8>>>,
}

impl Origin {
    /// An origin on 127.0.0.1 serving `files` (path without the leading slash -> content).
    pub fn start(files: BTreeMap<String, Vec<u8>>) -> Origin {
        Origin::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), files)
    }

    /// The same on another local address (the test bridge's, for a peer in its own namespace).
    pub fn start_on(address: IpAddr, files: BTreeMap<String, Vec<u8>>) -> Origin {
        let listener = TcpListener::bind((address, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            files: files.into_iter().map(|(path, body)| (path, Arc::new(body))).collect(),
            requests: requests.clone(),
            served: served.clone(),
            sums: Mutex::new(BTreeMap::new()),
            cache: Mutex::new(BTreeMap::new()),
        });
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Origin { address, port, requests, served, stop }
    }

    pub fn url(&self, path: &str) -> String {
        let host = match self.address {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        format!("http://{host}:{}/{}", self.port, path.trim_start_matches('/'))
    }

    /// The URL of generated content of `bytes` bytes for `seed` (its SHA-256 at `.sha256`).
    pub fn generated_url(&self, bytes: u64, seed: &str) -> String {
        self.url(&format!("gen/{bytes}/{seed}"))
    }

    pub fn stats_url(&self) -> String {
        self.url(STATS_PATH)
    }

    /// Body bytes served so far for `path` ("/gen/1024/a", or a URL of this origin).
    pub fn served(&self, path: &str) -> u64 {
        let path = path.strip_prefix(self.url("").trim_end_matches('/')).unwrap_or(path);
        self.served.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect((self.address, self.port));
    }
}

/// Generated content: `bytes` bytes for `seed`, from `offset` for `len` bytes.
pub fn generated(seed: &str, offset: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize);
    let mut block_index = offset / 32;
    let mut skip = (offset % 32) as usize;
    while (out.len() as u64) < len {
        let block = block(seed, block_index);
        let take = (32 - skip).min((len - out.len() as u64) as usize);
        out.extend_from_slice(&block[skip..skip + take]);
        skip = 0;
        block_index += 1;
    }
    out
}

fn block(seed: &str, index: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(seed.as_bytes());
    hasher.update([0]);
    hasher.update(index.to_le_bytes());
    hasher.finalize().into()
}

/// The SHA-256 (hex) of the generated content of `bytes` bytes for `seed`, in 1 MiB steps.
pub fn generated_sha256(bytes: u64, seed: &str) -> String {
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < bytes {
        let len = (bytes - offset).min(1 << 20);
        hasher.update(generated(seed, offset, len));
        offset += len;
    }
    format!("{:x}", hasher.finalize())
}

/// What a path names: a fixed file, generated content, a generated file's checksum, or the
/// stats page.
enum Resource {
    Fixed(Arc<Vec<u8>>),
    Generated { bytes: u64, seed: String },
    Stats,
}

fn resource(shared: &Shared, path: &str) -> Option<Resource> {
    if path == STATS_PATH {
        return Some(Resource::Stats);
    }
    let relative = path.trim_start_matches('/');
    if let Some(body) = shared.files.get(relative) {
        return Some(Resource::Fixed(body.clone()));
    }
    let mut parts = relative.strip_prefix("gen/")?.splitn(2, '/');
    let bytes: u64 = parts.next()?.parse().ok().filter(|bytes| *bytes <= MAX_GENERATED)?;
    let seed = parts.next().filter(|seed| !seed.is_empty() && !seed.contains('/'))?;
    if let Some(seed) = seed.strip_suffix(".sha256") {
        let key = (bytes, seed.to_owned());
        let sum = shared.sums.lock().unwrap().get(&key).cloned();
        let sum = sum.unwrap_or_else(|| {
            let sum = generated_sha256(bytes, seed);
            shared.sums.lock().unwrap().insert(key, sum.clone());
            sum
        });
        return Some(Resource::Fixed(Arc::new(format!("{sum}  {seed}\n").into_bytes())));
    }
    if bytes <= CACHED_GENERATED {
        let key = (bytes, seed.to_owned());
        let mut cache = shared.cache.lock().unwrap();
        let body = cache.entry(key).or_insert_with(|| Arc::new(generated(seed, 0, bytes))).clone();
        return Some(Resource::Fixed(body));
    }
    Some(Resource::Generated { bytes, seed: seed.to_owned() })
}

/// `Range: bytes=START-END` or `bytes=START-` against a body of `len` bytes, inclusive.
fn range(header: Option<&String>, len: u64) -> Option<(u64, u64)> {
    let (start, end) = header?.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = start.parse().ok()?;
    let end: u64 = if end.is_empty() { len.checked_sub(1)? } else { end.parse::<u64>().ok()?.min(len.checked_sub(1)?) };
    (start <= end && start < len).then_some((start, end))
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(reader) = stream.try_clone() else { return };
    let mut reader = BufReader::new(reader);
    let mut writer = stream;
    // Bounded: a connection serves at most this many requests.
    for _ in 0..10_000 {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let mut parts = request_line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let path = target.split('?').next().unwrap_or("/");
        let Some(resource) = resource(shared, path) else {
            shared.requests.fetch_add(1, Ordering::Relaxed);
            let _ = writer.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            continue;
        };
        let len = match &resource {
            Resource::Stats => {
                let body = serde_json::to_vec(&*shared.served.lock().unwrap()).unwrap();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n",
                    body.len()
                );
                if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&body).is_err() {
                    return;
                }
                continue;
            }
            Resource::Fixed(body) => body.len() as u64,
            Resource::Generated { bytes, .. } => *bytes,
        };
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let (status, start, end, extra) = match range(headers.get("range"), len) {
            Some((start, end)) => {
                ("206 Partial Content", start, end + 1, format!("Content-Range: bytes {start}-{end}/{len}\r\n"))
            }
            None => ("200 OK", 0, len, String::new()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nContent-Type: application/octet-stream\r\n{extra}\r\n",
            end - start
        );
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method == "HEAD" {
            continue;
        }
        // The body in 1 MiB steps, each counted as it is handed to the socket: a reader that has
        // the bytes always finds them counted, and a peer that hangs up mid-file is charged at
        // most one step it did not get (the strict side for "served once").
        let mut offset = start;
        while offset < end {
            let step = (end - offset).min(1 << 20);
            let chunk = match &resource {
                Resource::Fixed(body) => body[offset as usize..(offset + step) as usize].to_vec(),
                Resource::Generated { seed, .. } => generated(seed, offset, step),
                Resource::Stats => unreachable!("answered above"),
            };
            *shared.served.lock().unwrap().entry(path.to_owned()).or_default() += step;
            if writer.write_all(&chunk).is_err() {
                return;
            }
            offset += step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// One request on a new connection: the status line and the body.
    fn get(origin: &Origin, path: &str, range: Option<&str>) -> (String, Vec<u8>) {
        let mut stream = TcpStream::connect((origin.address, origin.port)).unwrap();
        let range = range.map(|r| format!("Range: bytes={r}\r\n")).unwrap_or_default();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: origin\r\n{range}Connection: close\r\n\r\n").unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim_end().is_empty() {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        (status.trim_end().to_owned(), body)
    }

    fn stats(origin: &Origin) -> BTreeMap<String, u64> {
        serde_json::from_slice(&get(origin, STATS_PATH, None).1).unwrap()
    }

    #[test]
    fn generated_content_matches_its_checksum_and_is_counted_per_path() {
        let origin = Origin::start(BTreeMap::new());
        let (status, body) = get(&origin, "/gen/100003/a", None);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body.len(), 100_003);
        let (_, sum) = get(&origin, "/gen/100003/a.sha256", None);
        assert_eq!(String::from_utf8(sum).unwrap(), format!("{:x}  a\n", Sha256::digest(&body)));
        // The same path again, and another seed of the same size: other bytes, counted apart.
        assert_eq!(get(&origin, "/gen/100003/a", None).1, body);
        let other = get(&origin, "/gen/100003/b", None).1;
        assert_ne!(other, body);
        let counts = stats(&origin);
        assert_eq!(counts.get("/gen/100003/a"), Some(&200_006));
        assert_eq!(counts.get("/gen/100003/b"), Some(&100_003));
        assert_eq!(counts.get("/gen/100003/a.sha256"), Some(&(64 + 4)));
        assert_eq!(origin.served(&origin.generated_url(100_003, "a")), 200_006);
        assert!(!counts.contains_key(STATS_PATH), "the stats page counts nothing: {counts:?}");
    }

    #[test]
    fn a_range_serves_and_counts_only_its_bytes() {
        let origin = Origin::start(BTreeMap::new());
        let whole = generated("r", 0, 5000);
        let (status, part) = get(&origin, "/gen/5000/r", Some("1000-2999"));
        assert_eq!(status, "HTTP/1.1 206 Partial Content");
        assert_eq!(part, &whole[1000..3000]);
        let (_, tail) = get(&origin, "/gen/5000/r", Some("4990-"));
        assert_eq!(tail, &whole[4990..]);
        assert_eq!(origin.served("/gen/5000/r"), 2000 + 10);
    }

    #[test]
    fn fixed_files_unknown_paths_and_absurd_sizes() {
        let origin = Origin::start(BTreeMap::from([("blob".to_owned(), b"hello".to_vec())]));
        assert_eq!(get(&origin, "/blob", None).1, b"hello");
        assert_eq!(origin.served("/blob"), 5);
        for path in ["/missing", "/gen/10", "/gen/x/a", "/gen/99999999999999/a", "/gen/10/"] {
            assert_eq!(get(&origin, path, None).0, "HTTP/1.1 404 Not Found", "{path}");
        }
        assert_eq!(origin.requests.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn generated_ranges_agree_with_the_whole_at_every_block_boundary() {
        let whole = generated("s", 0, 200);
        for offset in [0u64, 1, 31, 32, 33, 63, 64, 150] {
            assert_eq!(generated("s", offset, 200 - offset), &whole[offset as usize..], "{offset}");
        }
        assert_eq!(generated_sha256(200, "s"), format!("{:x}", Sha256::digest(&whole)));
    }
}
