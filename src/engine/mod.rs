//! Tensor to logits: the ONNX Runtime environment, sessions and their execution provider,
//! warm-up, the dynamic batching queue and the worker threads that own the sessions.
//! Knows nothing about HTTP.

mod batcher;
mod providers;
mod runtime;
mod session;

use batcher::{ImageResult, Item, Queue};
pub use providers::{Device, GpuOptions, Provider};
pub use runtime::{environment, RuntimeError, DEFAULT_ORT_LIB, SETUP_HINT};
pub use session::CLASSES;

use crate::metrics::Metrics;
use crate::model::ModelMetadata;
use ort::environment::Environment;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything the engine needs to load and run a model.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub model: PathBuf,
    pub device: Device,
    pub gpu: GpuOptions,
    /// ONNX Runtime intra-op threads per worker; 0 lets ONNX Runtime choose (one per core).
    pub intra_threads: usize,
    /// Whether idle intra-op threads spin for work (ONNX Runtime's default) instead of sleeping.
    pub intra_op_spinning: bool,
    /// Extra single-image inferences at start-up, after one run of every batch size.
    pub warmup_runs: usize,
    /// Images that may wait for a worker; more are refused as overload.
    pub max_queue_size: usize,
    /// Most images in one session run.
    pub max_batch_size: usize,
    /// Longest time the oldest waiting image holds back a partial batch.
    pub max_queue_delay: Duration,
    /// Worker threads, each owning one session.
    pub workers: usize,
}

/// What was loaded, for `/health`, `/v1/model` and every response.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// File stem of the model, e.g. `mammo`.
    pub name: String,
    pub path: PathBuf,
    /// Hex SHA-256 of the ONNX file.
    pub sha256: String,
    pub size_bytes: u64,
    pub metadata: ModelMetadata,
    /// The execution provider actually in use.
    pub provider: Provider,
    /// Whether TensorRT FP16 is on (only with the TensorRT provider).
    pub fp16: bool,
}

/// Logits for a request's images, in order, with the longest wait and run among them.
#[derive(Debug, Clone)]
pub struct Inference {
    pub logits: Vec<[f32; CLASSES]>,
    pub queue: Duration,
    pub inference: Duration,
}

/// Why the engine did not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("model could not be loaded: {0}")]
    Startup(String),
    #[error("the inference queue is full ({0} images waiting)")]
    Overloaded(usize),
    #[error("the request waited {0:?} in the inference queue and passed its deadline")]
    Expired(Duration),
    #[error("the inference worker has stopped")]
    Stopped,
    #[error("inference failed: {0}")]
    Inference(String),
}

/// A loaded, warmed-up model behind a bounded batching queue; cheap to clone. The workers
/// stop when the last clone is dropped.
#[derive(Clone)]
pub struct Engine {
    info: Arc<ModelInfo>,
    queue: Arc<QueueHandle>,
    per_image: usize,
}

/// Closes the queue when the last [`Engine`] goes, so the workers end.
struct QueueHandle(Arc<Queue>);

impl Drop for QueueHandle {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Engine {
    /// Loads the model once per worker, reads its metadata, warms every session up on every
    /// batch size the batcher can form, and starts the workers. Blocks for as long as that takes.
    pub fn load(
        env: &Environment,
        config: &EngineConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Engine, EngineError> {
        let (sha256, size_bytes) = file_sha256(&config.model)?;
        let max_batch = config.max_batch_size.max(1);
        let mut sessions = Vec::new();
        for _ in 0..config.workers.max(1) {
            sessions.push(session::open(env, config)?);
        }
        let metadata = read_metadata(&sessions[0].session)?;
        let info = ModelInfo {
            name: config
                .model
                .file_stem()
                .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned()),
            path: config.model.clone(),
            sha256,
            size_bytes,
            provider: sessions[0].provider,
            fp16: config.gpu.fp16 && sessions[0].provider == Provider::TensorRt,
            metadata,
        };
        let p = &info.metadata.preprocessing;
        let (height, width, per_image) = (p.height, p.width, p.tensor_len());
        let zeros = vec![0.0f32; per_image * max_batch];
        let sizes = (1..=max_batch).chain(std::iter::repeat_n(1, config.warmup_runs));
        for opened in &mut sessions {
            for n in sizes.clone() {
                let input = &zeros[..n * per_image];
                session::run(
                    &mut opened.session,
                    &opened.input_name,
                    input,
                    n,
                    height,
                    width,
                )?;
            }
        }
        tracing::info!(model = %info.path.display(), provider = info.provider.name(), version = %info.metadata.version, workers = sessions.len(), max_batch, "model loaded and warmed up");

        let queue = Arc::new(Queue::new(
            config.max_queue_size,
            max_batch,
            config.max_queue_delay,
        ));
        // Created before the workers so that a failed start closes the queue behind them.
        let handle = Arc::new(QueueHandle(Arc::clone(&queue)));
        for (i, opened) in sessions.into_iter().enumerate() {
            let worker = Worker {
                opened,
                height,
                width,
                queue: Arc::clone(&queue),
                metrics: Arc::clone(&metrics),
                buffer: Vec::with_capacity(per_image * max_batch),
            };
            std::thread::Builder::new()
                .name(format!("mammo-engine-{i}"))
                .spawn(move || worker.serve())
                .map_err(|e| {
                    EngineError::Startup(format!("could not start an engine thread: {e}"))
                })?;
        }
        Ok(Engine {
            info: Arc::new(info),
            queue: handle,
            per_image,
        })
    }

