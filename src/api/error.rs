//! Every failure a client can see, mapped to one HTTP status and an RFC 9457 problem body.

use crate::engine::EngineError;
use crate::imaging::ImageError;
use crate::pipeline::PipelineError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// `application/problem+json` body (RFC 9457).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status and `title` say what kind of problem it is.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: String,
    /// The HTTP status phrase.
    #[schema(example = "Unprocessable Entity")]
    pub title: String,
    /// The HTTP status code.
    #[schema(example = 422)]
    pub status: u16,
    /// What was wrong with this request, in words.
    #[schema(example = "the image is 100000×100000 px; the limit is 10000 px a side")]
    pub detail: String,
}

/// A request that could not be answered.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 400: empty, undecodable or malformed input.
    BadRequest(String),
    /// 401: no API key, or one that is not valid.
    Unauthorized(String),
    /// 404: no such route.
    NotFound(String),
    /// 405: the route exists, the method does not.
    MethodNotAllowed(String),
    /// 406: no answer in a media type the request accepts.
    NotAcceptable(String),
    /// 413: body or batch over its limit.
    TooLarge(String),
    /// 415: a content type we do not read.
    UnsupportedType(String),
    /// 422: decodable but unusable input.
    Unprocessable(String),
    /// 429: too much work in flight; retry after the given seconds.
    Overloaded(String),
    /// 503: the model is not loaded yet, or the request ran past its time.
    Unavailable(String),
    /// 500: a fault on our side.
    Internal(String),
}

/// Seconds a client should wait before retrying a 429 or 503.
const RETRY_AFTER_SECS: &str = "1";

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem body of this error.
    pub fn problem(&self) -> Problem {
        let (ApiError::BadRequest(detail)
        | ApiError::Unauthorized(detail)
        | ApiError::NotFound(detail)
        | ApiError::MethodNotAllowed(detail)
        | ApiError::NotAcceptable(detail)
        | ApiError::TooLarge(detail)
        | ApiError::UnsupportedType(detail)
        | ApiError::Unprocessable(detail)
        | ApiError::Overloaded(detail)
        | ApiError::Unavailable(detail)
        | ApiError::Internal(detail)) = self;
        let status = self.status();
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!("internal error: {detail}");
        }
        let mut response = (self.status(), axum::Json(self.problem())).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, ApiError::Unauthorized(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, ApiError::Overloaded(_) | ApiError::Unavailable(_)) {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Empty | ImageError::UnknownFormat | ImageError::Corrupt { .. } => {
                ApiError::BadRequest(e.to_string())
            }
            ImageError::Unusable(_) => ApiError::Unprocessable(e.to_string()),
            ImageError::NotMammography(_) => ApiError::Unprocessable(format!(
                "{e}; the server accepts other modalities only when started with --allow-any-modality"
            )),
            ImageError::Unsupported(_) => ApiError::UnsupportedType(e.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Overloaded(_) => ApiError::Overloaded(format!("{e}; retry shortly")),
            EngineError::Stopped | EngineError::Expired(_) => ApiError::Unavailable(e.to_string()),
            EngineError::Startup(_) | EngineError::Inference(_) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Engine(e) => e.into(),
            PipelineError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}
