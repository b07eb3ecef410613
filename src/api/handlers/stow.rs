//! `POST /dicomweb/studies[/{study}]`: STOW-RS intake (PS3.18 10.5). Each DICOM instance of a
//! `multipart/related` body is analysed as `/batch` analyses its items; those read are kept for
//! their study's SR ([`crate::results`]) and listed in the Referenced SOP Sequence, the others
//! in the Failed SOP Sequence with a Failure Reason (PS3.18 Table I.2-2). The answer is the
//! Store Instances Response (`application/dicom+json`): 200 when every instance was taken,
//! 202 when some were, 409 when none was.

use super::{count_assessments, record_audit, Caller};
use crate::api::error::{ApiError, Problem};
use crate::api::related;
use crate::api::state::AppState;
use crate::imaging::ImageError;
use crate::pipeline::Reading;
use crate::results::is_uid;
use crate::sr::Source;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::time::Instant;

/// Failure Reasons (0008,1197), PS3.18 Table I.2-2.
mod reason {
    /// Refused: out of resources (the results folder could not keep the instance).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: cannot understand (undecodable, or UIDs that are not UIDs).
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Referenced Transfer Syntax not supported.
    pub const TRANSFER_SYNTAX: u16 = 0xC122;
    /// Referenced SOP Class not supported: not a mammogram we read.
    pub const SOP_CLASS: u16 = 0x0122;
    /// Processing failure: an image we cannot use, or of another study than the target.
    pub const PROCESSING: u16 = 0x0110;
}

