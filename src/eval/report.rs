//! From outcomes to what evaluators read: per-image rows, the metrics, `predictions.csv`.

use super::audit::{ClassCount, Duplicates, Overlap, Unreadable};
use super::dataset::{Item, Layout};
use super::inference::Outcome;
use super::metrics::{self, Confusion, ReliabilityBin};
use crate::model::postprocess::argmax;
use crate::model::{ClassLabel, Prediction};
use crate::pipeline::ModelInfo;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Bootstrap resamples for the AUC interval.
const BOOTSTRAP_ROUNDS: usize = 2000;
/// Bins of the reliability of P(malignant) (and of its ECE).
const CALIBRATION_BINS: usize = 15;

/// One evaluated image.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub path: PathBuf,
    pub truth: Option<ClassLabel>,
    pub prediction: Prediction,
    pub family: Option<String>,
}

impl Row {
    /// Class probabilities in canonical order (D1B..D4M).
    fn probabilities(&self) -> [f64; 8] {
        self.prediction.class_probabilities.map(f64::from)
    }
}

/// Rows for the images that decoded, and (name, error) for those that did not.
pub fn rows(
    items: &[Item],
    outcomes: &[Outcome],
    families: Option<&HashMap<String, String>>,
) -> (Vec<Row>, Vec<(String, String)>) {
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (item, outcome) in items.iter().zip(outcomes) {
        match outcome {
            Ok(reading) => rows.push(Row {
                name: item.name.clone(),
                path: item.path.clone(),
                truth: item.label,
                prediction: reading.prediction.clone(),
                family: families.and_then(|f| f.get(&item.name).cloned()),
            }),
            Err(e) => failed.push((item.name.clone(), e.clone())),
        }
    }
    (rows, failed)
}

/// The model an evaluation ran.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSection {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// `fp32` or `int8`.
    pub precision: &'static str,
    pub threshold: f32,
}

impl ModelSection {
    pub fn of(info: &ModelInfo) -> ModelSection {
        ModelSection {
            path: info.path.clone(),
            name: info.name.clone(),
            version: info.metadata.version.clone(),
            sha256: info.sha256.clone(),
            precision: info.metadata.precision.name(),
            threshold: info.metadata.malignancy_threshold,
        }
    }
}

/// Audit findings, before any metric.
#[derive(Debug, Clone, Serialize)]
pub struct AuditSection {
    pub class_counts: Vec<ClassCount>,
    pub duplicates: Duplicates,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    pub unreadable: Vec<Unreadable>,
}

/// Everything `metrics.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub data: PathBuf,
    pub layout: Layout,
    pub model: ModelSection,
    /// The split file and fold, when one was given.
    pub split: Option<String>,
    pub images_listed: usize,
    pub images_evaluated: usize,
    pub unreadable: Vec<Unreadable>,
    pub images_per_second: f64,
    pub audit: AuditSection,
    pub assessment: AssessmentCounts,
    /// Every labelled image, assessed or not (the model's reading as `include_unassessable`
    /// gives it).
    pub metrics: Metrics,
    /// The labelled images the server would answer with labels; `None` when none was
    /// assessed or none was declined (then `metrics` says it all).
    pub metrics_assessed_only: Option<Metrics>,
}

/// How many evaluated images the model assessed and declined.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AssessmentCounts {
    pub assessed: usize,
    pub not_assessable: usize,
    /// Share of evaluated images not assessed.
    pub not_assessable_share: f64,
}

impl AssessmentCounts {
    pub fn of(rows: &[Row]) -> Self {
        let assessed = rows
            .iter()
            .filter(|r| r.prediction.assessment.is_assessed())
            .count();
        let not_assessable = rows.len() - assessed;
        AssessmentCounts {
            assessed,
            not_assessable,
            not_assessable_share: not_assessable as f64 / rows.len().max(1) as f64,
        }
    }
}

/// The metrics of the assessed rows alone, when that is a strict, non-empty part of them.
pub fn metrics_assessed_only(rows: &[Row], threshold: f64) -> Option<Metrics> {
    let assessed: Vec<Row> = rows
        .iter()
        .filter(|r| r.prediction.assessment.is_assessed() && r.truth.is_some())
        .cloned()
        .collect();
    let labelled = rows.iter().filter(|r| r.truth.is_some()).count();
    (!assessed.is_empty() && assessed.len() < labelled).then(|| metrics(&assessed, threshold))
}

