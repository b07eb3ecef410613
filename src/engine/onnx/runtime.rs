//! Loading the ONNX Runtime shared library (ort's `load-dynamic`) and creating its environment.

use ort::environment::Environment;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where `make setup` puts the library, relative to the repository root.
pub const DEFAULT_ORT_LIB: &str = ".ort/lib/libonnxruntime.so";

/// The command that installs the library.
pub const SETUP_HINT: &str = "run `make setup` in the repository (it installs the PyPI wheel onnxruntime==1.31.1 \
     and copies its library to .ort/lib/), or point ORT_DYLIB_PATH / --ort-lib at libonnxruntime.so";

/// The library is missing or unusable.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found at {path}: {hint}", hint = SETUP_HINT)]
    Missing { path: PathBuf },
    #[error("ONNX Runtime library at {path} could not be loaded ({reason}): {hint}", hint = SETUP_HINT)]
    Unloadable { path: PathBuf, reason: String },
}

/// ONNX Runtime allows one environment per process: the first one built, and its library.
static ENVIRONMENT: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// Loads the library at `path` and builds the process's ONNX Runtime environment, or returns
/// the one already built from the same library.
pub fn environment(path: &Path) -> Result<Environment, RuntimeError> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if !absolute.is_file() {
        return Err(RuntimeError::Missing { path: absolute });
    }
    let unloadable = |reason: String| RuntimeError::Unloadable {
        path: absolute.clone(),
        reason,
    };
    let mut slot = ENVIRONMENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((loaded, environment)) = slot.as_ref() {
        return if *loaded == absolute {
            Ok(environment.clone())
        } else {
            Err(unloadable(format!(
                "this process already uses ONNX Runtime from {}",
                loaded.display()
            )))
        };
    }
    let environment = ort::init_from(&absolute)
        .map_err(|e| unloadable(e.to_string()))?
        .with_name("mammo-serve")
        .build()
        .map_err(|e| unloadable(e.to_string()))?;
    *slot = Some((absolute, environment.clone()));
    Ok(environment)
}
