//! What the handlers share: the engine once loaded, input limits, and the decode pool.

use super::error::ApiError;
use crate::config::Config;
use crate::engine::Engine;
use crate::imaging::{self, DecodeLimits};
use axum::body::Bytes;
use std::sync::{Arc, OnceLock};
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

    /// Most items in one batch.
    pub fn max_batch_items(&self) -> usize {
        self.inner.max_batch_items
    }

    /// Decodes and preprocesses one image on the blocking pool, at most one job per core.
    pub async fn tensor(&self, bytes: Bytes, engine: &Engine) -> Result<Vec<f32>, ApiError> {
        let permit = Arc::clone(&self.inner.decode_slots)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("decode pool closed".into()))?;
        let limits = self.inner.limits;
        let preprocessing = engine.info().metadata.preprocessing.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            imaging::to_tensor(&bytes, &limits, &preprocessing)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("image decoding failed unexpectedly: {e}")))?
        .map_err(ApiError::from)
    }
}