/// Per-class scores.
#[derive(Debug, Clone, Serialize)]
pub struct PerClass {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// A confusion matrix with its labels (rows: truth, columns: prediction).
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    pub labels: Vec<String>,
    pub counts: Vec<Vec<u64>>,
}

/// Density (4 classes).
#[derive(Debug, Clone, Serialize)]
pub struct DensityMetrics {
    pub accuracy: f64,
    pub kappa_linear: f64,
    pub confusion: Matrix,
}

/// Malignancy (benign vs malignant).
#[derive(Debug, Clone, Serialize)]
pub struct MalignancyMetrics {
    pub auc: Option<f64>,
    pub auc_ci95: Option<(f64, f64)>,
    /// What the bootstrap resampled: `families` when families were given, else `images`.
    pub ci_resampling: String,
    pub threshold: f64,
    pub sensitivity: f64,
    pub specificity: f64,
    pub sensitivity_at_90_specificity: f64,
    pub confusion: Matrix,
    /// ROC points (false-positive rate, true-positive rate, threshold).
    pub roc: Vec<(f64, f64, f64)>,
    /// Expected calibration error of P(malignant), the number the API thresholds
    /// (`CALIBRATION_BINS` equal-width bins).
    pub binary_ece: f64,
    /// Mean squared difference between P(malignant) and the outcome.
    pub brier: f64,
    /// Reliability of P(malignant): share malignant against mean probability per bin.
    pub reliability: Vec<ReliabilityBin>,
    pub average_precision: Option<f64>,
    /// Precision–recall points (recall, precision, threshold).
    pub precision_recall: Vec<(f64, f64, f64)>,
}

/// Every metric of a labelled evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub images: usize,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub per_class: Vec<PerClass>,
    pub confusion: Matrix,
    pub density: DensityMetrics,
    pub malignancy: MalignancyMetrics,
    pub expected_calibration_error: f64,
    pub reliability: Vec<ReliabilityBin>,
}

/// Metrics over labelled rows (rows without a label are ignored).
pub fn metrics(rows: &[Row], threshold: f64) -> Metrics {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.truth.is_some()).collect();
    let truth: Vec<usize> = rows
        .iter()
        .map(|r| r.truth.expect("filtered").index())
        .collect();
    let probabilities: Vec<[f64; 8]> = rows.iter().map(|r| r.probabilities()).collect();
    let predicted: Vec<usize> = probabilities.iter().map(|p| argmax(p)).collect();
    let classes = Confusion::new(8, &truth, &predicted);
    let confidence: Vec<f64> = probabilities
        .iter()
        .zip(&predicted)
        .map(|(p, &c)| p[c])
        .collect();
    let correct: Vec<bool> = truth.iter().zip(&predicted).map(|(t, p)| t == p).collect();
    Metrics {
        images: rows.len(),
        accuracy: classes.accuracy(),
        balanced_accuracy: classes.balanced_accuracy(),
        per_class: ClassLabel::ALL
            .iter()
            .map(|l| {
                let s = classes.class(l.index());
                PerClass {
                    label: l.code().into(),
                    precision: s.precision,
                    recall: s.recall,
                    f1: s.f1,
                    support: s.support,
                }
            })
            .collect(),
        confusion: Matrix {
            labels: ClassLabel::ALL
                .iter()
                .map(|l| l.code().to_string())
                .collect(),
            counts: classes.counts.clone(),
        },
        density: density_metrics(&truth, &probabilities),
        malignancy: malignancy_metrics(&rows, &truth, &probabilities, threshold),
        expected_calibration_error: metrics::expected_calibration_error(&confidence, &correct, 10),
        reliability: metrics::reliability(&confidence, &correct, 10),
    }
}

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Density: the most probable of the four marginals against the true density.
fn density_metrics(truth: &[usize], probabilities: &[[f64; 8]]) -> DensityMetrics {
    let density_truth: Vec<usize> = truth.iter().map(|t| t / 2).collect();
    let density_pred: Vec<usize> = probabilities
        .iter()
        .map(|p| argmax(&[0, 1, 2, 3].map(|d| p[2 * d] + p[2 * d + 1])))
        .collect();
    let density = Confusion::new(4, &density_truth, &density_pred);
    DensityMetrics {
        accuracy: density.accuracy(),
        kappa_linear: density.kappa_linear(),
        confusion: Matrix {
            labels: labels(&["D1", "D2", "D3", "D4"]),
            counts: density.counts,
        },
    }
}

