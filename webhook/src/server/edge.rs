//! What the HTTP edge answers when it has no review to return: one enum for every refusal, with
//! its metric label (written once, [`crate::labels::metric_labels!`]), its status and a message
//! safe to send, as Kubewarden's API errors are. A malformed review is the admission module's
//! [`crate::admission::ReviewError`], answered 400 with its own labels.

use crate::metrics::Metrics;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A handler panicked; the server keeps serving.
    #[error("internal error")]
    Panic,
    /// No tools image reference is known yet (readiness is false meanwhile).
    #[error("no usable tools image reference yet")]
    NoToolsImage,
    /// The review queue or the body budget is full: the API server retries.
    #[error("too many {0} in flight")]
    Overloaded(&'static str),
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body did not arrive in time")]
    BodyTimeout,
    #[error("cannot read the body: {0}")]
    BodyRead(String),
}

crate::labels::metric_labels!(EdgeError {
    Panic => "panic",
    NoToolsImage => "no_tools_image",
    Overloaded => "overloaded",
    TooLarge => "too_large",
    BodyTimeout => "body_timeout",
    BodyRead => "body_read",
});

impl EdgeError {
    pub fn status(&self) -> StatusCode {
        match self {
            EdgeError::Panic => StatusCode::INTERNAL_SERVER_ERROR,
            EdgeError::NoToolsImage | EdgeError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            EdgeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            EdgeError::BodyRead(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// Counts the refusal (`admission_requests_total{outcome="error"}`) and answers it.
    pub fn respond(self, metrics: &Metrics) -> Response {
        metrics.count_request("error", self.label());
        self.into_response()
    }
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = format!("{self}\n");
        match self {
            // Load that passes: the API server may try again at once.
            EdgeError::Overloaded(_) => (status, [(header::RETRY_AFTER, "1")], body).into_response(),
            _ => (status, body).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status_and_a_message_that_ends_the_line() {
        let cases = [
            (EdgeError::Panic, 500, "internal error\n"),
            (EdgeError::NoToolsImage, 503, "no usable tools image reference yet\n"),
            (EdgeError::Overloaded("admission reviews"), 503, "too many admission reviews in flight\n"),
            (EdgeError::TooLarge(8), 413, "the body is larger than 8 bytes\n"),
            (EdgeError::BodyTimeout, 408, "the body did not arrive in time\n"),
            (EdgeError::BodyRead("reset".into()), 400, "cannot read the body: reset\n"),
        ];
        for (error, status, message) in cases {
            assert_eq!(error.status().as_u16(), status);
            assert_eq!(format!("{error}\n"), message);
            let retry = error.into_response().headers().get(header::RETRY_AFTER).cloned();
            assert_eq!(retry.is_some(), message.starts_with("too many"), "{message}");
        }
        assert_eq!(
            EdgeError::LABELS,
            ["panic", "no_tools_image", "overloaded", "too_large", "body_timeout", "body_read"]
        );
    }
}
