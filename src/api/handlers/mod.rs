//! Route handlers: each reads its request, asks the pipeline, and shapes the answer. Shared
//! here: content types, body-limit rejections and the timing headers.

mod batch;
mod predict;
mod status;
mod stow;

pub use batch::*;
pub use predict::*;
pub use status::*;
pub use stow::*;

use super::auth::KeyName;
use super::dto::{ReadOptions, Timing};
use super::error::ApiError;
use super::state::AppState;
use crate::audit;
use crate::pipeline::{Reading, Readings};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request};
use axum::http::{header, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The media type of a request, lower-cased, without parameters; `None` when absent.
fn media_type(request: &Request) -> Option<String> {
    let value = request.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Maps an axum body or multipart rejection (which knows its status) to our problem.
fn rejected(status: StatusCode, text: String, limit: &str) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(format!("the request body is larger than the {limit} limit"))
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedType(text),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(text),
        _ => ApiError::BadRequest(text),
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `X-Queue-Time`, `X-Inference-Time` and `X-Total-Time` in milliseconds.
type TimingHeaders = [(&'static str, String); 3];

fn timing_headers(t: &Timing) -> TimingHeaders {
    [
        ("x-queue-time", t.queue.to_string()),
        ("x-inference-time", t.inference.to_string()),
        ("x-total-time", t.total.to_string()),
    ]
}

/// Where a request's time went: its longest wait and engine run, and all of it so far.
fn timing(readings: &Readings, started: Instant) -> Timing {
    Timing {
        queue: millis(readings.queue),
        inference: millis(readings.inference),
        total: millis(started.elapsed()),
    }
}

/// The query's options, or 400 naming what was wrong with them.
fn read_options(
    query: Result<Query<ReadOptions>, QueryRejection>,
) -> Result<ReadOptions, ApiError> {
    query
        .map(|Query(options)| options)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))
}

/// Who sent a request: its `x-request-id` (set by the middleware when the caller sent none)
/// and the name of the API key it was let in with.
struct Caller {
    request_id: String,
    key: Option<Arc<str>>,
}

impl Caller {
    fn of(request: &Request) -> Caller {
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let key = request.extensions().get::<KeyName>().map(|k| k.0.clone());
        Caller { request_id, key }
    }

    /// The audit trail's view of this caller on `route`, for `model_version`.
    fn audit<'a>(&'a self, route: &'a str, model_version: &'a str) -> audit::Request<'a> {
        audit::Request {
            request_id: &self.request_id,
            key: self.key.as_deref(),
            route,
            model_version,
        }
    }
}

/// Writes each image's outcome to the audit trail, when the server keeps one.
fn record_audit<'a>(
    state: &AppState,
    request: &audit::Request,
    outcomes: impl IntoIterator<Item = (Option<&'a str>, Result<&'a Reading, &'a ApiError>)>,
    include_unassessable: bool,
) {
    let Some(log) = state.audit() else { return };
    for (item, outcome) in outcomes {
        match outcome {
            Ok(reading) => log.answered(request, item, reading, include_unassessable),
            Err(problem) => log.refused(request, item, problem.status().as_u16()),
        }
    }
}

/// Counts each reading's assessment in the metrics.
fn count_assessments<'a>(state: &AppState, readings: impl IntoIterator<Item = &'a Reading>) {
    let metrics = state.metrics();
    for reading in readings {
        metrics.assessed(reading.prediction.assessment.status.name());
    }
}
