//! Tensors to model outputs: a bounded queue that forms batches dynamically, and worker
//! threads that each own one [`Backend`] and run the batches the queue hands them. Knows
//! nothing about HTTP, images or what the outputs mean.
//!
//! Backends: [`onnx`] (ONNX Runtime sessions on CPU, CUDA or TensorRT) and [`gate`] (no model;
//! a test decides when each run finishes).

mod backend;
mod batcher;
pub mod gate;
pub mod onnx;

pub use backend::{Backend, BatchOutputs, ImageOutputs};

use batcher::{ImageResult, Item, Queue};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the queue forms batches and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Images that may wait for a worker; more are refused as overload.
    pub max_queue_size: usize,
    /// Most images in one backend run.
    pub max_batch_size: usize,
    /// Longest time the oldest waiting image holds back a partial batch.
    pub max_queue_delay: Duration,
}

/// Where the engine reports what it did (metrics); the engine does not know who listens.
pub trait Observer: Send + Sync {
    /// A backend ran `images` images in `elapsed`.
    fn batch_ran(&self, images: usize, elapsed: Duration);
    /// An image waited `waited` between entering the queue and the start of its run.
    fn waited(&self, waited: Duration);
}

/// An observer that records nothing.
pub struct Unobserved;

impl Observer for Unobserved {
    fn batch_ran(&self, _: usize, _: Duration) {}
    fn waited(&self, _: Duration) {}
}

/// A request's images' outputs, in order, with the longest wait and run among them.
#[derive(Debug, Clone)]
pub struct Inference {
    pub outputs: Vec<ImageOutputs>,
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

/// Backends behind a bounded batching queue; cheap to clone. The workers stop when the last
/// clone is dropped, after finishing what is queued.
#[derive(Clone)]
pub struct Engine {
    queue: Arc<QueueHandle>,
    tensor_len: usize,
}

/// Closes the queue when the last [`Engine`] goes, so the workers end.
struct QueueHandle(Arc<Queue>);

impl Drop for QueueHandle {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Engine {
    /// Starts one worker thread per backend, each fed images of `tensor_len` floats.
    pub fn start(
        backends: Vec<Box<dyn Backend>>,
        tensor_len: usize,
        options: EngineOptions,
        observer: Arc<dyn Observer>,
    ) -> Result<Engine, EngineError> {
        let max_batch = options.max_batch_size.max(1);
        let queue = Arc::new(Queue::new(
            options.max_queue_size,
            max_batch,
            options.max_queue_delay,
        ));
        // Created before the workers so that a failed start closes the queue behind them.
        let handle = Arc::new(QueueHandle(Arc::clone(&queue)));
        for (i, backend) in backends.into_iter().enumerate() {
            let worker = Worker {
                backend,
                queue: Arc::clone(&queue),
                observer: Arc::clone(&observer),
                buffer: Vec::with_capacity(tensor_len * max_batch),
            };
            std::thread::Builder::new()
                .name(format!("mammo-engine-{i}"))
                .spawn(move || worker.serve())
                .map_err(|e| {
                    EngineError::Startup(format!("could not start an engine thread: {e}"))
                })?;
        }
        Ok(Engine {
            queue: handle,
            tensor_len,
        })
    }

    /// Images waiting for a worker now.
    pub fn queue_depth(&self) -> usize {
        self.queue.0.depth()
    }

    /// Runs images (one tensor each), batched with whatever else is queued. Refuses at once
    /// with [`EngineError::Overloaded`] when they do not all fit in the queue; images still
    /// queued at `deadline` are answered [`EngineError::Expired`].
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

    /// Like [`Engine::infer`], but waits for room in the queue instead of refusing (offline
    /// callers, which prefer waiting to being turned away). The wait happens on tokio's
    /// blocking pool.
    pub async fn infer_when_room(&self, images: Vec<Vec<f32>>) -> Result<Inference, EngineError> {
        let (items, answers) = self.items(images, None)?;
        let queue = Arc::clone(&self.queue.0);
        tokio::task::spawn_blocking(move || queue.push_all_blocking(items))
            .await
            .map_err(|_| EngineError::Stopped)??;
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(answer.await.map_err(|_| EngineError::Stopped)??);
        }
        Ok(collect(results))
    }

    fn items(
        &self,
        images: Vec<Vec<f32>>,
        deadline: Option<Instant>,
    ) -> Result<(Vec<Item>, Vec<Answer>), EngineError> {
        if let Some(bad) = images.iter().find(|t| t.len() != self.tensor_len) {
            return Err(EngineError::Inference(format!(
                "got {} floats for an image of {}",
                bad.len(),
                self.tensor_len
            )));
        }
        Ok(images.into_iter().map(|t| Item::new(t, deadline)).unzip())
    }
}

type Answer = tokio::sync::oneshot::Receiver<Result<ImageResult, EngineError>>;

/// A request's answer: its images' outputs in order, with the longest wait and run among them.
fn collect(results: Vec<ImageResult>) -> Inference {
    Inference {
        queue: results.iter().map(|r| r.queue).max().unwrap_or_default(),
        inference: results
            .iter()
            .map(|r| r.inference)
            .max()
            .unwrap_or_default(),
        outputs: results.into_iter().map(|r| r.outputs).collect(),
    }
}

/// One engine thread: owns a backend, runs the batches the queue hands it.
struct Worker {
    backend: Box<dyn Backend>,
    queue: Arc<Queue>,
    observer: Arc<dyn Observer>,
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
            let n = batch.len();
            let result = self
                .backend
                .run(&self.buffer, n)
                .and_then(|outputs| outputs.split(n));
            let inference = started.elapsed();
            self.observer.batch_ran(n, inference);
            match result {
                Ok(outputs) => {
                    for (item, outputs) in batch.into_iter().zip(outputs) {
                        let queue = started - item.enqueued;
                        self.observer.waited(queue);
                        let _ = item.reply.send(Ok(ImageResult {
                            outputs,
                            queue,
                            inference,
                        }));
                    }
                }
                Err(e) => {
                    tracing::error!("inference failed for a batch of {n}: {e}");
                    for item in batch {
                        let _ = item.reply.send(Err(EngineError::Inference(e.clone())));
                    }
                }
            }
        }
    }
}
