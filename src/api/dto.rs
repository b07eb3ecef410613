//! JSON bodies of the public API (serde + utoipa), each made from the domain value it
//! shows with a `From` conversion. Only this module gives the domain a wire format.

use super::error::Problem;
use crate::imaging;
use crate::model::exam;
use crate::model::{Assessment, ClassLabel, Density, Malignancy, Prediction, Status};
use crate::pipeline::{ModelInfo, Reading};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub use crate::model::NOTICE;

/// The answer for one image.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PredictResponse {
    /// Absent when the image was not assessed, unless `include_unassessable=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub density: Option<DensityCall>,
    /// Absent when the image was not assessed, unless `include_unassessable=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malignancy: Option<MalignancyCall>,
    /// Absent when the image was not assessed, unless `include_unassessable=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<ClassCall>,
    pub assessment: AssessmentDto,
    /// For DICOM input: the identifiers to match the result with (never patient attributes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dicom: Option<DicomInfo>,
    pub model: ModelRef,
    pub timing_ms: Timing,
    /// Decision support, not a diagnosis.
    pub notice: String,
}

impl PredictResponse {
    /// Wraps a reading with the model that made it and how long it took. The labels of an
    /// image that was not assessed are left out unless `include_unassessable`, so that a
    /// client reading only labels cannot mistake it for an answer.
    pub fn new(
        reading: Reading,
        model: &ModelInfo,
        timing_ms: Timing,
        include_unassessable: bool,
    ) -> Self {
        let p = &reading.prediction;
        let labelled = include_unassessable || p.assessment.is_assessed();
        PredictResponse {
            density: labelled.then(|| DensityCall {
                label: p.density.code().into(),
                birads: p.density.birads().into(),
                probabilities: DensityProbabilities::from(p.density_probabilities),
                confidence: p.density_confidence(),
            }),
            malignancy: labelled.then(|| MalignancyCall::from(p.malignancy)),
            class: labelled.then(|| ClassCall::from(p)),
            assessment: AssessmentDto::from(&p.assessment),
            dicom: reading.dicom.map(DicomInfo::from),
            model: ModelRef::from(model),
            timing_ms,
            notice: NOTICE.to_string(),
        }
    }
}

/// Query parameters of `/predict` and `/batch`.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadOptions {
    /// Also report density, malignancy and class for images that were not assessed (their
    /// `assessment.status` stays `not_assessable`: the labels are not the model's reading of a
    /// mammogram it knows).
    #[serde(default)]
    pub include_unassessable: bool,
}

/// Whether the model could read the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssessmentStatus {
    /// The image is like the training data; the labels are the model's reading.
    Assessed,
    /// The image lies outside what the model learned: its labels must not be used.
    NotAssessable,
}

impl From<Status> for AssessmentStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Assessed => AssessmentStatus::Assessed,
            Status::NotAssessable => AssessmentStatus::NotAssessable,
        }
    }
}

/// The out-of-distribution check of one image.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = Assessment)]
pub struct AssessmentDto {
    pub status: AssessmentStatus,
    /// The model's out-of-distribution score (higher: less like the training data); null for
    /// a model without a detector.
    pub ood_score: Option<f32>,
    /// Scores above it are not assessed (`mammo.ood_threshold`); null without a detector.
    pub ood_threshold: Option<f32>,
    /// Why the image was not assessed, or why it could not be checked; null otherwise.
    pub reason: Option<String>,
}

impl From<&Assessment> for AssessmentDto {
    fn from(a: &Assessment) -> Self {
        AssessmentDto {
            status: a.status.into(),
            ood_score: a.ood_score,
            ood_threshold: a.ood_threshold,
            reason: a.reason.clone(),
        }
    }
}

/// Breast density: the most probable of the four density marginals.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DensityCall {
    /// `D1`..`D4`.
    #[schema(example = "D3")]
    pub label: String,
    /// BI-RADS breast composition letter `A`..`D` for the density.
    #[schema(example = "C")]
    pub birads: String,
    pub probabilities: DensityProbabilities,
    /// Probability of the chosen density.
    pub confidence: f32,
}

/// P(density = k), each the sum of the benign and malignant class of that density.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DensityProbabilities {
    #[serde(rename = "D1")]
    pub d1: f32,
    #[serde(rename = "D2")]
    pub d2: f32,
    #[serde(rename = "D3")]
    pub d3: f32,
    #[serde(rename = "D4")]
    pub d4: f32,
}

impl From<[f32; 4]> for DensityProbabilities {
    fn from([d1, d2, d3, d4]: [f32; 4]) -> Self {
        DensityProbabilities { d1, d2, d3, d4 }
    }
}

