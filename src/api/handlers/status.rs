//! Health, model description, metrics, and the problems for unknown routes and methods.

use crate::api::dto::{Health, ModelDescription, ModelRef};
use crate::api::error::{ApiError, Problem};
use crate::api::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

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
    responses((status = 200, description = "Ready", body = Health), (status = 503, description = "Still loading, or stopping", body = Health))
)]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    health_report(&state)
}

/// Health report: status, execution provider in use and model; 503 until ready.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses((status = 200, description = "Ready", body = Health), (status = 503, description = "Still loading, or stopping", body = Health))
)]
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    health_report(&state)
}

fn health_report(state: &AppState) -> (StatusCode, Json<Health>) {
    if state.is_stopping() {
        // Taken out of rotation before the listener closes (see `--shutdown-delay`).
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "stopping".into(),
                execution_provider: None,
                model: None,
            }),
        );
    }
    match state.pipeline() {
        Ok(pipeline) => (
            StatusCode::OK,
            Json(Health {
                status: "ready".into(),
                execution_provider: Some(pipeline.model().provider.clone()),
                model: Some(ModelRef::from(pipeline.model())),
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
    Ok(Json(ModelDescription::from(state.pipeline()?.model())))
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