/// Store DICOM instances for analysis (STOW-RS); their DICOM SR goes to the PACS.
#[utoipa::path(
    post,
    path = "/dicomweb/studies",
    tag = "dicomweb",
    request_body(
        description = "`multipart/related; type=\"application/dicom\"`: one DICOM Part 10 MG object a part (chunked or with a length).",
        content(([u8] = "multipart/related"))
    ),
    responses(
        (status = 200, description = "Every instance taken: Store Instances Response with the Referenced SOP Sequence (0008,1199)", content_type = "application/dicom+json"),
        (status = 202, description = "Some instances taken; the others in the Failed SOP Sequence (0008,1198) with a Failure Reason", content_type = "application/dicom+json"),
        (status = 409, description = "No instance taken; each in the Failed SOP Sequence", content_type = "application/dicom+json"),
        (status = 400, description = "A part that is not a DICOM object, a missing boundary, a malformed body, or no parts", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The server runs without --results-outbox: DICOMweb intake is off", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over --max-batch-body-bytes, a part over --max-body-bytes, or more parts than --max-batch-items", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not multipart/related, parts of a type other than application/dicom", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The inference queue is full (judged before the body is read), or the body does not fit in --max-inflight-bytes; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Model not loaded yet, past --request-timeout, or the results folder is full (--results-outbox-max-bytes) until the PACS takes results; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn store(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    store_instances(state, None, request).await
}

/// Store DICOM instances of one study (STOW-RS); an instance of another study is refused.
#[utoipa::path(
    post,
    path = "/dicomweb/studies/{study}",
    tag = "dicomweb",
    params(("study" = String, Path, description = "Study Instance UID every instance must have")),
    request_body(
        description = "`multipart/related; type=\"application/dicom\"`: one DICOM Part 10 MG object a part.",
        content(([u8] = "multipart/related"))
    ),
    responses(
        (status = 200, description = "Every instance taken", content_type = "application/dicom+json"),
        (status = 202, description = "Some instances taken; an instance of another study is in the Failed SOP Sequence", content_type = "application/dicom+json"),
        (status = 409, description = "No instance taken", content_type = "application/dicom+json"),
        (status = 400, description = "As for /dicomweb/studies", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn store_study(
    State(state): State<AppState>,
    Path(study): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    store_instances(state, Some(study), request).await
}

async fn store_instances(
    state: AppState,
    study: Option<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let results = state.results().cloned().ok_or_else(|| {
        ApiError::NotFound(
            "DICOMweb intake is off: start the server with --results-outbox DIR (and \
             --results-stow-url for the PACS that receives the SRs)"
                .into(),
        )
    })?;
    let pipeline = state.pipeline()?.clone();
    // Refused before the body is read: a full queue, or no room for more results.
    if pipeline.queue_depth() >= state.queue_capacity() {
        return Err(ApiError::Overloaded(
            "the inference queue is full; retry shortly".into(),
        ));
    }
    if results.is_full() {
        return Err(ApiError::Unavailable(
            "the results folder is full (--results-outbox-max-bytes) until the PACS takes the \
             waiting results; retry later"
                .into(),
        ));
    }
    let caller = Caller::of(&request);
    let parts = related::read_dicom_parts(request, state.part_limits()).await?;
    if parts.is_empty() {
        return Err(ApiError::BadRequest(
            "the multipart/related body has no parts".into(),
        ));
    }
    let sources = parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            Source::read(part, pipeline.limits()).map_err(|e| {
                ApiError::BadRequest(format!("part {i} is not a DICOM Part 10 object: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Instances that cannot be kept are refused before any inference.
    let refusals: Vec<Option<(u16, String)>> = sources
        .iter()
        .map(|s| refusal(s, study.as_deref()))
        .collect();
    let to_read = parts
        .iter()
        .zip(&refusals)
        .filter(|(_, r)| r.is_none())
        .map(|(p, _)| p.clone())
        .collect();
    let readings = pipeline
        .read(to_read, Some(state.deadline(started)))
        .await?;
    let mut read = readings.images.into_iter();
    let outcomes: Vec<Result<Reading, (u16, ApiError)>> = refusals
        .into_iter()
        .map(|refused| match refused {
            Some((code, why)) => Err((code, ApiError::Unprocessable(why))),
            None => read
                .next()
                .expect("one reading per image sent")
                .map_err(|e| (failure_reason(&e), ApiError::from(e))),
        })
        .collect();
    // What was read is kept for its study's SR; an instance that cannot be kept is refused.
    let outcomes: Vec<Result<Reading, (u16, ApiError)>> = sources
        .iter()
        .zip(outcomes)
        .map(|(source, outcome)| {
            outcome.and_then(|reading| match results.accept(source, &reading) {
                Ok(()) => Ok(reading),
                Err(e) => {
                    tracing::error!("an instance could not be kept in the results folder: {e}");
                    Err((
                        reason::OUT_OF_RESOURCES,
                        ApiError::Unavailable("the results folder could not keep it".into()),
                    ))
                }
            })
        })
        .collect();
    count_assessments(&state, outcomes.iter().filter_map(|o| o.as_ref().ok()));
    let asked = caller.audit("/dicomweb/studies", &pipeline.model().metadata.version);
    record_audit(
        &state,
        &asked,
        sources.iter().zip(&outcomes).map(|(s, o)| {
            (
                Some(s.sop_instance_uid.as_str()),
                o.as_ref().map_err(|(_, problem)| problem),
            )
        }),
        false,
    );
    Ok(answer(&sources, &outcomes))
}

/// Why an instance is refused before it is read: UIDs that are not UIDs, or another study
/// than the one the request names.
fn refusal(source: &Source, study: Option<&str>) -> Option<(u16, String)> {
    if !is_uid(&source.sop_instance_uid) || !is_uid(&source.study_instance_uid) {
        return Some((
            reason::CANNOT_UNDERSTAND,
            "its SOP Instance or Study Instance UID is not a valid UID".into(),
        ));
    }
    match study {
        Some(study) if study != source.study_instance_uid => Some((
            reason::PROCESSING,
            format!(
                "it belongs to study {}, not {study}",
                source.study_instance_uid
            ),
        )),
        _ => None,
    }
}

/// The Failure Reason of an image the pipeline could not read.
fn failure_reason(error: &ImageError) -> u16 {
    match error {
        ImageError::Empty | ImageError::UnknownFormat | ImageError::Corrupt { .. } => {
            reason::CANNOT_UNDERSTAND
        }
        ImageError::Unsupported(_) => reason::TRANSFER_SYNTAX,
        ImageError::NotMammography(_) => reason::SOP_CLASS,
        ImageError::Unusable(_) => reason::PROCESSING,
    }
}

/// The Store Instances Response (PS3.18 Table I.1-1) in the DICOM JSON model (PS3.18 F.2).
/// The Retrieve URLs are Type 2 and empty: this server stores results, not instances.
fn answer(sources: &[Source], outcomes: &[Result<Reading, (u16, ApiError)>]) -> Response {
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    for (source, outcome) in sources.iter().zip(outcomes) {
        let mut item = json!({
            "00081150": {"vr": "UI", "Value": [source.sop_class_uid]},
            "00081155": {"vr": "UI", "Value": [source.sop_instance_uid]},
        });
        match outcome {
            Ok(_) => {
                item["00081190"] = json!({"vr": "UR"});
                referenced.push(item);
            }
            Err((code, _)) => {
                item["00081197"] = json!({"vr": "US", "Value": [code]});
                failed.push(item);
            }
        }
    }
    let status = match (referenced.is_empty(), failed.is_empty()) {
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        (true, _) => StatusCode::CONFLICT,
    };
    let mut body: Value = json!({
        "00081190": {"vr": "UR"},
        "00081199": {"vr": "SQ", "Value": referenced},
    });
    if !failed.is_empty() {
        body["00081198"] = json!({"vr": "SQ", "Value": failed});
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/dicom+json")],
        body.to_string(),
    )
        .into_response()
}
