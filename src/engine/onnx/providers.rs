//! Execution providers: which hardware runs the model, and the fallback order of `auto`.

use ort::ep::{self, ExecutionProvider};
use ort::session::builder::SessionBuilder;
use std::path::PathBuf;
use std::str::FromStr;

/// Which hardware to run on (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// TensorRT, else CUDA, else CPU: whatever this machine's ONNX Runtime can have.
    Auto,
    /// ONNX Runtime's CPU provider.
    Cpu,
    /// NVIDIA CUDA (onnxruntime-gpu, CUDA 13, cuDNN 9).
    Cuda,
    /// NVIDIA TensorRT 10 with CUDA for the nodes TensorRT does not take.
    Tensorrt,
}

/// Options that shape the GPU providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuOptions {
    /// TensorRT FP16 kernels.
    pub fp16: bool,
    /// Where TensorRT keeps built engines between starts.
    pub trt_cache_dir: PathBuf,
}

/// One concrete provider to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    TensorRt,
    Cuda,
    Cpu,
}

impl Provider {
    /// ONNX Runtime's name for the provider, as reported by `/health`.
    pub fn name(self) -> &'static str {
        match self {
            Provider::TensorRt => ep::TensorRT::NAME,
            Provider::Cuda => ep::CUDA::NAME,
            Provider::Cpu => "CPUExecutionProvider",
        }
    }

    /// The provider library an onnxruntime build needs for this provider.
    fn library(self) -> &'static str {
        match self {
            Provider::TensorRt => "libonnxruntime_providers_tensorrt.so",
            Provider::Cuda => "libonnxruntime_providers_cuda.so",
            Provider::Cpu => "libonnxruntime.so",
        }
    }

    /// Registers this provider on `builder`. An error names what is missing.
    pub fn register(self, builder: &mut SessionBuilder, gpu: &GpuOptions) -> Result<(), String> {
        match self {
            Provider::Cpu => Ok(()),
            Provider::Cuda => register(self, ep::CUDA::default(), builder),
            Provider::TensorRt => {
                let trt = ep::TensorRT::default()
                    .with_fp16(gpu.fp16)
                    .with_engine_cache(true)
                    .with_engine_cache_path(gpu.trt_cache_dir.display())
                    .with_timing_cache(true)
                    .with_timing_cache_path(gpu.trt_cache_dir.display());
                register(self, trt, builder)?;
                // TensorRT hands the nodes it cannot build to the next provider: CUDA.
                register(Provider::Cuda, ep::CUDA::default(), builder)
            }
        }
    }
}

fn register<E: ExecutionProvider>(
    provider: Provider,
    ep: E,
    builder: &mut SessionBuilder,
) -> Result<(), String> {
    let available = E::is_available().map_err(|e| e.to_string())?;
    if !available {
        return Err(format!(
            "{} is not built into the loaded ONNX Runtime library: it needs {} from the \
             onnxruntime-gpu==1.31.1 wheel (with CUDA 13, cuDNN 9{})",
            provider.name(),
            provider.library(),
            if provider == Provider::TensorRt {
                ", TensorRT 10"
            } else {
                ""
            }
        ));
    }
    ep.register(builder)
        .map_err(|e| format!("{} could not be registered: {e}", provider.name()))
}

impl Device {
    /// Every device with its name, as `--device` spells it.
    pub const ALL: [(Device, &'static str); 4] = [
        (Device::Auto, "auto"),
        (Device::Cpu, "cpu"),
        (Device::Cuda, "cuda"),
        (Device::Tensorrt, "tensorrt"),
    ];

    /// The name `--device` gives it.
    pub fn name(self) -> &'static str {
        Device::ALL
            .iter()
            .find(|(d, _)| *d == self)
            .map_or("auto", |(_, name)| name)
    }

    /// Providers to try, best first. Only `auto` has more than one.
    pub fn candidates(self) -> &'static [Provider] {
        match self {
            Device::Auto => &[Provider::TensorRt, Provider::Cuda, Provider::Cpu],
            Device::Cpu => &[Provider::Cpu],
            Device::Cuda => &[Provider::Cuda],
            Device::Tensorrt => &[Provider::TensorRt],
        }
    }
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Device::ALL
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(s.trim()))
            .map(|(d, _)| *d)
            .ok_or_else(|| format!("unknown device {s:?}; expected auto, cpu, cuda or tensorrt"))
    }
}
