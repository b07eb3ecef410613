//! Tensor to logits: the ONNX Runtime environment, the session and its execution provider,
//! warm-up, and the worker thread that owns the session. Knows nothing about HTTP.

mod providers;
mod runtime;
mod session;

pub use providers::{Device, GpuOptions, Provider};
pub use runtime::{environment, RuntimeError, DEFAULT_ORT_LIB, SETUP_HINT};
pub use session::CLASSES;

use crate::model::ModelMetadata;
use ort::environment::Environment;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Everything the engine needs to load and run a model.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub model: PathBuf,
    pub device: Device,
    pub gpu: GpuOptions,
    /// ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose (one per core).
    pub intra_threads: usize,
    /// Inferences run at start-up before the engine is handed out.
    pub warmup_runs: usize,
    /// Jobs that may wait for the worker; more are refused as overload.
    pub max_queue_size: usize,
    /// Most images in one session run; larger jobs are split.
    pub max_batch_size: usize,
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

/// Logits for a job's images with the time spent waiting and running.
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
    #[error("the inference queue is full ({0} jobs waiting)")]
    Overloaded(usize),
    #[error("the inference worker has stopped")]
    Stopped,
    #[error("inference failed: {0}")]
    Inference(String),
}

struct Job {
    input: Vec<f32>,
    n: usize,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Inference, EngineError>>,
}

/// A loaded, warmed-up model behind a bounded queue; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    info: Arc<ModelInfo>,
    jobs: mpsc::Sender<Job>,
}

impl Engine {
    /// Loads the model, reads its metadata, warms it up and starts the worker thread that
    /// owns the session. Blocks for as long as that takes.
    pub fn load(env: &Environment, config: &EngineConfig) -> Result<Engine, EngineError> {
        let (sha256, size_bytes) = file_sha256(&config.model)?;
        let mut opened = session::open(env, config)?;
        let metadata = read_metadata(&opened.session)?;
        let info = ModelInfo {
            name: config
                .model
                .file_stem()
                .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned()),
            path: config.model.clone(),
            sha256,
            size_bytes,
            provider: opened.provider,
            fp16: config.gpu.fp16 && opened.provider == Provider::TensorRt,
            metadata,
        };
        let p = &info.metadata.preprocessing;
        let zeros = vec![0.0f32; p.tensor_len()];
        for _ in 0..config.warmup_runs.max(1) {
            session::run(
                &mut opened.session,
                &opened.input_name,
                &zeros,
                1,
                p.height,
                p.width,
            )?;
        }
        tracing::info!(model = %info.path.display(), provider = info.provider.name(), version = %info.metadata.version, "model loaded and warmed up");

        let (tx, rx) = mpsc::channel(config.max_queue_size.max(1));
        let worker = Worker {
            opened,
            height: p.height,
            width: p.width,
            per_image: p.tensor_len(),
            max_batch: config.max_batch_size.max(1),
        };
        std::thread::Builder::new()
            .name("mammo-engine".into())
            .spawn(move || worker.serve(rx))
            .map_err(|e| EngineError::Startup(format!("could not start the engine thread: {e}")))?;
        Ok(Engine {
            info: Arc::new(info),
            jobs: tx,
        })
    }

    /// The loaded model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Runs `n` preprocessed images (concatenated CHW tensors). Refuses at once with
    /// [`EngineError::Overloaded`] when the queue is full.
    pub async fn infer(&self, input: Vec<f32>, n: usize) -> Result<Inference, EngineError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            input,
            n,
            enqueued: Instant::now(),
            reply,
        };
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => EngineError::Overloaded(self.jobs.max_capacity()),
            mpsc::error::TrySendError::Closed(_) => EngineError::Stopped,
        })?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Like [`Engine::infer`] for callers outside an async runtime (offline evaluation): waits
    /// for room in the queue instead of refusing.
    pub fn infer_blocking(&self, input: Vec<f32>, n: usize) -> Result<Inference, EngineError> {
        let (job, answer) = Job::new(input, n);
        self.jobs
            .blocking_send(job)
            .map_err(|_| EngineError::Stopped)?;
        answer.blocking_recv().map_err(|_| EngineError::Stopped)?
    }
}

impl Job {
    fn new(input: Vec<f32>, n: usize) -> (Job, oneshot::Receiver<Result<Inference, EngineError>>) {
        let (reply, answer) = oneshot::channel();
        (
            Job {
                input,
                n,
                enqueued: Instant::now(),
                reply,
            },
            answer,
        )
    }
}

struct Worker {
    opened: session::OpenSession,
    height: u32,
    width: u32,
    per_image: usize,
    max_batch: usize,
}

impl Worker {
    /// Serves jobs until every [`Engine`] handle is dropped.
    fn serve(mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.blocking_recv() {
            if job.reply.is_closed() {
                continue; // the caller went away: do not spend the engine on it
            }
            let started = Instant::now();
            let result = self.run(&job.input, job.n).map(|logits| Inference {
                logits,
                queue: started - job.enqueued,
                inference: started.elapsed(),
            });
            let _ = job.reply.send(result);
        }
    }

    fn run(&mut self, input: &[f32], n: usize) -> Result<Vec<[f32; CLASSES]>, EngineError> {
        if input.len() != n * self.per_image {
            return Err(EngineError::Inference(format!(
                "got {} floats for {n} images of {}",
                input.len(),
                self.per_image
            )));
        }
        let mut logits = Vec::with_capacity(n);
        for chunk in input.chunks(self.max_batch * self.per_image) {
            let images = chunk.len() / self.per_image;
            let o = &mut self.opened;
            logits.extend(session::run(
                &mut o.session,
                &o.input_name,
                chunk,
                images,
                self.height,
                self.width,
            )?);
        }
        Ok(logits)
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
