//! `POST /predict`: one mammogram.

use super::{
    count_assessments, media_type, read_options, record_audit, rejected, timing, timing_headers,
    Caller,
};
use crate::api::dto::{PredictResponse, PredictUpload, ReadOptions};
use crate::api::error::{ApiError, Problem};
use crate::api::state::AppState;
use crate::imaging::dicom::is_dicom;
use crate::pipeline::{ModelInfo, Reading};
use crate::sr::{self, Analysed, Source};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::Instant;

/// Raw image types `/predict` reads (the format is sniffed from the bytes either way).
const RAW_IMAGE_TYPES: [&str; 4] = [
    "image/jpeg",
    "image/png",
    "application/dicom",
    "application/octet-stream",
];

/// Classify one mammogram.
#[utoipa::path(
    post,
    path = "/predict",
    tag = "inference",
    request_body(
        description = "The image itself (JPEG, PNG or DICOM Part 10 MG; the format is read from the bytes), or a multipart form with the image in field `file`.",
        content(([u8] = "image/jpeg"), ([u8] = "image/png"), ([u8] = "application/dicom"), ([u8] = "application/octet-stream"), (PredictUpload = "multipart/form-data"))
    ),
    params(ReadOptions),
    responses(
        (status = 200, description = "Density, malignancy and 8-class probabilities with the assessment; an image unlike the training data is answered 200 with `assessment.status` `not_assessable` and without labels. With `Accept: application/dicom` and a DICOM image: the result as a DICOM Comprehensive SR (TID 1500) instead", content((PredictResponse = "application/json"), ([u8] = "application/dicom")), headers(
            ("x-queue-time" = f64, description = "Milliseconds the image waited for the engine"),
            ("x-inference-time" = f64, description = "Milliseconds of the engine run (the whole dynamic batch it was part of)"),
            ("x-total-time" = f64, description = "Milliseconds from the handler's start to the response")
        )),
        (status = 400, description = "Empty body, bytes that are not a JPEG/PNG/DICOM, a corrupt image, a multipart body without `file`, or an `include_unassessable` that is not true or false", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over --max-body-bytes", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "`Accept: application/dicom` (a DICOM SR answer) for an image that is not DICOM: an SR needs the study and patient it reports on", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content type other than image/jpeg, image/png, application/dicom, application/octet-stream or multipart/form-data", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A decodable image we cannot use: too large or too small; DICOM without pixel data, multi-frame, not greyscale, or a Modality other than MG (unless --allow-any-modality)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests in flight, the body does not fit in --max-inflight-bytes (judged from Content-Length before it is read), or the inference queue is full; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Model not loaded yet, or the request ran past --request-timeout (in the queue or anywhere else); see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn predict(
    State(state): State<AppState>,
    query: Result<Query<ReadOptions>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let options = read_options(query)?;
    let pipeline = state.pipeline()?.clone();
    let caller = Caller::of(&request);
    let as_sr = wants_sr(request.headers());
    let bytes = read_single_image(request, &state).await?;
    // An SR reports on a DICOM study: its source attributes are read before any inference.
    let source = match as_sr && is_dicom(&bytes) {
        true => Some(Source::read(&bytes, pipeline.limits())?),
        false => None,
    };
    let mut readings = pipeline
        .read(vec![bytes], Some(state.deadline(started)))
        .await?;
    let timing = timing(&readings, started);
    let reading = readings.images.remove(0).map_err(ApiError::from);
    let asked = caller.audit("/predict", &pipeline.model().metadata.version);
    record_audit(
        &state,
        &asked,
        [(None, reading.as_ref())],
        options.include_unassessable,
    );
    let reading = reading?;
    count_assessments(&state, [&reading]);
    let headers = timing_headers(&timing);
    if as_sr {
        let source = source.ok_or_else(|| {
            ApiError::NotAcceptable(
                "a DICOM SR answer (Accept: application/dicom) needs a DICOM image: an SR \
                 reports on the study and patient of its source; send DICOM, or accept \
                 application/json"
                    .into(),
            )
        })?;
        let document = structured_report(&source, &reading, pipeline.model())?;
        return Ok((
            headers,
            [(header::CONTENT_TYPE, "application/dicom")],
            document,
        )
            .into_response());
    }
    let answer = PredictResponse::new(
        reading,
        pipeline.model(),
        timing,
        options.include_unassessable,
    );
    Ok((headers, Json(answer)).into_response())
}

/// Whether the caller asks for a DICOM SR: `Accept` names `application/dicom` and not JSON
/// before it (a plain `*/*` or no `Accept` gets JSON).
fn wants_sr(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .find(|t| t == "application/dicom" || t == "application/json" || t == "*/*");
    accept.as_deref() == Some("application/dicom")
}

/// The reading as a DICOM SR of the image's study, Part 10 bytes.
fn structured_report(
    source: &Source,
    reading: &Reading,
    model: &ModelInfo,
) -> Result<Vec<u8>, ApiError> {
    let images = [Analysed { source, reading }];
    sr::report(&images, model, chrono::Utc::now())
        .map(|document| document.bytes)
        .map_err(|e| ApiError::Internal(e.to_string()))
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
