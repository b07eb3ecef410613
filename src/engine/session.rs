//! Building the ort session: optimisation level, threads, provider fallback, I/O checks, runs.

use super::providers::{GpuOptions, Provider};
use super::{EngineConfig, EngineError};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

/// Number of model outputs (the eight classes).
pub const CLASSES: usize = 8;

/// A committed session and what was learnt while building it.
pub struct OpenSession {
    pub session: Session,
    pub provider: Provider,
    pub input_name: String,
}

/// Builds a session on the first provider of `config.device` that works. For `auto`, a
/// provider that fails (missing library, no GPU) is logged and the next one is tried; for an
/// explicit device, the failure is the error.
pub fn open(env: &Environment, config: &EngineConfig) -> Result<OpenSession, EngineError> {
    let candidates = config.device.candidates();
    let mut failures = Vec::new();
    for &provider in candidates {
        match build(env, config, provider, &config.gpu) {
            Ok(session) => {
                let input_name = check_io(&session).map_err(EngineError::Startup)?;
                return Ok(OpenSession {
                    session,
                    provider,
                    input_name,
                });
            }
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
    config: &EngineConfig,
    provider: Provider,
    gpu: &GpuOptions,
) -> Result<Session, String> {
    let mut builder = Session::builder(env)
        .and_then(|b| {
            b.with_optimization_level(GraphOptimizationLevel::All)
                .map_err(Into::into)
        })
        .and_then(|b| {
            b.with_intra_threads(config.intra_threads)
                .map_err(Into::into)
        })
        .and_then(|b| {
            b.with_intra_op_spinning(config.intra_op_spinning)
                .map_err(Into::into)
        })
        .map_err(|e| format!("could not configure the ONNX Runtime session: {e}"))?;
    provider.register(&mut builder, gpu)?;
    builder.commit_from_file(&config.model).map_err(|e| {
        format!(
            "could not load model {} with {}: {e}",
            config.model.display(),
            provider.name()
        )
    })
}

/// Checks the model contract's I/O: one float input `[N,3,H,W]`, a float output `[N,8]`.
/// Returns the input's name.
fn check_io(session: &Session) -> Result<String, String> {
    let [input] = session.inputs() else {
        return Err(format!(
            "the model must have exactly one input, it has {}",
            session.inputs().len()
        ));
    };
    let Some(output) = session.outputs().first() else {
        return Err("the model has no output".to_string());
    };
    let tensor = |dtype: &ValueType| match dtype {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            ..
        } => Some(shape.to_vec()),
        _ => None,
    };
    let in_shape = tensor(input.dtype()).filter(|s| s.len() == 4 && (s[1] == 3 || s[1] < 0));
    let out_shape =
        tensor(output.dtype()).filter(|s| s.len() == 2 && (s[1] == CLASSES as i64 || s[1] < 0));
    match (in_shape, out_shape) {
        (Some(_), Some(_)) => Ok(input.name().to_string()),
        (None, _) => Err(format!(
            "model input `{}` must be float32 [N,3,H,W], it is {:?}",
            input.name(),
            input.dtype()
        )),
        (_, None) => Err(format!(
            "model output `{}` must be float32 [N,8], it is {:?}",
            output.name(),
            output.dtype()
        )),
    }
}

/// Runs `n` images (concatenated CHW tensors of `height`×`width`) through the session in
/// one call and returns each image's logits.
pub fn run(
    session: &mut Session,
    input_name: &str,
    input: &[f32],
    n: usize,
    height: u32,
    width: u32,
) -> Result<Vec<[f32; CLASSES]>, EngineError> {
    let failed = |e: ort::Error| EngineError::Inference(e.to_string());
    let shape = [n, 3, height as usize, width as usize];
    let tensor = TensorRef::from_array_view((shape, input)).map_err(failed)?;
    let outputs = session
        .run(ort::inputs![input_name => tensor])
        .map_err(failed)?;
    let (out_shape, logits) = outputs[0].try_extract_tensor::<f32>().map_err(failed)?;
    if out_shape.len() != 2 || out_shape[0] as usize != n || out_shape[1] as usize != CLASSES {
        return Err(EngineError::Inference(format!(
            "the model returned shape {out_shape:?} for a batch of {n}; expected [{n}, 8]"
        )));
    }
    if let Some(bad) = logits.iter().find(|v| !v.is_finite()) {
        return Err(EngineError::Inference(format!(
            "the model returned a non-finite logit ({bad})"
        )));
    }
    Ok(logits
        .chunks_exact(CLASSES)
        .map(|c| c.try_into().expect("chunks_exact yields CLASSES values"))
        .collect())
}
