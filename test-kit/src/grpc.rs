//! One unary gRPC call over a unix socket, as the kubelet makes it to a CSI plugin: HTTP/2 with
//! prior knowledge, one length-prefixed message, the status from the trailers (or from the
//! headers of a trailers-only answer).

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::path::Path;

/// A call that did not end in `OK`: the gRPC status code and its decoded message, or code 14
/// (`UNAVAILABLE`, as gRPC clients report it) when the socket could not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub code: u32,
    pub message: String,
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Calls `method` (`/csi.v1.Node/NodePublishVolume`) with `message`; the response message.
pub fn call(socket: &Path, method: &str, message: &[u8]) -> Result<Vec<u8>, CallError> {
    let unavailable = |what: String| CallError { code: 14, message: what };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| unavailable(format!("connecting to {}: {e}", socket.display())))?;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| unavailable(format!("HTTP/2 handshake: {e}")))?;
        tokio::spawn(connection);
        let mut framed = vec![0];
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(message);
        let request = http::Request::post(format!("http://localhost{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from(framed)))
            .unwrap();
        let response = sender.send_request(request).await.map_err(|e| unavailable(format!("the call: {e}")))?;
        let headers = response.headers().clone();
        let collected = response.into_body().collect().await.map_err(|e| unavailable(format!("the answer: {e}")))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let field = |name: &str| {
            trailers.get(name).or_else(|| headers.get(name)).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        let code: u32 = field("grpc-status").and_then(|c| c.parse().ok()).unwrap_or(2);
        if code != 0 {
            return Err(CallError { code, message: percent_decode(&field("grpc-message").unwrap_or_default()) });
        }
        let body = collected.to_bytes();
        Ok(body.get(5..).unwrap_or_default().to_vec())
    })
}
