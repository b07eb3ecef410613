//! Route handlers: read the request, call imaging and the engine, shape the answer.

use super::error::{ApiError, Problem};
use super::state::AppState;
use super::types::{
    BatchRequest, BatchResponse, BatchResult, Health, ModelDescription, ModelRef, PredictResponse,
    Timing, NOTICE,
};
use crate::engine::{Engine, Inference};
use crate::model::exam::{summarise, View};
use crate::model::interpret;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine as _;
use std::time::Instant;

/// Raw image types `/predict` reads (the format is sniffed from the bytes either way).
const RAW_IMAGE_TYPES: [&str; 4] = [
    "image/jpeg",
    "image/png",
    "application/dicom",
    "application/octet-stream",
];

/// A multipart `file` upload (documentation only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PredictUpload {
    /// The JPEG, PNG or DICOM file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// A multipart batch upload (documentation only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct BatchUpload {
    /// One part per image, all named `files`; each result's `id` is the part's file name.
    #[schema(value_type = Vec<String>, format = Binary)]
    files: Vec<Vec<u8>>,
}

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

fn millis(d: std::time::Duration) -> f64 {
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

fn timing(inference: &Inference, started: Instant) -> Timing {
    Timing {
        queue: millis(inference.queue),
        inference: millis(inference.inference),
        total: millis(started.elapsed()),
    }
}

/// Classify one mammogram.
#[utoipa::path(
    post,
    path = "/predict",
    tag = "inference",
    request_body(
        description = "The image itself (JPEG, PNG or DICOM Part 10 MG; the format is read from the bytes), or a multipart form with the image in field `file`.",
        content(([u8] = "image/jpeg"), ([u8] = "image/png"), ([u8] = "application/dicom"), ([u8] = "application/octet-stream"), (PredictUpload = "multipart/form-data"))
    ),
    responses(
        (status = 200, description = "Density, malignancy and 8-class probabilities", body = PredictResponse, headers(
            ("x-queue-time" = f64, description = "Milliseconds the image waited for the engine"),
            ("x-inference-time" = f64, description = "Milliseconds of the engine run (the whole dynamic batch it was part of)"),
            ("x-total-time" = f64, description = "Milliseconds from the handler's start to the response")
        )),
        (status = 400, description = "Empty body, bytes that are not a JPEG/PNG/DICOM, a corrupt image, or a multipart body without `file`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over --max-body-bytes", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content type other than image/jpeg, image/png, application/dicom, application/octet-stream or multipart/form-data", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A decodable image we cannot use: too large or too small; DICOM without pixel data, multi-frame, not greyscale, or a Modality other than MG (unless --allow-any-modality)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests in flight or the inference queue is full; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Model not loaded yet, or the request ran past --request-timeout (in the queue or anywhere else); see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn predict(
    State(state): State<AppState>,
    request: Request,
) -> Result<(TimingHeaders, Json<PredictResponse>), ApiError> {
    let started = Instant::now();
    let engine = state.engine()?.clone();
    let bytes = read_single_image(request, &state).await?;
    let prepared = state.prepare(bytes, &engine).await?;
    let inference = engine
        .infer(vec![prepared.tensor], Some(state.deadline(started)))
        .await?;
    let prediction = interpret(&inference.logits[0], &engine.info().metadata);
    let timing = timing(&inference, started);
    Ok((
        timing_headers(&timing),
        Json(PredictResponse::new(
            prediction,
            prepared.dicom,
            engine.info(),
            timing,
        )),
    ))
}

async fn read_single_image(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    match media_type(&request).as_deref() {
        None => read_bytes(request, state).await,
        Some(t) if RAW_IMAGE_TYPES.contains(&t) => read_bytes(request, state).await,
        Some("multipart/form-data") => {
            let mut form = Multipart::from_request(request, state).await.map_err(|e| rejected(e.status(), e.body_text(), "--max-body-bytes"))?;
            while let Some(field) = form.next_field().await.map_err(|e| rejected(e.status(), e.body_text(), "--max-body-bytes"))? {
                if field.name() == Some("file") {
                    return field.bytes().await.map_err(|e| rejected(e.status(), e.body_text(), "--max-body-bytes"));
                }
            }
            Err(ApiError::BadRequest("the multipart body has no `file` field".into()))
        }
        Some(other) => Err(ApiError::UnsupportedType(format!(
            "content type {other:?} is not accepted; send the image as image/jpeg, image/png, application/dicom or application/octet-stream, or as multipart/form-data field `file`"
        ))),
    }
}

async fn read_bytes(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|e| rejected(e.status(), e.body_text(), "--max-body-bytes"))
}

/// Classify many mammograms; one bad item never fails the others.
#[utoipa::path(
    post,
    path = "/batch",
    tag = "inference",
    request_body(
        description = "Multipart with repeated `files` parts, or JSON `{items: [{id, image_base64}]}`.",
        content((BatchUpload = "multipart/form-data"), (BatchRequest = "application/json"))
    ),
    responses(
        (status = 200, description = "One result per item, in request order: a prediction or that item's problem; for DICOM items also an exam-level summary per study and breast", body = BatchResponse, headers(
            ("x-queue-time" = f64, description = "Milliseconds the longest-waiting item waited for the engine"),
            ("x-inference-time" = f64, description = "Milliseconds of the longest engine run among the items"),
            ("x-total-time" = f64, description = "Milliseconds from the handler's start to the response")
        )),
        (status = 400, description = "Malformed multipart or JSON, no items, or an unexpected multipart field", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over --max-batch-body-bytes or more items than --max-batch-items", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content type other than multipart/form-data or application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON that does not match the schema", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests in flight, or the batch's images do not fit in the inference queue; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Model not loaded yet, or past --request-timeout (in the queue or anywhere else); see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn batch(
    State(state): State<AppState>,
    request: Request,
) -> Result<(TimingHeaders, Json<BatchResponse>), ApiError> {
    let started = Instant::now();
    let engine = state.engine()?.clone();
    let items = read_batch(request, &state).await?;
    if items.is_empty() {
        return Err(ApiError::BadRequest("the batch has no items".into()));
    }

    // Decode every item in parallel (bounded by the decode pool), keeping request order.
    let jobs: Vec<_> = items
        .into_iter()
        .map(|(id, bytes)| {
            let (state, engine) = (state.clone(), engine.clone());
            let prepared = tokio::spawn(async move { state.prepare(bytes?, &engine).await });
            (id, prepared)
        })
        .collect();
    let mut decoded = Vec::with_capacity(jobs.len());
    for (id, job) in jobs {
        let tensor = job
            .await
            .unwrap_or_else(|e| Err(ApiError::Internal(format!("decoding task failed: {e}"))));
        decoded.push((id, tensor));
    }

    let good: Vec<Vec<f32>> = decoded
        .iter_mut()
        .filter_map(|(_, p)| p.as_mut().ok().map(|p| std::mem::take(&mut p.tensor)))
        .collect();
    let inference = if good.is_empty() {
        None
    } else {
        Some(engine.infer(good, Some(state.deadline(started))).await?)
    };

    let info = engine.info();
    let mut logits = inference.iter().flat_map(|i| i.logits.iter());
    let results = decoded
        .into_iter()
        .map(|(id, prepared)| match (prepared, &inference) {
            (Ok(prepared), Some(inf)) => {
                let row = logits
                    .next()
                    .expect("the engine returns one row per decoded item");
                let prediction = PredictResponse::new(
                    interpret(row, &info.metadata),
                    prepared.dicom,
                    info,
                    timing(inf, started),
                );
                BatchResult {
                    id,
                    ok: true,
                    prediction: Some(prediction),
                    error: None,
                }
            }
            (Ok(_), None) => unreachable!("inference runs whenever an item decoded"),
            (Err(e), _) => BatchResult {
                id,
                ok: false,
                prediction: None,
                error: Some(e.problem()),
            },
        })
        .collect::<Vec<_>>();
    let exams = exam_summaries(&results);
    let timing_ms = inference.as_ref().map_or(
        Timing {
            queue: 0.0,
            inference: 0.0,
            total: millis(started.elapsed()),
        },
        |inf| timing(inf, started),
    );
    Ok((
        timing_headers(&timing_ms),
        Json(BatchResponse {
            results,
            exams,
            model: ModelRef::from(info),
            timing_ms,
            notice: NOTICE.to_string(),
        }),
    ))
}

/// Exam-level summaries of the items that were DICOM and were read.
fn exam_summaries(results: &[BatchResult]) -> Vec<crate::model::exam::ExamSummary> {
    let views: Vec<View> = results
        .iter()
        .filter_map(|r| {
            let p = r.prediction.as_ref()?;
            Some(View {
                id: &r.id,
                dicom: p.dicom.as_ref()?,
                density: &p.density.probabilities,
                malignancy: &p.malignancy,
            })
        })
        .collect();
    summarise(&views)
}

/// Batch items as (id, bytes or that item's problem), in request order.
type BatchItems = Vec<(String, Result<Bytes, ApiError>)>;

async fn read_batch(request: Request, state: &AppState) -> Result<BatchItems, ApiError> {
    let limit = "--max-batch-body-bytes";
    let max_items = state.max_batch_items();
    let too_many = || {
        ApiError::TooLarge(format!(
            "the batch has more than {max_items} items (--max-batch-items)"
        ))
    };
    match media_type(&request).as_deref() {
        Some("multipart/form-data") => {
            let mut form = Multipart::from_request(request, state).await.map_err(|e| rejected(e.status(), e.body_text(), limit))?;
            let mut items = Vec::new();
            while let Some(field) = form.next_field().await.map_err(|e| rejected(e.status(), e.body_text(), limit))? {
                if field.name() != Some("files") {
                    let name = field.name().unwrap_or("").to_string();
                    return Err(ApiError::BadRequest(format!("unexpected multipart field {name:?}; send each image as a part named `files`")));
                }
                if items.len() == max_items {
                    return Err(too_many());
                }
                let id = field.file_name().map_or_else(|| format!("files[{}]", items.len()), str::to_string);
                let bytes = field.bytes().await.map_err(|e| rejected(e.status(), e.body_text(), limit))?;
                items.push((id, Ok(bytes)));
            }
            Ok(items)
        }
        Some("application/json") => {
            let Json(body) = Json::<BatchRequest>::from_request(request, state).await.map_err(|e| rejected(e.status(), e.body_text(), limit))?;
            if body.items.len() > max_items {
                return Err(too_many());
            }
            Ok(body.items.into_iter().map(|item| (item.id, decode_base64(&item.image_base64))).collect())
        }
        other => Err(ApiError::UnsupportedType(format!(
            "content type {:?} is not accepted by /batch; send multipart/form-data with `files` parts or application/json {{items: [{{id, image_base64}}]}}",
            other.unwrap_or("none")
        ))),
    }
}

fn decode_base64(text: &str) -> Result<Bytes, ApiError> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(text.trim())
        .map(Bytes::from)
        .map_err(|e| ApiError::BadRequest(format!("image_base64 is not valid base64: {e}")))
}

/// Liveness: answers while the process serves HTTP, loaded or not.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health {
        status: "alive".into(),
        execution_provider: None,
        model: None,
    })
}

