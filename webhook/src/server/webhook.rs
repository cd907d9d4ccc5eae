//! The webhook's HTTPS router: `POST /mutate`.

use super::edge::EdgeError;
use crate::admission;
use crate::inject::Outcome;
use crate::metrics::Metrics;
use crate::server::state::WebhookState;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::sync::Arc;
use std::time::Instant;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};
use tracing::field::Empty;

/// Every (outcome, reason) pair of `admission_requests_total`.
pub fn request_labels() -> Vec<(&'static str, &'static str)> {
    let mut labels = vec![("injected", ""), ("unchanged", "")];
    labels.extend(crate::inject::SkipReason::LABELS.iter().map(|reason| ("skipped", *reason)));
    labels.extend(admission::ReviewError::LABELS.iter().chain(EdgeError::LABELS).map(|label| ("error", *label)));
    labels
}

/// Bodies above axum's 2 MB default exist: an UPDATE review carries the object twice, and
/// etcd allows 1.5 MiB objects.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

pub fn router(state: Arc<WebhookState>, max_body_bytes: usize) -> Router {
    let panics = PanicResponder { metrics: state.metrics.clone() };
    Router::new()
        .route("/mutate", post(move |state, request| mutate(state, request, max_body_bytes)))
        .layer(CatchPanicLayer::custom(panics))
        .with_state(state)
}

/// Reads the body within the limits: a declared length over `max` is refused before a byte is
/// read (so `Expect: 100-continue` gets its 413 at once), the declared length (or `max` when
/// none is declared) is reserved from the shared body budget, and the whole body must arrive
/// within the body timeout.
async fn read_body(state: &WebhookState, request: Request, max: usize) -> Result<Bytes, Response> {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        return Err(EdgeError::TooLarge(max).respond(&state.metrics));
    }
    let reserve = declared.map_or(max, |length| length as usize);
    let Some(reservation) = state.pool.reserve_body(reserve) else {
        return Err(EdgeError::Overloaded("request bodies").respond(&state.metrics));
    };
    let body = request.into_body();
    let read = tokio::time::timeout(state.pool.body_timeout, axum::body::to_bytes(body, max)).await;
    drop(reservation);
    let refused = match read {
        Ok(Ok(bytes)) => return Ok(bytes),
        Ok(Err(error)) if is_length_limit(&error) => EdgeError::TooLarge(max),
        Ok(Err(error)) => EdgeError::BodyRead(error.to_string()),
        Err(_) => EdgeError::BodyTimeout,
    };
    Err(refused.respond(&state.metrics))
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = current.source();
    }
    false
}

/// Turns a panic in a handler into a 500, a log line and a metric; the server keeps serving.
#[derive(Clone)]
pub struct PanicResponder {
    pub metrics: Arc<Metrics>,
}

impl ResponseForPanic for PanicResponder {
    type ResponseBody = axum::body::Body;

    fn response_for_panic(
        &mut self,
        panic: Box<dyn std::any::Any + Send + 'static>,
    ) -> http::Response<Self::ResponseBody> {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(panic = %message, "handler panicked; answered 500");
        EdgeError::Panic.respond(&self.metrics)
    }
}

async fn mutate(State(state): State<Arc<WebhookState>>, request: Request, max_body_bytes: usize) -> Response {
    let span = tracing::info_span!("admission", uid = Empty, namespace = Empty, pod = Empty, decision = Empty);
    let Some(tools) = state.tools_image.load_full() else {
        // Readiness is false in this state; a request that still arrives is not guessed at.
        return EdgeError::NoToolsImage.respond(&state.metrics);
    };
    let body = match read_body(&state, request, max_body_bytes).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let started = Instant::now();
    let Some(permit) = state.pool.admit().await else {
        span.in_scope(|| tracing::warn!(queued = state.pool.queued(), "review queue full; answered 503"));
        return EdgeError::Overloaded("admission reviews").respond(&state.metrics);
    };
    let result = if body.len() <= INLINE_REVIEW_BYTES {
        let _permit = permit;
        review(&state, &body, &tools)
    } else {
        let worker = state.clone();
        let large = body.len() > TRIM_AFTER_BYTES;
        let reviewed = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let result = review(&worker, &body, &tools);
            drop(body);
            if large {
                give_memory_back();
            }
            result
        })
        .await;
        match reviewed {
            Ok(result) => result,
            // The panic guard around the router turns this into a 500, a log line and a metric.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    };
    let elapsed = started.elapsed();
    let _entered = span.enter();
    state.metrics.duration.observe(elapsed.as_secs_f64());
    match result {
        Ok(reviewed) => {
            let summary = &reviewed.summary;
            span.record("uid", summary.uid.as_str());
            span.record("namespace", summary.namespace.as_str());
            span.record("pod", summary.pod.as_str());
            span.record("decision", summary.outcome.label());
            state.metrics.count_request(summary.outcome.label(), summary.outcome.reason());
            state.metrics.warnings.inc_by(summary.warnings.len() as u64);
            if summary.unpinned {
                state.metrics.tools_image_unpinned_injections.inc();
            }
            let (parts, containers) = match &summary.outcome {
                Outcome::Injected(status) => (status.parts(), status.containers.join(",")),
                _ => (String::new(), String::new()),
            };
            // The request's fields again on the event, so each JSON line holds them at the top
            // level (the span's copy is nested under "span").
            tracing::info!(
                uid = summary.uid.as_str(),
                namespace = summary.namespace.as_str(),
                pod = summary.pod.as_str(),
                decision = summary.outcome.label(),
                reason = summary.outcome.reason(),
                injected = parts,
                containers,
                // As JSON text, which the JSON log writer turns into a list.
                warnings = serde_json::to_string(&summary.warnings).unwrap_or_default(),
                dry_run = summary.dry_run,
                duration_us = elapsed.as_micros() as u64,
                "admission reviewed"
            );
            ([(header::CONTENT_TYPE, "application/json")], reviewed.body).into_response()
        }
        Err(error) => {
            state.metrics.count_request("error", error.label());
            tracing::warn!(%error, duration_us = elapsed.as_micros() as u64, "bad admission request");
            (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response()
        }
    }
}

/// Reviews of bodies up to this size run on the async worker that read them. Handing every review
/// to a blocking thread costs two thread wake-ups per request: under load that was 30% of the
/// server's CPU and doubled its p99 (BENCHMARKS.md, "HTTPS load"). A body this size takes a
/// couple of milliseconds at most. Larger ones (up to the 8 MiB limit, hundreds of milliseconds)
/// still go to the blocking threads.
pub const INLINE_REVIEW_BYTES: usize = 64 * 1024;

fn review(
    state: &WebhookState,
    body: &[u8],
    tools: &crate::inject::ToolsImage,
) -> Result<admission::Reviewed, admission::ReviewError> {
    let lookup = |namespace: &str| state.namespaces.as_ref().and_then(|cache| cache.labels(namespace));
    admission::review(body, &state.settings, tools, &lookup)
}

/// Bodies above this leave the allocator holding tens of megabytes it would otherwise keep.
const TRIM_AFTER_BYTES: usize = 512 * 1024;

/// Returns freed heap to the system: glibc keeps it in its arenas after a large review, and the
/// process would sit at its peak until the pod's memory limit.
fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