    /// The loaded model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Images waiting for a worker now.
    pub fn queue_depth(&self) -> usize {
        self.queue.0.depth()
    }

    /// Runs preprocessed images (one CHW tensor each), batched with whatever else is queued.
    /// Refuses at once with [`EngineError::Overloaded`] when they do not all fit in the queue;
    /// images still queued at `deadline` are answered [`EngineError::Expired`].
    pub async fn infer(
        &self,
        images: Vec<Vec<f32>>,
        deadline: Option<Instant>,
    ) -> Result<Inference, EngineError> {
        let (items, answers) = self.items(images, deadline)?;
        self.queue.0.push_all(items)?;
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(answer.await.map_err(|_| EngineError::Stopped)??);
        }
        Ok(collect(results))
    }

    /// Like [`Engine::infer`] for callers outside an async runtime (offline evaluation): waits
    /// for room in the queue instead of refusing.
    pub fn infer_blocking(&self, images: Vec<Vec<f32>>) -> Result<Inference, EngineError> {
        let (items, answers) = self.items(images, None)?;
        self.queue.0.push_all_blocking(items)?;
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(answer.blocking_recv().map_err(|_| EngineError::Stopped)??);
        }
        Ok(collect(results))
    }

    fn items(
        &self,
        images: Vec<Vec<f32>>,
        deadline: Option<Instant>,
    ) -> Result<(Vec<Item>, Vec<Answer>), EngineError> {
        if let Some(bad) = images.iter().find(|t| t.len() != self.per_image) {
            return Err(EngineError::Inference(format!(
                "got {} floats for an image of {}",
                bad.len(),
                self.per_image
            )));
        }
        Ok(images.into_iter().map(|t| Item::new(t, deadline)).unzip())
    }
}

type Answer = tokio::sync::oneshot::Receiver<Result<ImageResult, EngineError>>;

/// A request's answer: its images' logits in order, with the longest wait and run among them.
fn collect(results: Vec<ImageResult>) -> Inference {
    Inference {
        queue: results.iter().map(|r| r.queue).max().unwrap_or_default(),
        inference: results
            .iter()
            .map(|r| r.inference)
            .max()
            .unwrap_or_default(),
        logits: results.into_iter().map(|r| r.logits).collect(),
    }
}

/// One engine thread: owns a session, runs the batches the queue hands it.
struct Worker {
    opened: session::OpenSession,
    height: u32,
    width: u32,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    /// The batch's concatenated input, reused between runs.
    buffer: Vec<f32>,
}

impl Worker {
    /// Serves batches until the queue closes and drains.
    fn serve(mut self) {
        while let Some(batch) = self.queue.next_batch() {
            let started = Instant::now();
            self.buffer.clear();
            for item in &batch {
                self.buffer.extend_from_slice(&item.input);
            }
            let o = &mut self.opened;
            let n = batch.len();
            let result = session::run(
                &mut o.session,
                &o.input_name,
                &self.buffer,
                n,
                self.height,
                self.width,
            );
            let inference = started.elapsed();
            self.metrics.observe_batch(n, inference);
            match result {
                Ok(logits) => {
                    for (item, logits) in batch.into_iter().zip(logits) {
                        let queue = started - item.enqueued;
                        self.metrics.observe_queue(queue);
                        let _ = item.reply.send(Ok(ImageResult {
                            logits,
                            queue,
                            inference,
                        }));
                    }
                }
                Err(e) => {
                    tracing::error!("inference failed for a batch of {n}: {e}");
                    for item in batch {
                        let _ = item.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

fn read_metadata(session: &ort::session::Session) -> Result<ModelMetadata, EngineError> {
    let unreadable =
        |e: ort::Error| EngineError::Startup(format!("could not read the model's metadata: {e}"));
    let metadata = session.metadata().map_err(unreadable)?;
    let props: HashMap<String, String> = metadata
        .custom_keys()
        .map_err(unreadable)?
        .into_iter()
        .filter_map(|key| metadata.custom(&key).map(|value| (key, value)))
        .collect();
    let (parsed, defaults) =
        ModelMetadata::from_props(&props).map_err(|e| EngineError::Startup(e.to_string()))?;
    for note in defaults {
        tracing::warn!("{note}");
    }
    Ok(parsed)
}

fn file_sha256(path: &std::path::Path) -> Result<(String, u64), EngineError> {
    let unreadable = |e: std::io::Error| {
        EngineError::Startup(format!("could not read model file {}: {e}", path.display()))
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).map_err(unreadable)?;
    let digest = hasher.finalize();
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), size))
}
