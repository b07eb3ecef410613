//! From outcomes to what evaluators read: per-image rows, the metrics with their bootstrap
//! intervals, subgroup tables, `predictions.csv`.

use super::audit::{ClassCount, Duplicates, Overlap, Unreadable};
use super::dataset::{Attributes, Item, Layout, Truth};
use super::inference::Outcome;
use super::metrics::{self, pick, Confusion, ReliabilityBin};
use crate::model::{ClassLabel, Prediction};
use crate::pipeline::ModelInfo;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Bootstrap resamples for every interval.
const BOOTSTRAP_ROUNDS: usize = 2000;
/// Bins of the reliability of P(malignant) (and of its ECE).
const CALIBRATION_BINS: usize = 15;
/// What a subgroup table says for an image that does not have the attribute.
const NOT_GIVEN: &str = "not given";

/// One evaluated image.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub path: PathBuf,
    pub truth: Truth,
    pub prediction: Prediction,
    /// The unit intervals resample: the manifest's patient, else the image's family.
    pub group: Option<String>,
    pub attributes: Attributes,
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
            Ok(reading) => {
                let attributes = Attributes::of(item, reading.dicom.as_ref());
                rows.push(Row {
                    name: item.name.clone(),
                    path: item.path.clone(),
                    truth: item.truth,
                    prediction: reading.prediction.clone(),
                    group: attributes
                        .patient
                        .clone()
                        .or_else(|| families.and_then(|f| f.get(&item.name).cloned())),
                    attributes,
                })
            }
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
    /// The headline numbers per view, laterality, manufacturer and true density.
    pub subgroups: Vec<SubgroupTable>,
}

/// How many evaluated images the model assessed and declined.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AssessmentCounts {
    pub assessed: usize,
    pub not_assessable: usize,
    /// Share of evaluated images not assessed, with its interval.
    pub not_assessable_share: f64,
    pub not_assessable_share_ci95: Option<(f64, f64)>,
}

impl AssessmentCounts {
    pub fn of(rows: &[Row]) -> Self {
        let declined: Vec<bool> = rows
            .iter()
            .map(|r| !r.prediction.assessment.is_assessed())
            .collect();
        let not_assessable = declined.iter().filter(|&&d| d).count();
        let (groups, _) = group_ids(rows);
        AssessmentCounts {
            assessed: rows.len() - not_assessable,
            not_assessable,
            not_assessable_share: share(&declined, &(0..rows.len()).collect::<Vec<_>>())
                .unwrap_or(0.0),
            not_assessable_share_ci95: interval(&groups, |idx| share(&declined, idx)),
        }
    }
}

/// The share of `flags` set among `rows`; `None` for no rows.
fn share(flags: &[bool], rows: &[usize]) -> Option<f64> {
    (!rows.is_empty())
        .then(|| rows.iter().filter(|&&i| flags[i]).count() as f64 / rows.len() as f64)
}

/// The metrics of the assessed rows alone, when that is a strict, non-empty part of them.
pub fn metrics_assessed_only(rows: &[Row], threshold: f64) -> Option<Metrics> {
    let assessed: Vec<Row> = rows
        .iter()
        .filter(|r| r.prediction.assessment.is_assessed() && r.truth.is_labelled())
        .cloned()
        .collect();
    let labelled = rows.iter().filter(|r| r.truth.is_labelled()).count();
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

/// What the intervals resampled.
#[derive(Debug, Clone, Serialize)]
pub struct Resampling {
    /// `patients` (a site's manifest), `families` (a families or split file) or `images`.
    pub unit: &'static str,
    pub groups: usize,
    pub rounds: usize,
}

/// The eight classes, on the images that have both labels.
#[derive(Debug, Clone, Serialize)]
pub struct ClassMetrics {
    pub images: usize,
    pub accuracy: f64,
    pub accuracy_ci95: Option<(f64, f64)>,
    pub balanced_accuracy: f64,
    pub balanced_accuracy_ci95: Option<(f64, f64)>,
    pub per_class: Vec<PerClass>,
    pub confusion: Matrix,
    /// Of the top class's probability (10 bins).
    pub expected_calibration_error: f64,
    pub expected_calibration_error_ci95: Option<(f64, f64)>,
    pub reliability: Vec<ReliabilityBin>,
}

/// Density (4 classes), on the images with a density label.
#[derive(Debug, Clone, Serialize)]
pub struct DensityMetrics {
    pub images: usize,
    pub accuracy: f64,
    pub accuracy_ci95: Option<(f64, f64)>,
    pub kappa_linear: f64,
    pub kappa_linear_ci95: Option<(f64, f64)>,
    pub confusion: Matrix,
}

/// Malignancy (benign vs malignant), on the images with a malignancy label.
#[derive(Debug, Clone, Serialize)]
pub struct MalignancyMetrics {
    pub images: usize,
    pub auc: Option<f64>,
    pub auc_ci95: Option<(f64, f64)>,
    pub threshold: f64,
    pub sensitivity: f64,
    pub sensitivity_ci95: Option<(f64, f64)>,
    pub specificity: f64,
    pub specificity_ci95: Option<(f64, f64)>,
    pub sensitivity_at_90_specificity: f64,
    pub sensitivity_at_90_specificity_ci95: Option<(f64, f64)>,
    pub confusion: Matrix,
    /// ROC points (false-positive rate, true-positive rate, threshold).
    pub roc: Vec<(f64, f64, f64)>,
    /// Expected calibration error of P(malignant), the number the API thresholds
    /// (`CALIBRATION_BINS` equal-width bins).
    pub binary_ece: f64,
    pub binary_ece_ci95: Option<(f64, f64)>,
    /// Mean squared difference between P(malignant) and the outcome.
    pub brier: f64,
    pub brier_ci95: Option<(f64, f64)>,
    /// Reliability of P(malignant): share malignant against mean probability per bin.
    pub reliability: Vec<ReliabilityBin>,
    pub average_precision: Option<f64>,
    pub average_precision_ci95: Option<(f64, f64)>,
    /// Precision–recall points (recall, precision, threshold).
    pub precision_recall: Vec<(f64, f64, f64)>,
}

/// Every metric of a labelled evaluation; each part on the images that have its label, with
/// 95% intervals from resampling patients (or families, or images).
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// Images with at least one label.
    pub images: usize,
    pub resampling: Resampling,
    pub classes: Option<ClassMetrics>,
    pub density: Option<DensityMetrics>,
    pub malignancy: Option<MalignancyMetrics>,
}

