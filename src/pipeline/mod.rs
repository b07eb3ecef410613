//! One way from uploaded bytes to the model's reading, for the server and `mammo-eval` alike:
//! the decode pool, a request's fan-out over its images, admission to the engine (all of a
//! request's images or none), the deadline, and the postprocessing into domain results.
//! Knows nothing about HTTP.

mod load;

pub use load::{load_onnx, ModelInfo, OnnxOptions};

use crate::engine::{Engine, EngineError, Inference};
use crate::imaging::{self, DecodeLimits, DicomInfo, ImageError, Prepared};
use crate::model::{interpret, Prediction};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// What to do when a request's images do not fit in the engine's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Refuse at once ([`EngineError::Overloaded`]): a server sheds load.
    Refuse,
    /// Wait for room: an offline evaluation would rather wait than fail.
    Wait,
}

/// The model's reading of one image.
#[derive(Debug, Clone)]
pub struct Reading {
    pub prediction: Prediction,
    /// Identifiers of a DICOM input.
    pub dicom: Option<DicomInfo>,
}

/// A request's readings, one per image in order, with the longest wait for the engine and
/// engine run among them (zero when no image reached the engine).
#[derive(Debug, Clone)]
pub struct Readings {
    pub images: Vec<Result<Reading, ImageError>>,
    pub queue: Duration,
    pub inference: Duration,
}

/// Why a whole request could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Internal(String),
}

/// The loaded model behind its engine, and how images reach it; cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    model: ModelInfo,
    limits: DecodeLimits,
    /// Bounds the images decoded at once (one per core by default).
    decode_slots: Arc<Semaphore>,
    admission: Admission,
}

impl Pipeline {
    /// A pipeline over a started engine running `model`, decoding at most `decoders` images at
    /// once on tokio's blocking pool.
    pub fn new(
        engine: Engine,
        model: ModelInfo,
        limits: DecodeLimits,
        decoders: usize,
        admission: Admission,
    ) -> Pipeline {
        Pipeline {
            inner: Arc::new(Inner {
                engine,
                model,
                limits,
                decode_slots: Arc::new(Semaphore::new(decoders.max(1))),
                admission,
            }),
        }
    }

    /// The model being run.
    pub fn model(&self) -> &ModelInfo {
        &self.inner.model
    }

    /// What an image may be: sizes, memory, modality.
    pub fn limits(&self) -> &DecodeLimits {
        &self.inner.limits
    }

    /// Images waiting for the engine now.
    pub fn queue_depth(&self) -> usize {
        self.inner.engine.queue_depth()
    }

    /// Reads a request's images: decodes them in parallel (bounded by the decode pool), sends
    /// those that decoded to the engine together, and interprets the outputs. An image that
    /// cannot be decoded gets its error in place; the engine refusing (queue full, deadline
    /// passed, stopped) fails the whole request.
    pub async fn read(
        &self,
        images: Vec<Bytes>,
        deadline: Option<Instant>,
    ) -> Result<Readings, PipelineError> {
        let jobs: Vec<_> = images
            .into_iter()
            .map(|bytes| {
                let pipeline = self.clone();
                tokio::spawn(async move { pipeline.prepare(bytes).await })
            })
            .collect();
        let mut prepared = Vec::with_capacity(jobs.len());
        for job in jobs {
            let done = job
                .await
                .map_err(|e| PipelineError::Internal(format!("decoding task failed: {e}")))?;
            prepared.push(done?);
        }
        let tensors: Vec<Vec<f32>> = prepared
            .iter_mut()
            .filter_map(|p| p.as_mut().ok().map(|p| std::mem::take(&mut p.tensor)))
            .collect();
        let inference = if tensors.is_empty() {
            Inference {
                outputs: Vec::new(),
                queue: Duration::ZERO,
                inference: Duration::ZERO,
            }
        } else {
            self.infer(tensors, deadline).await?
        };
        let mut outputs = inference.outputs.into_iter();
        let metadata = &self.inner.model.metadata;
        let mut images = Vec::with_capacity(prepared.len());
        for p in prepared {
            images.push(match p {
                Ok(p) => {
                    let out = outputs
                        .next()
                        .expect("the engine answers every image it ran");
                    let prediction = interpret(&out.logits, out.ood_score, metadata)
                        .map_err(PipelineError::Internal)?;
                    Ok(Reading {
                        prediction,
                        dicom: p.dicom,
                    })
                }
                Err(e) => Err(e),
            });
        }
        Ok(Readings {
            images,
            queue: inference.queue,
            inference: inference.inference,
        })
    }

    async fn infer(
        &self,
        tensors: Vec<Vec<f32>>,
        deadline: Option<Instant>,
    ) -> Result<Inference, EngineError> {
        match self.inner.admission {
            Admission::Refuse => self.inner.engine.infer(tensors, deadline).await,
            Admission::Wait => self.inner.engine.infer_when_room(tensors).await,
        }
    }

    /// Decodes and preprocesses one image on the blocking pool, at most `decoders` at a time.
    async fn prepare(&self, bytes: Bytes) -> Result<Result<Prepared, ImageError>, PipelineError> {
        let permit = Arc::clone(&self.inner.decode_slots)
            .acquire_owned()
            .await
            .map_err(|_| PipelineError::Internal("the decode pool is closed".into()))?;
        let limits = self.inner.limits;
        let preprocessing = self.inner.model.metadata.preprocessing.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            imaging::prepare(&bytes, &limits, &preprocessing)
        })
        .await
        .map_err(|e| PipelineError::Internal(format!("image decoding failed unexpectedly: {e}")))
    }
}