/// Benign or malignant at the model's operating threshold.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MalignancyCall {
    /// `malignant` when `probability >= threshold`, else `benign`.
    #[schema(example = "benign")]
    pub label: String,
    /// Sum of the four malignant class probabilities.
    pub probability: f32,
    /// The model's operating threshold (`mammo.malignancy_threshold`).
    pub threshold: f32,
    /// Probability of the chosen label: `probability` or `1 - probability`.
    pub confidence: f32,
}

impl From<Malignancy> for MalignancyCall {
    fn from(m: Malignancy) -> Self {
        MalignancyCall {
            label: m.call().name().into(),
            probability: m.probability,
            threshold: m.threshold,
            confidence: m.confidence(),
        }
    }
}

/// The most probable of the eight classes.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ClassCall {
    /// `D1B`..`D4M`.
    #[schema(example = "D3B")]
    pub label: String,
    pub probabilities: ClassProbabilities,
    /// Probability of the chosen class.
    pub confidence: f32,
}

impl From<&Prediction> for ClassCall {
    fn from(p: &Prediction) -> Self {
        let [d1b, d1m, d2b, d2m, d3b, d3m, d4b, d4m] = p.class_probabilities;
        ClassCall {
            label: p.class.code().into(),
            probabilities: ClassProbabilities {
                D1B: d1b,
                D1M: d1m,
                D2B: d2b,
                D2M: d2m,
                D3B: d3b,
                D3M: d3m,
                D4B: d4b,
                D4M: d4m,
            },
            confidence: p.class_confidence(),
        }
    }
}

/// Softmax probability of each of the eight classes (they sum to 1).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[allow(non_snake_case)]
pub struct ClassProbabilities {
    pub D1B: f32,
    pub D1M: f32,
    pub D2B: f32,
    pub D2M: f32,
    pub D3B: f32,
    pub D3M: f32,
    pub D4B: f32,
    pub D4M: f32,
}

/// What identifies a DICOM image to the caller; never a patient attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DicomInfo {
    /// SOP Instance UID (0008,0018).
    pub sop_instance_uid: String,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// `L` or `R`: Image Laterality (0020,0062), else Laterality (0020,0060); absent when
    /// neither names one breast.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub laterality: Option<Laterality>,
    /// View Position (0018,5101), e.g. `CC` or `MLO`; absent when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "MLO")]
    pub view_position: Option<String>,
    /// Transfer syntax UID the object arrived in.
    #[schema(example = "1.2.840.10008.1.2.5")]
    pub transfer_syntax: String,
}

impl From<imaging::DicomInfo> for DicomInfo {
    fn from(d: imaging::DicomInfo) -> Self {
        DicomInfo {
            sop_instance_uid: d.sop_instance_uid,
            study_instance_uid: d.study_instance_uid,
            series_instance_uid: d.series_instance_uid,
            laterality: d.laterality.map(Laterality::from),
            view_position: d.view_position.map(|v| v.code().to_string()),
            transfer_syntax: d.transfer_syntax,
        }
    }
}

/// Which breast an image shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
pub enum Laterality {
    #[serde(rename = "L")]
    Left,
    #[serde(rename = "R")]
    Right,
}

impl From<imaging::Laterality> for Laterality {
    fn from(l: imaging::Laterality) -> Self {
        match l {
            imaging::Laterality::Left => Laterality::Left,
            imaging::Laterality::Right => Laterality::Right,
        }
    }
}

/// One study's summary across its views.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ExamSummary {
    pub study_instance_uid: String,
    /// `not_assessable` when no view of the study was assessed.
    pub status: AssessmentStatus,
    /// Left, right, then views that name neither breast.
    pub breasts: Vec<BreastSummary>,
    /// The denser assessed breast's density; absent when none was assessed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub density: Option<ExamDensity>,
    /// The highest malignancy probability of any assessed view; absent when none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malignancy: Option<ExamMalignancy>,
    /// Views of the study that were not assessed (left out of every number).
    pub not_assessable_views: usize,
}

impl From<exam::ExamSummary> for ExamSummary {
    fn from(e: exam::ExamSummary) -> Self {
        ExamSummary {
            status: e.status().into(),
            study_instance_uid: e.study_instance_uid,
            breasts: e.breasts.into_iter().map(BreastSummary::from).collect(),
            density: e.density.map(ExamDensity::from),
            malignancy: e.malignancy.map(ExamMalignancy::from),
            not_assessable_views: e.not_assessable_views,
        }
    }
}

/// One breast's summary across its views.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BreastSummary {
    /// `L`, `R`, or null for views without a laterality.
    pub laterality: Option<Laterality>,
    /// `not_assessable` when none of its views was assessed.
    pub status: AssessmentStatus,
    /// The batch item ids of its assessed views, in request order.
    pub views: Vec<ViewRef>,
    /// Its views that were not assessed, in request order.
    pub not_assessable: Vec<ViewRef>,
    /// Absent when no view of the breast was assessed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub density: Option<ExamDensity>,
    /// Absent when no view of the breast was assessed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malignancy: Option<ExamMalignancy>,
}