/// Metrics over the labelled rows (rows without a label are ignored).
pub fn metrics(rows: &[Row], threshold: f64) -> Metrics {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.truth.is_labelled()).collect();
    let (groups, unit) = group_ids(&rows);
    let with = |keep: fn(&Truth) -> bool| -> Vec<&Row> {
        rows.iter().copied().filter(|r| keep(&r.truth)).collect()
    };
    Metrics {
        images: rows.len(),
        resampling: Resampling {
            unit,
            groups: groups
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            rounds: BOOTSTRAP_ROUNDS,
        },
        classes: class_metrics(&with(|t| t.class().is_some())),
        density: density_metrics(&with(|t| t.density.is_some())),
        malignancy: malignancy_metrics(&with(|t| t.malignant.is_some()), threshold),
    }
}

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A number with its 95% interval, as reports print it: `0.812 [0.732–0.884]`.
pub fn with_interval(value: f64, interval: Option<(f64, f64)>) -> String {
    interval.map_or(format!("{value:.3}"), |(lo, hi)| {
        format!("{value:.3} [{lo:.3}–{hi:.3}]")
    })
}

/// The 95% interval of `statistic` over resamples of `groups`.
fn interval(groups: &[usize], statistic: impl Fn(&[usize]) -> Option<f64>) -> Option<(f64, f64)> {
    metrics::bootstrap_interval(groups, BOOTSTRAP_ROUNDS, 0, statistic)
}

fn class_metrics(rows: &[&Row]) -> Option<ClassMetrics> {
    if rows.is_empty() {
        return None;
    }
    let (groups, _) = group_ids(rows);
    let truth: Vec<usize> = rows
        .iter()
        .filter_map(|r| r.truth.class().map(ClassLabel::index))
        .collect();
    let probabilities: Vec<[f64; 8]> = rows.iter().map(|r| r.probabilities()).collect();
    let predicted: Vec<usize> = rows.iter().map(|r| r.prediction.class.index()).collect();
    let confusion_of =
        |idx: &[usize]| Confusion::new(8, &pick(&truth, idx), &pick(&predicted, idx));
    let classes = confusion_of(&(0..rows.len()).collect::<Vec<_>>());
    let confidence: Vec<f64> = probabilities
        .iter()
        .zip(&predicted)
        .map(|(p, &c)| p[c])
        .collect();
    let correct: Vec<bool> = truth.iter().zip(&predicted).map(|(t, p)| t == p).collect();
    Some(ClassMetrics {
        images: rows.len(),
        accuracy: classes.accuracy(),
        accuracy_ci95: interval(&groups, |idx| Some(confusion_of(idx).accuracy())),
        balanced_accuracy: classes.balanced_accuracy(),
        balanced_accuracy_ci95: interval(&groups, |idx| {
            Some(confusion_of(idx).balanced_accuracy())
        }),
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
        expected_calibration_error: metrics::expected_calibration_error(&confidence, &correct, 10),
        expected_calibration_error_ci95: interval(&groups, |idx| {
            Some(metrics::expected_calibration_error(
                &pick(&confidence, idx),
                &pick(&correct, idx),
                10,
            ))
        }),
        reliability: metrics::reliability(&confidence, &correct, 10),
    })
}