/// Malignancy: P(malignant) (the sum of the malignant classes) as a score, and its call at
/// `threshold`.
fn malignancy_metrics(
    rows: &[&Row],
    truth: &[usize],
    probabilities: &[[f64; 8]],
    threshold: f64,
) -> MalignancyMetrics {
    let p: Vec<f64> = probabilities
        .iter()
        .map(|p| (0..4).map(|d| p[2 * d + 1]).sum())
        .collect();
    let positive: Vec<bool> = truth.iter().map(|t| t % 2 == 1).collect();
    let (sensitivity, specificity) = metrics::sensitivity_specificity(&p, &positive, threshold);
    let called: Vec<usize> = p.iter().map(|&v| usize::from(v >= threshold)).collect();
    let truth_m: Vec<usize> = positive.iter().map(|&v| usize::from(v)).collect();
    let (groups, resampling) = group_ids(rows);
    MalignancyMetrics {
        auc: metrics::roc_auc(&p, &positive),
        auc_ci95: metrics::bootstrap_auc(&p, &positive, &groups, BOOTSTRAP_ROUNDS, 0),
        ci_resampling: resampling.into(),
        threshold,
        sensitivity,
        specificity,
        sensitivity_at_90_specificity: metrics::sensitivity_at_specificity(&p, &positive, 0.9),
        confusion: Matrix {
            labels: labels(&["benign", "malignant"]),
            counts: Confusion::new(2, &truth_m, &called).counts,
        },
        roc: metrics::roc_curve(&p, &positive)
            .into_iter()
            .map(|(f, t, th)| (f, t, if th.is_finite() { th } else { 1.0 }))
            .collect(),
        binary_ece: metrics::expected_calibration_error(&p, &positive, CALIBRATION_BINS),
        brier: metrics::brier(&p, &positive),
        reliability: metrics::reliability(&p, &positive, CALIBRATION_BINS),
        average_precision: metrics::average_precision(&p, &positive),
        precision_recall: metrics::precision_recall_curve(&p, &positive),
    }
}

/// Bootstrap groups: families when every row has one, else one group per image.
fn group_ids(rows: &[&Row]) -> (Vec<usize>, &'static str) {
    if rows.iter().all(|r| r.family.is_some()) {
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let groups = rows.iter().map(|r| {
            let next = ids.len();
            *ids.entry(r.family.as_deref().expect("checked"))
                .or_insert(next)
        });
        (groups.collect(), "families")
    } else {
        ((0..rows.len()).collect(), "images")
    }
}

/// Writes one line per image: name, truth (if labelled), the predicted class, density,
/// malignancy probability and label, confidence, and the eight class probabilities.
pub fn write_predictions(path: &Path, rows: &[Row]) -> Result<(), csv::Error> {
    let mut out = csv::Writer::from_path(path)?;
    let mut header = vec![
        "filename",
        "label",
        "predicted",
        "density",
        "birads",
        "malignancy_probability",
        "malignancy",
        "confidence",
        "assessment",
        "ood_score",
    ];
    let probability_columns: Vec<String> = ClassLabel::ALL
        .iter()
        .map(|l| format!("p_{}", l.code()))
        .collect();
    header.extend(probability_columns.iter().map(String::as_str));
    out.write_record(&header)?;
    for r in rows {
        let p = &r.prediction;
        let mut record = vec![
            r.name.clone(),
            r.truth.map(|l| l.code().to_string()).unwrap_or_default(),
            p.class.code().to_string(),
            p.density.code().to_string(),
            p.density.birads().to_string(),
            format!("{:.6}", p.malignancy.probability),
            p.malignancy.call().name().to_string(),
            format!("{:.6}", p.class_confidence()),
            p.assessment.status.name().to_string(),
            p.assessment
                .ood_score
                .map_or(String::new(), |s| format!("{s:.6}")),
        ];
        record.extend(r.probabilities().iter().map(|v| format!("{v:.6}")));
        out.write_record(&record)?;
    }
    out.flush()?;
    Ok(())
}
