//! What the handlers share: the engine once loaded, input limits, the decode pool and metrics.

use super::error::ApiError;
use crate::config::Config;
use crate::engine::Engine;
use crate::imaging::{self, DecodeLimits, Prepared};
use crate::metrics::{Metrics, Snapshot};
use axum::body::Bytes;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Shared handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: OnceLock<Engine>,
    limits: DecodeLimits,
    max_batch_items: usize,
    /// Bounds concurrent decode/preprocess jobs to the number of cores.
    decode_slots: Arc<Semaphore>,
    /// How long a request may take; its images expire in the queue after that.
    request_timeout: Duration,
    queue_capacity: usize,
    metrics: Arc<Metrics>,
}

impl AppState {
    /// State with no engine yet: prediction routes answer 503 until [`AppState::set_engine`].
    pub fn new(config: &Config) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        AppState {
            inner: Arc::new(Inner {
                engine: OnceLock::new(),
                limits: config.decode_limits(),
                max_batch_items: config.max_batch_items,
                decode_slots: Arc::new(Semaphore::new(cores)),
                request_timeout: config.request_timeout(),
                queue_capacity: config.max_queue_size,
                metrics: Arc::default(),
            }),
        }
    }

    /// Makes the loaded, warmed-up engine available; the server is ready from here on.
    pub fn set_engine(&self, engine: Engine) {
        if self.inner.engine.set(engine).is_err() {
            tracing::warn!("an engine was already set; keeping the first");
        }
    }

    /// The engine, or 503 while the model is still loading.
    pub fn engine(&self) -> Result<&Engine, ApiError> {
        self.inner.engine.get().ok_or_else(|| {
            ApiError::Unavailable(
                "the model is still loading; retry when /health/ready answers 200".into(),
            )
        })
    }

    /// Whether the model is loaded and warmed up.
    pub fn is_ready(&self) -> bool {
        self.inner.engine.get().is_some()
    }

    /// Where the server and engine record their metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.inner.metrics)
    }

    /// The metrics in Prometheus text format, with the queue and model read now.
    pub fn render_metrics(&self) -> String {
        let engine = self.inner.engine.get();
        let snapshot = Snapshot {
            model: engine.map_or_else(Vec::new, |e| {
                let info = e.info();
                vec![
                    ("name", info.name.clone()),
                    ("version", info.metadata.version.clone()),
                    ("sha256", info.sha256.clone()),
                    ("provider", info.provider.name().to_string()),
                ]
            }),
            queue_depth: engine.map_or(0, Engine::queue_depth),
            queue_capacity: self.inner.queue_capacity,
        };
        self.inner.metrics.render(&snapshot)
    }

    /// The instant after which a request that started at `started` is past its time.
    pub fn deadline(&self, started: Instant) -> Instant {
        started + self.inner.request_timeout
    }

    /// Most items in one batch.
    pub fn max_batch_items(&self) -> usize {
        self.inner.max_batch_items
    }

    /// Decodes and preprocesses one image on the blocking pool, at most one job per core.
    pub async fn prepare(&self, bytes: Bytes, engine: &Engine) -> Result<Prepared, ApiError> {
        let permit = Arc::clone(&self.inner.decode_slots)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("decode pool closed".into()))?;
        let limits = self.inner.limits;
        let preprocessing = engine.info().metadata.preprocessing.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            imaging::prepare(&bytes, &limits, &preprocessing)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("image decoding failed unexpectedly: {e}")))?
        .map_err(ApiError::from)
    }
}
