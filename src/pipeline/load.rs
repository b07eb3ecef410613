//! Loading an ONNX model file into a running engine: the file's digest, its sessions, its
//! metadata contract, warm-up on every batch size, the worker threads.

use crate::engine::onnx::{OnnxModel, SessionOptions};
use crate::engine::{Engine, EngineError, EngineOptions, Observer};
use crate::model::{ModelMetadata, Precision};
use ort::environment::Environment;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What was loaded, for `/health`, `/v1/model`, evaluation reports and every answer.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// File stem of the model, e.g. `mammo`.
    pub name: String,
    pub path: PathBuf,
    /// Hex SHA-256 of the model file.
    pub sha256: String,
    pub size_bytes: u64,
    pub metadata: ModelMetadata,
    /// The execution provider actually in use, as ONNX Runtime names it.
    pub provider: String,
    /// Whether TensorRT FP16 is on.
    pub fp16: bool,
}

/// How to load and run an ONNX model.
#[derive(Debug, Clone)]
pub struct OnnxOptions {
    pub session: SessionOptions,
    /// The precision the operator asked for; a file whose `mammo.precision` differs is refused.
    pub precision: Option<Precision>,
    /// Worker threads, each with its own session.
    pub workers: usize,
    /// Single-image runs after one run of every batch size, before the engine starts.
    pub warmup_runs: usize,
    pub engine: EngineOptions,
}

/// Opens the model once per worker, reads its metadata contract (logging every default it
/// falls back to), warms every session up and starts the engine. Blocks for as long as that
/// takes.
pub fn load_onnx(
    env: &Environment,
    options: &OnnxOptions,
    observer: Arc<dyn Observer>,
) -> Result<(Engine, ModelInfo), EngineError> {
    let path = &options.session.model;
    let (sha256, size_bytes) = file_sha256(path)?;
    let mut model = OnnxModel::open(env, &options.session, options.workers)?;
    let (metadata, defaults) = ModelMetadata::from_props(&model.properties)
        .map_err(|e| EngineError::Startup(e.to_string()))?;
    for note in defaults {
        tracing::warn!("{note}");
    }
    check_detector(model.has_ood_score, &metadata)?;
    check_precision(options.precision, &metadata, path)?;
    let p = &metadata.preprocessing;
    let max_batch = options.engine.max_batch_size.max(1);
    let classes = model.warm_up((p.height, p.width), max_batch, options.warmup_runs)?;
    if classes != metadata.labels.len() {
        return Err(EngineError::Startup(format!(
            "the model gives {classes} logits per image; its mammo.labels name {}",
            metadata.labels.len()
        )));
    }
    let info = ModelInfo {
        name: path
            .file_stem()
            .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned()),
        path: path.clone(),
        sha256,
        size_bytes,
        provider: model.provider.name().to_string(),
        fp16: options.session.gpu.fp16 && model.provider == crate::engine::onnx::Provider::TensorRt,
        metadata,
    };
    let tensor_len = info.metadata.preprocessing.tensor_len();
    let workers = options.workers.max(1);
    let engine = Engine::start(model.into_backends(), tensor_len, options.engine, observer)?;
    tracing::info!(model = %info.path.display(), provider = %info.provider, version = %info.metadata.version, precision = info.metadata.precision.name(), workers, max_batch, "model loaded and warmed up");
    Ok((engine, info))
}

fn file_sha256(path: &Path) -> Result<(String, u64), EngineError> {
    let unreadable = |e: std::io::Error| {
        EngineError::Startup(format!("could not read model file {}: {e}", path.display()))
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).map_err(unreadable)?;
    let digest = hasher.finalize();
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), size))
}

/// A file is served in the precision asked for, or not at all: an operator who asked for the
/// faster INT8 model must not be given FP32 unknowingly, nor the reverse.
fn check_precision(
    wanted: Option<Precision>,
    metadata: &ModelMetadata,
    path: &Path,
) -> Result<(), EngineError> {
    match wanted {
        Some(w) if w != metadata.precision => Err(EngineError::Startup(format!(
            "--precision {} asked for, but {} is {} (its mammo.precision)",
            w.name(),
            path.display(),
            metadata.precision.name()
        ))),
        _ => Ok(()),
    }
}

/// The `ood_score` output and the `mammo.ood_*` properties come together. A model with
/// neither (the contract before 2.2.0) still serves, every image assessed unchecked.
fn check_detector(has_output: bool, metadata: &ModelMetadata) -> Result<(), EngineError> {
    match (has_output, &metadata.ood) {
        (true, Some(_)) => Ok(()),
        (false, None) => {
            tracing::warn!(
                "the model has no `ood_score` output: images unlike its training data cannot be \
                 told apart, and every answer is `assessed` without that check"
            );
            Ok(())
        }
        (true, None) => Err(EngineError::Startup(
            "the model has an `ood_score` output but no mammo.ood_method / mammo.ood_threshold \
             metadata to judge it by"
                .into(),
        )),
        (false, Some(_)) => Err(EngineError::Startup(
            "the model's metadata names an out-of-distribution threshold but the model has no \
             `ood_score` output"
                .into(),
        )),
    }
}