/// Density: the answered density (the most probable of the four marginals) against the true one.
fn density_metrics(rows: &[&Row]) -> Option<DensityMetrics> {
    if rows.is_empty() {
        return None;
    }
    let (groups, _) = group_ids(rows);
    let truth: Vec<usize> = rows
        .iter()
        .filter_map(|r| r.truth.density.map(|d| d.index()))
        .collect();
    let predicted: Vec<usize> = rows.iter().map(|r| r.prediction.density.index()).collect();
    let confusion_of =
        |idx: &[usize]| Confusion::new(4, &pick(&truth, idx), &pick(&predicted, idx));
    let density = confusion_of(&(0..rows.len()).collect::<Vec<_>>());
    Some(DensityMetrics {
        images: rows.len(),
        accuracy: density.accuracy(),
        accuracy_ci95: interval(&groups, |idx| Some(confusion_of(idx).accuracy())),
        kappa_linear: density.kappa_linear(),
        kappa_linear_ci95: interval(&groups, |idx| Some(confusion_of(idx).kappa_linear())),
        confusion: Matrix {
            labels: labels(&["D1", "D2", "D3", "D4"]),
            counts: density.counts,
        },
    })
}

/// Malignancy: the answered P(malignant) as a score, and its call at `threshold`.
fn malignancy_metrics(rows: &[&Row], threshold: f64) -> Option<MalignancyMetrics> {
    if rows.is_empty() {
        return None;
    }
    let (groups, _) = group_ids(rows);
    let p: Vec<f64> = rows
        .iter()
        .map(|r| f64::from(r.prediction.malignancy.probability))
        .collect();
    let positive: Vec<bool> = rows.iter().filter_map(|r| r.truth.malignant).collect();
    let called: Vec<usize> = p.iter().map(|&v| usize::from(v >= threshold)).collect();
    let truth_m: Vec<usize> = positive.iter().map(|&v| usize::from(v)).collect();
    let (sensitivity, specificity) = metrics::sensitivity_specificity(&p, &positive, threshold);
    let on = |idx: &[usize]| (pick(&p, idx), pick(&positive, idx));
    let among = |idx: &[usize], malignant: bool| {
        let (s, y) = on(idx);
        y.contains(&malignant).then(|| {
            let (sens, spec) = metrics::sensitivity_specificity(&s, &y, threshold);
            if malignant {
                sens
            } else {
                spec
            }
        })
    };
    Some(MalignancyMetrics {
        images: rows.len(),
        auc: metrics::roc_auc(&p, &positive),
        auc_ci95: interval(&groups, |idx| {
            let (s, y) = on(idx);
            metrics::roc_auc(&s, &y)
        }),
        threshold,
        sensitivity,
        sensitivity_ci95: interval(&groups, |idx| among(idx, true)),
        specificity,
        specificity_ci95: interval(&groups, |idx| among(idx, false)),
        sensitivity_at_90_specificity: metrics::sensitivity_at_specificity(&p, &positive, 0.9),
        sensitivity_at_90_specificity_ci95: interval(&groups, |idx| {
            let (s, y) = on(idx);
            (y.contains(&true) && y.contains(&false))
                .then(|| metrics::sensitivity_at_specificity(&s, &y, 0.9))
        }),
        confusion: Matrix {
            labels: labels(&["benign", "malignant"]),
            counts: Confusion::new(2, &truth_m, &called).counts,
        },
        roc: metrics::roc_curve(&p, &positive)
            .into_iter()
            .map(|(f, t, th)| (f, t, if th.is_finite() { th } else { 1.0 }))
            .collect(),
        binary_ece: metrics::expected_calibration_error(&p, &positive, CALIBRATION_BINS),
        binary_ece_ci95: interval(&groups, |idx| {
            let (s, y) = on(idx);
            Some(metrics::expected_calibration_error(
                &s,
                &y,
                CALIBRATION_BINS,
            ))
        }),
        brier: metrics::brier(&p, &positive),
        brier_ci95: interval(&groups, |idx| {
            let (s, y) = on(idx);
            Some(metrics::brier(&s, &y))
        }),
        reliability: metrics::reliability(&p, &positive, CALIBRATION_BINS),
        average_precision: metrics::average_precision(&p, &positive),
        average_precision_ci95: interval(&groups, |idx| {
            let (s, y) = on(idx);
            metrics::average_precision(&s, &y)
        }),
        precision_recall: metrics::precision_recall_curve(&p, &positive),
    })
}