/// Readiness: 200 once the model is loaded and warmed up, 503 before.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses((status = 200, description = "Ready", body = Health), (status = 503, description = "Still loading", body = Health))
)]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    health_report(&state)
}

/// Health report: status, execution provider in use and model; 503 until ready.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses((status = 200, description = "Ready", body = Health), (status = 503, description = "Still loading", body = Health))
)]
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    health_report(&state)
}

fn health_report(state: &AppState) -> (StatusCode, Json<Health>) {
    match state.engine() {
        Ok(engine) => (
            StatusCode::OK,
            Json(Health {
                status: "ready".into(),
                execution_provider: Some(engine.info().provider.name().into()),
                model: Some(ModelRef::from(engine.info())),
            }),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "loading".into(),
                execution_provider: None,
                model: None,
            }),
        ),
    }
}

/// The loaded model: labels, input and preprocessing, threshold, version, provider.
#[utoipa::path(
    get,
    path = "/v1/model",
    tag = "model",
    responses(
        (status = 200, body = ModelDescription),
        (status = 503, description = "Model not loaded yet", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn model(State(state): State<AppState>) -> Result<Json<ModelDescription>, ApiError> {
    let engine: &Engine = state.engine()?;
    Ok(Json(ModelDescription::from(engine.info())))
}

/// Prometheus metrics: requests by route and status, queue, inference and end-to-end time
/// histograms, engine batch sizes, queue depth, requests in flight and the loaded model.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain; version=0.0.4"))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.render_metrics(),
    )
}

/// Any other path: a problem body rather than an empty 404.
pub async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}; see /docs",
        request.method(),
        request.uri().path()
    ))
}

/// A known path with the wrong method: a problem body rather than an empty 405.
pub async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}; see /docs",
        request.method(),
        request.uri().path()
    ))
}
