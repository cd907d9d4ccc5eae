//! The admin port, plain HTTP and outside the request trace: probes and metrics.

use crate::server::state::WebhookState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<WebhookState>>) -> impl IntoResponse {
    readiness(&state.not_ready())
}

/// `/readyz`'s answer from what is still missing: 200 `ok`, or 503 naming each missing part.
/// The CSI plugin's admin port answers the same way.
pub fn readiness(missing: &[&str]) -> (StatusCode, String) {
    if missing.is_empty() {
        (StatusCode::OK, "ok\n".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", missing.join("; ")))
    }
}

/// OpenMetrics when the scraper asks for it (Prometheus does), the Prometheus text format
/// otherwise (curl, promtool, older agents).
async fn metrics(State(state): State<Arc<WebhookState>>, headers: HeaderMap) -> impl IntoResponse {
    // Derived at scrape time, the only time anyone reads it.
    state.metrics.ready.set(i64::from(state.not_ready().is_empty()));
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if accept.contains("application/openmetrics-text") {
        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
    } else {
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.encode_prometheus())
    }
}
