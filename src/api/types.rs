//! JSON bodies of the public API (serde + utoipa).

use super::error::Problem;
use crate::engine::ModelInfo;
use crate::imaging::DicomInfo;
use crate::model::exam::ExamSummary;
use crate::model::postprocess::{ClassCall, DensityCall, MalignancyCall, Prediction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Carried by every prediction.
pub const NOTICE: &str = "Decision support only, not a diagnosis: this output is for review by a qualified radiologist. \
     The model has not been validated on full-field clinical studies and is not a medical device.";

/// The answer for one image.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PredictResponse {
    pub density: DensityCall,
    pub malignancy: MalignancyCall,
    pub class: ClassCall,
    /// For DICOM input: the identifiers to match the result with (never patient attributes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dicom: Option<DicomInfo>,
    pub model: ModelRef,
    pub timing_ms: Timing,
    /// Decision support, not a diagnosis.
    pub notice: String,
}

impl PredictResponse {
    /// Wraps a prediction with the image's DICOM identifiers, the model that made it and how
    /// long it took.
    pub fn new(
        prediction: Prediction,
        dicom: Option<DicomInfo>,
        model: &ModelInfo,
        timing_ms: Timing,
    ) -> Self {
        PredictResponse {
            density: prediction.density,
            malignancy: prediction.malignancy,
            class: prediction.class,
            dicom,
            model: ModelRef::from(model),
            timing_ms,
            notice: NOTICE.to_string(),
        }
    }
}

/// Which model answered.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelRef {
    #[schema(example = "mammo")]
    pub name: String,
    #[schema(example = "1.0.0")]
    pub version: String,
    /// Hex SHA-256 of the ONNX file.
    pub sha256: String,
}

impl From<&ModelInfo> for ModelRef {
    fn from(m: &ModelInfo) -> Self {
        ModelRef {
            name: m.name.clone(),
            version: m.metadata.version.clone(),
            sha256: m.sha256.clone(),
        }
    }
}

/// Where the time went, in milliseconds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Timing {
    /// Waiting for the engine.
    pub queue: f64,
    /// Running the model (for a batch, the whole engine job).
    pub inference: f64,
    /// From the handler's start to the response: body, decoding, preprocessing, queue, inference.
    pub total: f64,
}

/// `POST /batch` JSON body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct BatchRequest {
    pub items: Vec<BatchRequestItem>,
}

/// One image of a JSON batch.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct BatchRequestItem {
    /// Caller's identifier, echoed in the result.
    #[schema(example = "left-cc")]
    pub id: String,
    /// The JPEG, PNG or DICOM file, base64 (standard alphabet, padding optional).
    pub image_base64: String,
}

/// `POST /batch` answer: one result per item, in request order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchResult>,
    /// When items are DICOM: per study and per breast, the highest malignancy probability and
    /// the density across that breast's views (rules in the README). Absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exams: Vec<ExamSummary>,
    pub model: ModelRef,
    pub timing_ms: Timing,
    /// Decision support, not a diagnosis.
    pub notice: String,
}

/// The outcome for one batch item: a prediction, or the problem with that item alone.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResult {
    /// The item's `id` (JSON) or the part's file name (multipart).
    pub id: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<PredictResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// Liveness and readiness.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ready` once the model is loaded and warmed up, else `loading`; `alive` on `/health/live`.
    #[schema(example = "ready")]
    pub status: String,
    /// ONNX Runtime execution provider in use, once loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "CPUExecutionProvider")]
    pub execution_provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
}

/// `GET /v1/model`: what the loaded model is and how it reads images.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelDescription {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub size_bytes: u64,
    /// `mammo.arch`.
    pub arch: String,
    /// `mammo.trained_on`.
    pub trained_on: String,
    /// Class of each output, in the model's order.
    pub labels: Vec<String>,
    pub input: ModelInput,
    pub malignancy_threshold: f32,
    /// ONNX Runtime execution provider in use.
    pub execution_provider: String,
    /// TensorRT FP16 on.
    pub fp16: bool,
}

/// The model's input and the preprocessing that produces it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelInput {
    pub height: u32,
    pub width: u32,
    pub channels: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Resampling filter: bilinear, bicubic or nearest.
    pub resize: String,
    /// Full-field steps before the resize (`mammo.preprocess`), in order.
    pub steps: Vec<String>,
}

impl From<&ModelInfo> for ModelDescription {
    fn from(m: &ModelInfo) -> Self {
        let p = &m.metadata.preprocessing;
        ModelDescription {
            name: m.name.clone(),
            version: m.metadata.version.clone(),
            sha256: m.sha256.clone(),
            size_bytes: m.size_bytes,
            arch: m.metadata.arch.clone(),
            trained_on: m.metadata.trained_on.clone(),
            labels: m
                .metadata
                .labels
                .iter()
                .map(|l| l.code().to_string())
                .collect(),
            input: ModelInput {
                height: p.height,
                width: p.width,
                channels: 3,
                mean: p.mean,
                std: p.std,
                resize: p.resize.name().into(),
                steps: p.steps.names().into_iter().map(String::from).collect(),
            },
            malignancy_threshold: m.metadata.malignancy_threshold,
            execution_provider: m.provider.name().into(),
            fp16: m.fp16,
        }
    }
}