/// Bootstrap groups: patients or families when every row has one, else one group per image.
fn group_ids<R: std::borrow::Borrow<Row>>(rows: &[R]) -> (Vec<usize>, &'static str) {
    let rows: Vec<&Row> = rows.iter().map(|r| r.borrow()).collect();
    if rows.is_empty() || rows.iter().any(|r| r.group.is_none()) {
        return ((0..rows.len()).collect(), "images");
    }
    let unit = if rows.iter().all(|r| r.attributes.patient.is_some()) {
        "patients"
    } else {
        "families"
    };
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let groups = rows
        .iter()
        .map(|r| {
            let next = ids.len();
            *ids.entry(r.group.as_deref().expect("checked"))
                .or_insert(next)
        })
        .collect();
    (groups, unit)
}

/// One attribute's table: the headline numbers per value.
#[derive(Debug, Clone, Serialize)]
pub struct SubgroupTable {
    /// `view`, `laterality`, `manufacturer` or `density` (the true one).
    pub by: &'static str,
    pub rows: Vec<SubgroupRow>,
}

/// The headline numbers of the images sharing one value.
#[derive(Debug, Clone, Serialize)]
pub struct SubgroupRow {
    pub value: String,
    pub images: usize,
    /// Distinct resampling groups (patients or families) among them.
    pub groups: usize,
    pub not_assessable_share: f64,
    pub density_accuracy: Option<f64>,
    pub density_accuracy_ci95: Option<(f64, f64)>,
    pub malignancy_auc: Option<f64>,
    pub malignancy_auc_ci95: Option<(f64, f64)>,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
}

/// What a subgroup table groups its rows by.
type Key = fn(&Row) -> Option<String>;

/// Tables by view, laterality, manufacturer (the DICOM's (0008,0070)) and true density.
pub fn subgroups(rows: &[Row], threshold: f64) -> Vec<SubgroupTable> {
    let by: [(&'static str, Key); 4] = [
        ("view", |r| r.attributes.view.clone()),
        ("laterality", |r| r.attributes.laterality.clone()),
        ("manufacturer", |r| r.attributes.manufacturer.clone()),
        ("density", |r| {
            r.truth.density.map(|d| d.birads().to_string())
        }),
    ];
    by.into_iter()
        .map(|(name, key)| {
            let mut values: BTreeMap<String, Vec<Row>> = BTreeMap::new();
            for r in rows {
                let value = key(r).unwrap_or_else(|| NOT_GIVEN.to_string());
                values.entry(value).or_default().push(r.clone());
            }
            SubgroupTable {
                by: name,
                rows: values
                    .into_iter()
                    .map(|(value, members)| subgroup_row(value, &members, threshold))
                    .collect(),
            }
        })
        .collect()
}

fn subgroup_row(value: String, rows: &[Row], threshold: f64) -> SubgroupRow {
    let with = |keep: fn(&Truth) -> bool| -> Vec<&Row> {
        rows.iter().filter(|r| keep(&r.truth)).collect()
    };
    let density = density_metrics(&with(|t| t.density.is_some()));
    let malignancy = malignancy_metrics(&with(|t| t.malignant.is_some()), threshold);
    let (groups, _) = group_ids(rows);
    let declined = rows
        .iter()
        .filter(|r| !r.prediction.assessment.is_assessed())
        .count();
    SubgroupRow {
        value,
        images: rows.len(),
        groups: groups
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        not_assessable_share: declined as f64 / rows.len().max(1) as f64,
        density_accuracy: density.as_ref().map(|d| d.accuracy),
        density_accuracy_ci95: density.as_ref().and_then(|d| d.accuracy_ci95),
        malignancy_auc: malignancy.as_ref().and_then(|a| a.auc),
        malignancy_auc_ci95: malignancy.as_ref().and_then(|a| a.auc_ci95),
        sensitivity: malignancy.as_ref().map(|a| a.sensitivity),
        specificity: malignancy.as_ref().map(|a| a.specificity),
    }
}

/// Writes one line per image: name, what the manifest or DICOM says of it (the pseudonymous
/// patient key, study, laterality, view, manufacturer), its labels, the predicted class,
/// density, malignancy probability and label, confidence, assessment, and the eight class
/// probabilities.
pub fn write_predictions(path: &Path, rows: &[Row]) -> Result<(), csv::Error> {
    let mut out = csv::Writer::from_path(path)?;
    let mut header = vec![
        "filename",
        "patient",
        "study",
        "laterality",
        "view",
        "manufacturer",
        "label",
        "true_density",
        "true_malignant",
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
        let a = &r.attributes;
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let mut record = vec![
            r.name.clone(),
            text(&a.patient),
            text(&a.study),
            text(&a.laterality),
            text(&a.view),
            text(&a.manufacturer),
            r.truth.class().map_or("", |l| l.code()).to_string(),
            r.truth.density.map_or("", |d| d.birads()).to_string(),
            r.truth
                .malignant
                .map_or("", |m| if m { "yes" } else { "no" })
                .to_string(),
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
