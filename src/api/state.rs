//! What the handlers share: the pipeline once the model is loaded, request limits, metrics.

use super::error::ApiError;
use crate::api::auth::KeyStore;
use crate::api::budget::ByteBudget;
use crate::api::related::PartLimits;
use crate::audit::AuditLog;
use crate::config::Config;
use crate::metrics::{Metrics, Snapshot};
use crate::pipeline::Pipeline;
use crate::results::Results;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Shared handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    pipeline: OnceLock<Pipeline>,
    max_batch_items: usize,
    /// How long a request may take; its images expire in the queue after that.
    request_timeout: Duration,
    queue_capacity: usize,
    metrics: Arc<Metrics>,
    audit: Option<AuditLog>,
    keys: Option<KeyStore>,
    /// Request body bytes held at once (`--max-inflight-bytes`).
    budget: ByteBudget,
    /// Set once shutdown has begun: readiness fails from then on.
    stopping: AtomicBool,
    /// Where DICOMweb results wait (`--results-outbox`).
    results: Option<Arc<Results>>,
    /// What a STOW-RS body may hold.
    part_limits: PartLimits,
}

impl AppState {
    /// State with no model yet: prediction routes answer 503 until [`AppState::set_pipeline`].
    pub fn new(
        config: &Config,
        audit: Option<AuditLog>,
        keys: Option<KeyStore>,
        results: Option<Arc<Results>>,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                pipeline: OnceLock::new(),
                max_batch_items: config.max_batch_items,
                request_timeout: config.request_timeout(),
                queue_capacity: config.max_queue_size,
                metrics: Arc::default(),
                audit,
                keys,
                budget: ByteBudget::new(config.max_inflight_bytes),
                stopping: AtomicBool::new(false),
                results,
                // The batch limits; one part is one image, as on /predict.
                part_limits: PartLimits {
                    body: config.max_batch_body_bytes,
                    part: config.max_body_bytes,
                    parts: config.max_batch_items,
                },
            }),
        }
    }

    /// Makes the loaded, warmed-up model available; the server is ready from here on.
    pub fn set_pipeline(&self, pipeline: Pipeline) {
        if self.inner.pipeline.set(pipeline).is_err() {
            tracing::warn!("a model was already loaded; keeping the first");
        }
    }

    /// The pipeline, or 503 while the model is still loading.
    pub fn pipeline(&self) -> Result<&Pipeline, ApiError> {
        self.inner.pipeline.get().ok_or_else(|| {
            ApiError::Unavailable(
                "the model is still loading; retry when /health/ready answers 200".into(),
            )
        })
    }

    /// Where the server and engine record their metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.inner.metrics)
    }

    /// The metrics in Prometheus text format, with the queue and model read now.
    pub fn render_metrics(&self) -> String {
        let pipeline = self.inner.pipeline.get();
        let snapshot = Snapshot {
            model: pipeline.map_or_else(Vec::new, |p| {
                let info = p.model();
                vec![
                    ("name", info.name.clone()),
                    ("version", info.metadata.version.clone()),
                    ("sha256", info.sha256.clone()),
                    ("provider", info.provider.clone()),
                    ("precision", info.metadata.precision.name().into()),
                ]
            }),
            queue_depth: pipeline.map_or(0, Pipeline::queue_depth),
            queue_capacity: self.inner.queue_capacity,
            body_bytes_held: self.inner.budget.held(),
            body_bytes_budget: self.inner.budget.total(),
            results: self.inner.results.as_ref().map(|r| r.gauges()),
        };
        self.inner.metrics.render(&snapshot)
    }

    /// Marks the server as stopping: `/health/ready` answers 503 from now on.
    pub fn set_stopping(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
    }

    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }

    /// The API keys, when the server requires one.
    pub fn keys(&self) -> Option<&KeyStore> {
        self.inner.keys.as_ref()
    }

    /// The budget on request bodies held at once.
    pub fn budget(&self) -> &ByteBudget {
        &self.inner.budget
    }

    /// The DICOMweb results folder, when the server has one.
    pub fn results(&self) -> Option<&Arc<Results>> {
        self.inner.results.as_ref()
    }

    /// The model being served, once loaded.
    pub fn model(&self) -> Option<crate::pipeline::ModelInfo> {
        self.inner.pipeline.get().map(|p| p.model().clone())
    }

    /// What a STOW-RS body may hold.
    pub fn part_limits(&self) -> PartLimits {
        self.inner.part_limits
    }

    /// Images the inference queue holds at most.
    pub fn queue_capacity(&self) -> usize {
        self.inner.queue_capacity
    }

    /// The audit trail, when the server keeps one.
    pub fn audit(&self) -> Option<&AuditLog> {
        self.inner.audit.as_ref()
    }

    /// The instant after which a request that started at `started` is past its time.
    pub fn deadline(&self, started: Instant) -> Instant {
        started + self.inner.request_timeout
    }

    /// Most items in one batch.
    pub fn max_batch_items(&self) -> usize {
        self.inner.max_batch_items
    }
}
