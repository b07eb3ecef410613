//! `multipart/related` request bodies (RFC 2387) as STOW-RS sends DICOM instances (PS3.18
//! 10.5): `multipart/related; type="application/dicom"; boundary=…`, each part one DICOM Part 10
//! object. Read part by part as the body streams in (multer), the whole body and each part
//! bounded, so that a body over its limit is refused without being held.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::header;
use mime::Mime;

/// The only part type read: DICOM Part 10 objects. Metadata with bulk data
/// (`application/dicom+json`, `+xml`) is not accepted.
const DICOM: &str = "application/dicom";

/// What a `multipart/related` body may hold.
#[derive(Debug, Clone, Copy)]
pub struct PartLimits {
    /// Bytes of the whole body (`--max-batch-body-bytes`).
    pub body: usize,
    /// Bytes of one part (`--max-body-bytes`, as for one image on `/predict`).
    pub part: usize,
    /// Parts (`--max-batch-items`).
    pub parts: usize,
}

/// The boundary of a `multipart/related` request whose parts are `application/dicom`; 415 for
/// another media type or part type, 400 without a boundary.
pub fn boundary(request: &Request) -> Result<String, ApiError> {
    let value = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let wanted = "send multipart/related; type=\"application/dicom\" with one DICOM object a part";
    let mime: Mime = value.parse().map_err(|_| {
        ApiError::UnsupportedType(format!("content type {value:?} is not accepted; {wanted}"))
    })?;
    if mime.type_() != mime::MULTIPART || mime.subtype() != "related" {
        return Err(ApiError::UnsupportedType(format!(
            "content type {:?} is not accepted; {wanted}",
            mime.essence_str()
        )));
    }
    if let Some(kind) = mime.get_param("type") {
        if !kind.as_str().eq_ignore_ascii_case(DICOM) {
            return Err(ApiError::UnsupportedType(format!(
                "multipart/related parts of type {:?} are not accepted (metadata with bulk data \
                 is not supported); {wanted}",
                kind.as_str()
            )));
        }
    }
    mime.get_param(mime::BOUNDARY)
        .map(|b| b.as_str().to_string())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "the multipart/related content type has no boundary parameter".into(),
            )
        })
}

/// The parts of a `multipart/related` DICOM body, in order. A part whose `Content-Type` is not
/// `application/dicom` is 415, naming the part (a part without one is taken as DICOM); a body,
/// part or part count over its limit is 413; a malformed body 400.
pub async fn read_dicom_parts(
    request: Request,
    limits: PartLimits,
) -> Result<Vec<Bytes>, ApiError> {
    let boundary = boundary(&request)?;
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(limits.body as u64)
            .per_field(limits.part as u64),
    );
    let stream = request.into_body().into_data_stream();
    let mut body = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut parts = Vec::new();
    while let Some(part) = body
        .next_field()
        .await
        .map_err(|e| malformed(e, parts.len()))?
    {
        let index = parts.len();
        if index == limits.parts {
            return Err(ApiError::TooLarge(format!(
                "the request has more than {} parts (--max-batch-items)",
                limits.parts
            )));
        }
        if let Some(kind) = part.content_type() {
            if kind.essence_str() != DICOM {
                return Err(ApiError::UnsupportedType(format!(
                    "part {index} is {:?}, not {DICOM}",
                    kind.essence_str()
                )));
            }
        }
        parts.push(part.bytes().await.map_err(|e| malformed(e, index))?);
    }
    Ok(parts)
}

/// A multer error as our problem; `index` is the part being read.
fn malformed(error: multer::Error, index: usize) -> ApiError {
    match error {
        multer::Error::StreamSizeExceeded { limit } => ApiError::TooLarge(format!(
            "the request body is larger than the {limit}-byte limit (--max-batch-body-bytes)"
        )),
        multer::Error::FieldSizeExceeded { limit, .. } => ApiError::TooLarge(format!(
            "part {index} is larger than the {limit}-byte limit for one object (--max-body-bytes)"
        )),
        other => ApiError::BadRequest(format!(
            "malformed multipart/related body at part {index}: {other}"
        )),
    }
}
