//! HTTP only: the router, its middleware stack, handlers, JSON types and the error mapping.
//! Never touches ort or pixels; asks the [`crate::pipeline::Pipeline`].

pub mod auth;
pub mod budget;
mod drain;
pub mod dto;
pub mod error;
pub mod handlers;
mod related;
pub mod state;

pub use error::{ApiError, Problem};
pub use state::AppState;

use crate::config::Config;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::{header, HeaderName, HeaderValue, Method, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Router};
use std::time::Instant;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::util::MapRequestLayer;
use tower::ServiceBuilder;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

/// The OpenAPI document of every route, body and error.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mammo-serve",
        description = "Mammogram breast density (BI-RADS A–D) and benign/malignant classification. Decision support for radiologists, not a diagnosis.",
        license(name = "Apache-2.0")
    ),
    paths(handlers::predict, handlers::batch, handlers::store, handlers::store_study, handlers::health, handlers::live, handlers::ready, handlers::model, handlers::metrics),
    modifiers(&BearerKeys),
    tags(
        (name = "inference", description = "Predictions"),
        (name = "dicomweb", description = "DICOMweb STOW-RS intake; results go to the PACS as DICOM SR"),
        (name = "health", description = "Liveness and readiness"),
        (name = "model", description = "The loaded model"),
        (name = "metrics", description = "Prometheus metrics")
    )
)]
pub struct ApiDoc;

/// Declares the API-key scheme (`--api-keys-file`): every route may need
/// `Authorization: Bearer KEY` but the two probes, which stay open. Swagger UI's "Authorize"
/// takes the key.
struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from the server's --api-keys-file; not needed when the server runs without one",
                    ))
                    .build(),
            ),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "api_key",
            Vec::<String>::new(),
        )]);
        let refused = ResponseBuilder::new()
            .description("No API key, or one that is not valid (when the server has keys)")
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let open = matches!(path.as_str(), "/health/live" | "/health/ready");
            for operation in [item.get.as_mut(), item.post.as_mut()]
                .into_iter()
                .flatten()
            {
                if open {
                    operation.security = Some(vec![SecurityRequirement::default()]);
                } else {
                    operation
                        .responses
                        .responses
                        .insert("401".into(), refused.clone().into());
                }
            }
        }
    }
}

/// The committed document's text: `ApiDoc` as pretty JSON with a final newline.
pub fn openapi_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

/// Builds the application: routes, limits, load shedding, timeout, request ids and tracing.
pub fn router(state: AppState, config: &Config) -> Router {
    let timeout_secs = config.request_timeout;
    // Each inference route charges its body to the byte budget and is bounded by its limit
    // (STOW-RS bodies are bounded part by part as they are read: `related`).
    let charged =
        |limit: usize| middleware::from_fn_with_state(state.budget().route(limit), budget::charge);
    let (one, many) = (config.max_body_bytes, config.max_batch_body_bytes);
    // Inference routes share one concurrency limit; beyond it requests are shed with 429.
    let inference = Router::new()
        .route(
            "/predict",
            post(handlers::predict)
                .layer(DefaultBodyLimit::max(one))
                .layer(charged(one)),
        )
        .route(
            "/batch",
            post(handlers::batch)
                .layer(DefaultBodyLimit::max(many))
                .layer(charged(many)),
        )
        .route(
            "/dicomweb/studies",
            post(handlers::store).layer(charged(many)),
        )
        .route(
            "/dicomweb/studies/{study}",
            post(handlers::store_study).layer(charged(many)),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |e| {
                    middleware_error(e, timeout_secs)
                }))
                .timeout(config.request_timeout())
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(config.max_concurrency)),
        );
    // Everything but the probes needs a key when the server has keys.
    let mut protected = Router::new()
        .route("/health", get(handlers::health))
        .route("/v1/model", get(handlers::model))
        .merge(inference);
    if config.metrics_addr.is_none() {
        protected = protected.route("/metrics", get(handlers::metrics));
    }
    let protected = protected
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let app = Router::new()
        .route("/health/live", get(handlers::live))
        .route("/health/ready", get(handlers::ready))
        .merge(protected)
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO))
                        // Every answer is logged above with its status; a 503 while the model
                        // loads or under backpressure is expected, not an ERROR line per probe.
                        // Internal faults are logged where they arise (`api::error`).
                        .on_failure(()),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        );
    let app = if config.cors_allow_origin.is_empty() {
        app
    } else {
        app.layer(cors(&config.cors_allow_origin))
    };
    // Outermost, so that a body is drained whichever layer answered before reading it.
    let largest_body = config.max_body_bytes.max(config.max_batch_body_bytes) as u64;
    app.layer(MapRequestLayer::new(move |request| {
        drain::drain_when_dropped(request, largest_body)
    }))
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Cross-origin access for the browser applications named by `--cors-allow-origin`.
/// Preflights are answered here, before the routes; the timing and request-id headers are
/// readable by the page.
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).expect("origins are checked by Config::validate"))
        .collect();
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, X_REQUEST_ID])
        .expose_headers([
            X_REQUEST_ID,
            HeaderName::from_static("x-queue-time"),
            HeaderName::from_static("x-inference-time"),
            HeaderName::from_static("x-total-time"),
            header::RETRY_AFTER,
        ])
}

/// One span per request, named by method, path and `x-request-id`; bodies are never logged.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
}

/// Counts every routed request by route and status, times it, and tracks requests in flight.
async fn track(
    State(state): State<AppState>,
    request: Request<axum::body::Body>,
    next: Next,
) -> Response {
    // A route layer runs only on matched routes, so the label is always a route template.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let metrics = state.metrics();
    let started = Instant::now();
    let _in_flight = metrics.in_flight();
    let response = next.run(request).await;
    metrics.request_finished(&route, response.status().as_u16(), started.elapsed());
    response
}

/// `/metrics` alone, for its own listener (`--metrics-addr`): no API key, no other route.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(handlers::metrics))
        .fallback(handlers::not_found)
        .with_state(state)
}

/// Lets a request through when the server has no keys, or when it presents a valid one as
/// `Authorization: Bearer KEY` (the key's name then travels with the request); else 401.
async fn authenticate(
    State(state): State<AppState>,
    mut request: Request<axum::body::Body>,
    next: Next,
) -> Response {
    let Some(keys) = state.keys() else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    match presented.map(|key| keys.name_of(key)) {
        Some(Some(name)) => {
            request.extensions_mut().insert(auth::KeyName(name));
            next.run(request).await
        }
        Some(None) => ApiError::Unauthorized("the API key is not valid".into()).into_response(),
        None => ApiError::Unauthorized(
            "an API key is required: send it as Authorization: Bearer KEY".into(),
        )
        .into_response(),
    }
}

/// Errors raised by the middleware (shedding, timeout) as problems.
async fn middleware_error(error: BoxError, secs: f64) -> Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Overloaded(
            "too many requests in flight (--max-concurrency); retry shortly".into(),
        )
        .into_response()
    } else if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::Unavailable(format!(
            "the request did not complete within {secs} s (--request-timeout)"
        ))
        .into_response()
    } else {
        ApiError::Internal(format!("middleware error: {error}")).into_response()
    }
}
