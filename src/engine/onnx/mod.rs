//! The ONNX Runtime backend: the library and its environment, execution providers, one
//! session per engine worker, the model file's metadata properties, warm-up and runs.

mod providers;
mod runtime;

pub use providers::{Device, GpuOptions, Provider};
pub use runtime::{environment, RuntimeError, DEFAULT_ORT_LIB, SETUP_HINT};

use super::backend::{Backend, BatchOutputs};
use super::EngineError;
use ::ort::environment::Environment;
use ::ort::session::builder::GraphOptimizationLevel;
use ::ort::session::Session;
use ::ort::value::{TensorElementType, TensorRef, ValueType};
use std::collections::HashMap;
use std::path::PathBuf;

/// Name of the optional per-image out-of-distribution output (model contract).
pub const OOD_OUTPUT: &str = "ood_score";

/// How to open a model with ONNX Runtime.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub model: PathBuf,
    pub device: Device,
    pub gpu: GpuOptions,
    /// Intra-op threads per session; 0 lets ONNX Runtime choose (one per core).
    pub intra_threads: usize,
    /// Whether idle intra-op threads spin for work (ONNX Runtime's default) instead of sleeping.
    pub intra_op_spinning: bool,
}

/// A model opened once per worker, before warm-up.
pub struct OnnxModel {
    sessions: Vec<OnnxBackend>,
    /// The execution provider actually in use.
    pub provider: Provider,
    /// The model file's custom metadata properties (`mammo.*`).
    pub properties: HashMap<String, String>,
    /// Whether the model has the `ood_score` output.
    pub has_ood_score: bool,
}

/// One ONNX Runtime session, owned by one engine worker.
pub struct OnnxBackend {
    session: Session,
    input: String,
    /// `(N, 3, height, width)` of one run.
    height: usize,
    width: usize,
    has_ood_score: bool,
}

impl OnnxModel {
    /// Opens `sessions` sessions of the model (at least one) on the first provider of
    /// `options.device` that works, and reads its metadata properties.
    pub fn open(
        env: &Environment,
        options: &SessionOptions,
        sessions: usize,
    ) -> Result<OnnxModel, EngineError> {
        let (first, provider) = open_session(env, options)?;
        let properties = read_properties(&first)?;
        let (input, has_ood_score) = check_io(&first).map_err(EngineError::Startup)?;
        let mut opened = vec![first];
        // Every further session on the provider the first one got: the model's reported
        // provider is then every worker's, and `auto` tries (and logs) the others once.
        for _ in 1..sessions.max(1) {
            opened.push(build(env, options, provider).map_err(EngineError::Startup)?);
        }
        let sessions = opened
            .into_iter()
            .map(|session| OnnxBackend {
                session,
                input: input.clone(),
                height: 0,
                width: 0,
                has_ood_score,
            })
            .collect();
        Ok(OnnxModel {
            sessions,
            provider,
            properties,
            has_ood_score,
        })
    }

    /// Fixes the input size and runs every session on every batch size up to `max_batch`,
    /// then `extra_runs` single images more: the first runs of a session (and TensorRT's
    /// engine builds) are slow, and should happen before the server reports ready. Returns
    /// the number of logits per image the model gave.
    pub fn warm_up(
        &mut self,
        (height, width): (u32, u32),
        max_batch: usize,
        extra_runs: usize,
    ) -> Result<usize, EngineError> {
        let per_image = 3 * height as usize * width as usize;
        let zeros = vec![0.0f32; per_image * max_batch.max(1)];
        let sizes = (1..=max_batch.max(1)).chain(std::iter::repeat_n(1, extra_runs));
        let mut classes = 0;
        for backend in &mut self.sessions {
            (backend.height, backend.width) = (height as usize, width as usize);
            for n in sizes.clone() {
                let outputs = backend
                    .run(&zeros[..n * per_image], n)
                    .map_err(EngineError::Startup)?;
                classes = outputs.classes;
                outputs.split(n).map_err(EngineError::Startup)?;
            }
        }
        Ok(classes)
    }

    /// The sessions, one per worker, as engine backends.
    pub fn into_backends(self) -> Vec<Box<dyn Backend>> {
        self.sessions
            .into_iter()
            .map(|b| Box::new(b) as Box<dyn Backend>)
            .collect()
    }
}

