//! `POST /batch`: many mammograms, each answered on its own, with exam-level summaries of
//! DICOM views.

use super::{
    count_assessments, media_type, read_options, record_audit, rejected, timing, timing_headers,
    Caller, TimingHeaders,
};
use crate::api::dto::{
    BatchRequest, BatchResponse, BatchResult, BatchUpload, ExamSummary, ModelRef, PredictResponse,
    ReadOptions, NOTICE,
};
use crate::api::error::{ApiError, Problem};
use crate::api::state::AppState;
use crate::model::exam::{summarise, View};
use crate::pipeline::Reading;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::Json;
use base64::Engine as _;
use std::time::Instant;

/// Classify many mammograms; one bad item never fails the others.
#[utoipa::path(
    post,
    path = "/batch",
    tag = "inference",
    request_body(
        description = "Multipart with repeated `files` parts, or JSON `{items: [{id, image_base64}]}`.",
        content((BatchUpload = "multipart/form-data"), (BatchRequest = "application/json"))
    ),
    params(ReadOptions),
    responses(
        (status = 200, description = "One result per item, in request order: a prediction (with its assessment) or that item's problem; for DICOM items also an exam-level summary per study and breast of the assessed views", body = BatchResponse, headers(
            ("x-queue-time" = f64, description = "Milliseconds the longest-waiting item waited for the engine"),
            ("x-inference-time" = f64, description = "Milliseconds of the longest engine run among the items"),
            ("x-total-time" = f64, description = "Milliseconds from the handler's start to the response")
        )),
        (status = 400, description = "Malformed multipart or JSON, no items, an unexpected multipart field, or an `include_unassessable` that is not true or false", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over --max-batch-body-bytes or more items than --max-batch-items", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content type other than multipart/form-data or application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON that does not match the schema", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests in flight, the body does not fit in --max-inflight-bytes (judged from Content-Length before it is read), or the batch's images do not fit in the inference queue; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Model not loaded yet, or past --request-timeout (in the queue or anywhere else); see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn batch(
    State(state): State<AppState>,
    query: Result<Query<ReadOptions>, QueryRejection>,
    request: Request,
) -> Result<(TimingHeaders, Json<BatchResponse>), ApiError> {
    let started = Instant::now();
    let options = read_options(query)?;
    let pipeline = state.pipeline()?.clone();
    let caller = Caller::of(&request);
    let items = read_batch(request, state.max_batch_items()).await?;
    if items.is_empty() {
        return Err(ApiError::BadRequest("the batch has no items".into()));
    }
    let (ids, received): (Vec<String>, Vec<Result<Bytes, ApiError>>) = items.into_iter().unzip();
    let images = received
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let readings = pipeline.read(images, Some(state.deadline(started))).await?;
    let timing_ms = timing(&readings, started);
    let mut read = readings.images.into_iter();
    let outcomes: Vec<Outcome> = received
        .into_iter()
        .map(|r| r.and_then(|_| Ok(read.next().expect("one reading per image sent")?)))
        .collect();
    count_assessments(&state, outcomes.iter().filter_map(|o| o.as_ref().ok()));
    let asked = caller.audit("/batch", &pipeline.model().metadata.version);
    let each = ids.iter().map(String::as_str).map(Some);
    record_audit(
        &state,
        &asked,
        each.zip(outcomes.iter().map(Result::as_ref)),
        options.include_unassessable,
    );
    let exams = exam_summaries(&ids, &outcomes);
    let model = pipeline.model();
    let results = ids
        .into_iter()
        .zip(outcomes)
        .map(|(id, outcome)| BatchResult {
            ok: outcome.is_ok(),
            error: outcome.as_ref().err().map(ApiError::problem),
            prediction: outcome.ok().map(|reading| {
                let timing = timing_ms.clone();
                PredictResponse::new(reading, model, timing, options.include_unassessable)
            }),
            id,
        })
        .collect();
    Ok((
        timing_headers(&timing_ms),
        Json(BatchResponse {
            results,
            exams,
            model: ModelRef::from(model),
            timing_ms,
            notice: NOTICE.to_string(),
        }),
    ))
}

/// One item's reading, or its problem.
type Outcome = Result<Reading, ApiError>;

/// The exam-level summaries of the items that were DICOM and were read.
fn exam_summaries(ids: &[String], outcomes: &[Outcome]) -> Vec<ExamSummary> {
    let views: Vec<View> = ids
        .iter()
        .zip(outcomes)
        .filter_map(|(id, outcome)| {
            let reading = outcome.as_ref().ok()?;
            Some(View {
                id,
                dicom: reading.dicom.as_ref()?,
                prediction: &reading.prediction,
            })
        })
        .collect();
    summarise(&views)
        .into_iter()
        .map(ExamSummary::from)
        .collect()
}

/// Batch items as (id, bytes or that item's problem), in request order.
pub type BatchItems = Vec<(String, Result<Bytes, ApiError>)>;

/// Reads a `/batch` body, multipart (`files` parts) or JSON (`{items: [{id, image_base64}]}`),
/// into its items; more than `max_items` is 413. Public for the fuzz targets (`fuzz/`).
pub async fn read_batch(request: Request, max_items: usize) -> Result<BatchItems, ApiError> {
    let limit = "--max-batch-body-bytes";
    let too_many = || {
        ApiError::TooLarge(format!(
            "the batch has more than {max_items} items (--max-batch-items)"
        ))
    };
    match media_type(&request).as_deref() {
        Some("multipart/form-data") => {
            let mut form = Multipart::from_request(request, &()).await.map_err(|e| rejected(e.status(), e.body_text(), limit))?;
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
            let Json(body) = Json::<BatchRequest>::from_request(request, &()).await.map_err(|e| rejected(e.status(), e.body_text(), limit))?;
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