impl From<exam::BreastSummary> for BreastSummary {
    fn from(b: exam::BreastSummary) -> Self {
        let refs = |views: Vec<exam::ViewRef>| views.into_iter().map(ViewRef::from).collect();
        BreastSummary {
            laterality: b.laterality.map(Laterality::from),
            status: b.status().into(),
            views: refs(b.views),
            not_assessable: refs(b.not_assessable),
            density: b.density.map(ExamDensity::from),
            malignancy: b.malignancy.map(ExamMalignancy::from),
        }
    }
}

impl From<exam::ViewRef> for ViewRef {
    fn from(v: exam::ViewRef) -> Self {
        ViewRef {
            id: v.id,
            sop_instance_uid: v.sop_instance_uid,
            view_position: v.view_position.map(|p| p.code().to_string()),
        }
    }
}

/// A view that went into a summary.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ViewRef {
    /// The batch item's id.
    pub id: String,
    pub sop_instance_uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_position: Option<String>,
}

/// Density across views.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ExamDensity {
    /// `D1`..`D4`.
    pub label: String,
    /// BI-RADS composition `A`..`D`.
    pub birads: String,
    /// Density probabilities averaged over the views (for an exam: the denser breast's).
    pub probabilities: DensityProbabilities,
}

impl From<exam::ExamDensity> for ExamDensity {
    fn from(d: exam::ExamDensity) -> Self {
        let density: Density = d.density;
        ExamDensity {
            label: density.code().into(),
            birads: density.birads().into(),
            probabilities: d.probabilities.into(),
        }
    }
}

/// Malignancy across views: the highest view.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ExamMalignancy {
    /// `malignant` when `probability >= threshold`.
    pub label: String,
    pub probability: f32,
    pub threshold: f32,
    /// The id of the view with the highest probability.
    pub from: String,
}

impl From<exam::ExamMalignancy> for ExamMalignancy {
    fn from(m: exam::ExamMalignancy) -> Self {
        ExamMalignancy {
            label: m.malignancy.call().name().into(),
            probability: m.malignancy.probability,
            threshold: m.malignancy.threshold,
            from: m.from,
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
    /// `fp32`, or `int8` for the quantized model (`mammo.precision`).
    #[schema(example = "fp32")]
    pub precision: String,
}

impl From<&ModelInfo> for ModelRef {
    fn from(m: &ModelInfo) -> Self {
        ModelRef {
            name: m.name.clone(),
            version: m.metadata.version.clone(),
            sha256: m.sha256.clone(),
            precision: m.metadata.precision.name().into(),
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
    /// `fp32`, or `int8` for the quantized model (`mammo.precision`).
    pub precision: String,
    /// `mammo.arch`.
    pub arch: String,
    /// `mammo.trained_on`.
    pub trained_on: String,
    /// Class of each output, in the model's order.
    pub labels: Vec<String>,
    pub input: ModelInput,
    pub malignancy_threshold: f32,
    /// `mammo.temperature`: logits are divided by it before the softmax (calibration).
    pub temperature: f32,
    /// `mammo.views`: the views of each image (the image, its flips, its rotations) whose
    /// logits the model averages; the engine runs the network this many times per image.
    #[schema(example = 2)]
    pub views: u32,
    /// The out-of-distribution detector; null for a model without one (every image is then
    /// answered `assessed`, unchecked).
    pub ood: Option<OodDescription>,
    /// ONNX Runtime execution provider in use.
    pub execution_provider: String,
    /// TensorRT FP16 on.
    pub fp16: bool,
}

/// How the model scores the distance of an image from its training data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OodDescription {
    /// `mammo.ood_method`, e.g. `maha_early` (Mahalanobis distances of early-layer statistics).
    pub method: String,
    /// Scores above it are answered `not_assessable`.
    pub threshold: f32,
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
            precision: m.metadata.precision.name().into(),
            arch: m.metadata.arch.clone(),
            trained_on: m.metadata.trained_on.clone(),
            labels: m
                .metadata
                .labels
                .iter()
                .map(|l: &ClassLabel| l.code().to_string())
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
            temperature: m.metadata.temperature,
            views: m.metadata.views,
            ood: m.metadata.ood.as_ref().map(|o| OodDescription {
                method: o.method.clone(),
                threshold: o.threshold,
            }),
            execution_provider: m.provider.clone(),
            fp16: m.fp16,
        }
    }
}

/// A multipart `file` upload (documentation only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PredictUpload {
    /// The JPEG, PNG or DICOM file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// A multipart batch upload (documentation only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct BatchUpload {
    /// One part per image, all named `files`; each result's `id` is the part's file name.
    #[schema(value_type = Vec<String>, format = Binary)]
    files: Vec<Vec<u8>>,
}