impl Backend for OnnxBackend {
    fn run(&mut self, input: &[f32], n: usize) -> Result<BatchOutputs, String> {
        let failed = |e: ::ort::Error| e.to_string();
        let shape = [n, 3, self.height, self.width];
        let tensor = TensorRef::from_array_view((shape, input)).map_err(failed)?;
        let outputs = self
            .session
            .run(::ort::inputs![self.input.as_str() => tensor])
            .map_err(failed)?;
        let (out_shape, logits) = outputs[0].try_extract_tensor::<f32>().map_err(failed)?;
        if out_shape.len() != 2 || out_shape[0] as usize != n {
            return Err(format!(
                "the model returned logits of shape {out_shape:?} for a batch of {n}"
            ));
        }
        let ood_score = if self.has_ood_score {
            let (_, scores) = outputs[OOD_OUTPUT]
                .try_extract_tensor::<f32>()
                .map_err(failed)?;
            Some(scores.to_vec())
        } else {
            None
        };
        Ok(BatchOutputs {
            logits: logits.to_vec(),
            classes: out_shape[1] as usize,
            ood_score,
        })
    }
}

/// A session on the first provider of `options.device` that works. For `auto`, a provider
/// that fails (missing library, no GPU) is logged and the next one is tried; for an explicit
/// device, the failure is the error.
fn open_session(
    env: &Environment,
    options: &SessionOptions,
) -> Result<(Session, Provider), EngineError> {
    let candidates = options.device.candidates();
    let mut failures = Vec::new();
    for &provider in candidates {
        match build(env, options, provider) {
            Ok(session) => return Ok((session, provider)),
            Err(why) if candidates.len() > 1 => {
                tracing::warn!(
                    provider = provider.name(),
                    "execution provider unavailable, trying the next: {why}"
                );
                failures.push(why);
            }
            Err(why) => return Err(EngineError::Startup(why)),
        }
    }
    Err(EngineError::Startup(failures.join("; ")))
}

fn build(
    env: &Environment,
    options: &SessionOptions,
    provider: Provider,
) -> Result<Session, String> {
    let mut builder = Session::builder(env)
        .and_then(|b| {
            b.with_optimization_level(GraphOptimizationLevel::All)
                .map_err(Into::into)
        })
        .and_then(|b| {
            b.with_intra_threads(options.intra_threads)
                .map_err(Into::into)
        })
        .and_then(|b| {
            b.with_intra_op_spinning(options.intra_op_spinning)
                .map_err(Into::into)
        })
        .map_err(|e| format!("could not configure the ONNX Runtime session: {e}"))?;
    provider.register(&mut builder, &options.gpu)?;
    builder.commit_from_file(&options.model).map_err(|e| {
        format!(
            "could not load model {} with {}: {e}",
            options.model.display(),
            provider.name()
        )
    })
}

/// Checks the contract's I/O: one float input `[N,3,H,W]`; a float output `[N,C]` first
/// (the logits); optionally a float output `ood_score` `[N]`. Returns the input's name and
/// whether the model scores how far an image lies from its training data.
fn check_io(session: &Session) -> Result<(String, bool), String> {
    let [input] = session.inputs() else {
        return Err(format!(
            "the model must have exactly one input, it has {}",
            session.inputs().len()
        ));
    };
    let Some(output) = session.outputs().first() else {
        return Err("the model has no output".to_string());
    };
    let shape = |dtype: &ValueType| match dtype {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            ..
        } => Some(shape.to_vec()),
        _ => None,
    };
    if shape(input.dtype())
        .filter(|s| s.len() == 4 && (s[1] == 3 || s[1] < 0))
        .is_none()
    {
        return Err(format!(
            "model input `{}` must be float32 [N,3,H,W], it is {:?}",
            input.name(),
            input.dtype()
        ));
    }
    if shape(output.dtype()).filter(|s| s.len() == 2).is_none() {
        return Err(format!(
            "model output `{}` must be float32 [N,classes], it is {:?}",
            output.name(),
            output.dtype()
        ));
    }
    let ood = session.outputs().iter().find(|o| o.name() == OOD_OUTPUT);
    if let Some(ood) = ood {
        if shape(ood.dtype()).filter(|s| s.len() == 1).is_none() {
            return Err(format!(
                "model output `{OOD_OUTPUT}` must be float32 [N], it is {:?}",
                ood.dtype()
            ));
        }
    }
    Ok((input.name().to_string(), ood.is_some()))
}

/// The model file's custom metadata properties.
fn read_properties(session: &Session) -> Result<HashMap<String, String>, EngineError> {
    let unreadable =
        |e: ::ort::Error| EngineError::Startup(format!("could not read the model's metadata: {e}"));
    let metadata = session.metadata().map_err(unreadable)?;
    Ok(metadata
        .custom_keys()
        .map_err(unreadable)?
        .into_iter()
        .filter_map(|key| metadata.custom(&key).map(|value| (key, value)))
        .collect())
}
