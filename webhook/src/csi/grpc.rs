//! Unary gRPC over HTTP/2 on a unix socket: all of gRPC that the kubelet speaks to a CSI plugin
//! and to a plugin's registration socket. A request is one length-prefixed message; the answer
//! is one message followed by `grpc-status: 0` in the trailers, or a trailers-only response
//! carrying the status and its message, which the kubelet writes into the pod's events.
//!
//! Each connection's incoming bytes pass through [`FixAuthority`] first: the kubelet's
//! registration client sends an `:authority` that hyper would refuse.
//!
//! The handler runs on the blocking pool: publishing is a few mount syscalls, and they must
//! not stall the runtime's workers.

use super::authority::FixAuthority;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio::sync::watch;

/// gRPC's status codes that this plugin answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument = 3,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub message: String,
}

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Status { code, message: message.into() }
    }
}

impl From<super::wire::WireError> for Status {
    fn from(error: super::wire::WireError) -> Self {
        Status::new(Code::InvalidArgument, format!("unreadable request: {error}"))
    }
}

/// A service: the method's path (`/csi.v1.Node/NodePublishVolume`) and the request message in,
/// the response message out.
pub type Handler = Arc<dyn Fn(&str, &[u8]) -> Result<Vec<u8>, Status> + Send + Sync>;

type Body = BoxBody<Bytes, Infallible>;

/// gRPC's default limit on a received message; the kubelet's are a few hundred bytes.
const MAX_MESSAGE: usize = 4 << 20;

/// A message with gRPC's prefix: not compressed, then its length as four big-endian bytes.
pub fn frame(message: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    Bytes::from(framed)
}

/// The one message of a unary call's body.
pub fn unframe(body: &[u8]) -> Result<&[u8], Status> {
    let broken = |what: &str| Status::new(Code::InvalidArgument, format!("the request body {what}"));
    let (&compressed, rest) = body.split_first().ok_or_else(|| broken("is empty"))?;
    if compressed != 0 {
        // Nothing here advertises an encoding, so no client compresses.
        return Err(Status::new(Code::Unimplemented, "compressed messages are not accepted"));
    }
    let length: [u8; 4] = rest.get(..4).and_then(|l| l.try_into().ok()).ok_or_else(|| broken("has no length"))?;
    let message = &rest[4..];
    if message.len() != u32::from_be_bytes(length) as usize {
        return Err(broken("is not one message of its stated length"));
    }
    Ok(message)
}

/// `grpc-message` is percent-encoded: printable ASCII except `%` goes as it is.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn grpc_headers(status: Option<&Status>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    let code = status.map_or(0, |s| s.code as u16);
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Some(value) = status.and_then(|s| HeaderValue::from_str(&percent_encode(&s.message)).ok()) {
        headers.insert("grpc-message", value);
    }
    headers
}

/// The answer to one call.
pub fn respond(result: Result<Vec<u8>, Status>) -> Response<Body> {
    match result {
        Ok(message) => {
            let mut trailers = grpc_headers(None);
            trailers.remove(header::CONTENT_TYPE);
            let frames = [Ok(Frame::data(frame(&message))), Ok(Frame::trailers(trailers))];
            let body = StreamBody::new(futures::stream::iter(frames)).boxed();
            let mut response = Response::new(body);
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            response
        }
        Err(status) => {
            // Trailers-only: the status travels in the headers, which end the stream.
            let mut response = Response::new(Empty::new().boxed());
            *response.headers_mut() = grpc_headers(Some(&status));
            response
        }
    }
}

fn plain(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Empty::new().boxed());
    *response.status_mut() = status;
    response
}

async fn answer(handler: Handler, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED);
    }
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !is_grpc {
        return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let method = request.uri().path().to_owned();
    let body = match Limited::new(request.into_body(), MAX_MESSAGE + 5).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return respond(Err(Status::new(Code::ResourceExhausted, "the request is larger than 4 MiB or broken")))
        }
    };
    let span = tracing::info_span!("csi", method = %method);
    let result = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        unframe(&body).and_then(|message| handler(&method, message))
    })
    .await
    .unwrap_or_else(|_| Err(Status::new(Code::Internal, "the handler failed")));
    respond(result)
}

/// Serves `handler` on `listener` until `shutdown` turns true; connections open then end with
/// the runtime.
pub async fn serve(listener: UnixListener, handler: Handler, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accepting a gRPC connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(answer(handler, request).await) }
            });
            let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(FixAuthority::new(stream)), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "gRPC connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_a_flag_a_length_and_the_message() {
        let framed = frame(b"abc");
        assert_eq!(&framed[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(unframe(&framed).unwrap(), b"abc");
        assert_eq!(unframe(&frame(b"")).unwrap(), b"");
    }

    #[test]
    fn broken_frames_are_statuses_not_panics() {
        for body in [&[][..], &[0, 0, 0], &[0, 0, 0, 0, 4, 1], &[0, 0, 0, 0, 0, 1]] {
            assert_eq!(unframe(body).unwrap_err().code, Code::InvalidArgument, "{body:?}");
        }
        assert_eq!(unframe(&[1, 0, 0, 0, 0]).unwrap_err().code, Code::Unimplemented);
    }

    #[test]
    fn an_error_is_a_trailers_only_answer_with_an_encoded_message() {
        let response = respond(Err(Status::new(Code::PermissionDenied, "namespace ü lacks 100% of it")));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "7");
        assert_eq!(response.headers()["grpc-message"], "namespace %C3%BC lacks 100%25 of it");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/grpc");
        assert!(hyper::body::Body::is_end_stream(response.body()));
    }

    #[tokio::test]
    async fn a_success_is_one_message_then_status_zero_in_the_trailers() {
        let response = respond(Ok(b"hi".to_vec()));
        assert!(response.headers().get("grpc-status").is_none());
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(unframe(&collected.to_bytes()).unwrap(), b"hi");
    }
}
