//! Exam-level reading of DICOM views, as radiologists read: by study, then by breast.
//!
//! Rules (documented in the README):
//! - Views are grouped by Study Instance UID, then by laterality (L, R, or neither).
//! - A breast's malignancy probability is the highest among its views (one suspicious view
//!   is enough to recall), labelled with the model's operating threshold.
//! - A breast's density is the most probable of the four density probabilities averaged over
//!   its views (each view is one noisy estimate of the same tissue).
//! - The exam's density is the denser breast's (BI-RADS 5th ed.: when the breasts differ, the
//!   exam is categorised by the denser); its malignancy is its highest breast's.
//! - Views the model could not assess are left out of every number and listed apart; a breast
//!   with no assessed view, and an exam with no assessed breast, are not assessable.

use crate::imaging::{DicomInfo, Laterality, ViewPosition};
use crate::model::assessment::Status;
use crate::model::labels::Density;
use crate::model::postprocess::{most_probable_density, Malignancy, Prediction};
use std::collections::BTreeMap;

/// One study's summary across its views.
#[derive(Debug, Clone, PartialEq)]
pub struct ExamSummary {
    pub study_instance_uid: String,
    /// Left, right, then views that name neither breast.
    pub breasts: Vec<BreastSummary>,
    /// The denser assessed breast's density; `None` when no breast was assessed.
    pub density: Option<ExamDensity>,
    /// The highest malignancy probability of any assessed view in the study.
    pub malignancy: Option<ExamMalignancy>,
    /// Views in the study the model could not assess.
    pub not_assessable_views: usize,
}

impl ExamSummary {
    /// Assessed when at least one breast is.
    pub fn status(&self) -> Status {
        if self.density.is_some() {
            Status::Assessed
        } else {
            Status::NotAssessable
        }
    }
}

/// One breast's summary across its views.
#[derive(Debug, Clone, PartialEq)]
pub struct BreastSummary {
    /// `None` for views that name neither breast.
    pub laterality: Option<Laterality>,
    /// Its assessed views, in request order.
    pub views: Vec<ViewRef>,
    /// Its views the model could not assess, in request order.
    pub not_assessable: Vec<ViewRef>,
    /// `None` when no view of the breast was assessed.
    pub density: Option<ExamDensity>,
    pub malignancy: Option<ExamMalignancy>,
}

impl BreastSummary {
    /// Assessed when at least one of its views is.
    pub fn status(&self) -> Status {
        if self.views.is_empty() {
            Status::NotAssessable
        } else {
            Status::Assessed
        }
    }
}

/// A view that went into a summary.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRef {
    /// The caller's id of the image.
    pub id: String,
    pub sop_instance_uid: String,
    pub view_position: Option<ViewPosition>,
}

/// Density across views.
#[derive(Debug, Clone, PartialEq)]
pub struct ExamDensity {
    pub density: Density,
    /// Density probabilities averaged over the views (for an exam: the denser breast's).
    pub probabilities: [f32; 4],
}

/// Malignancy across views: the highest view.
#[derive(Debug, Clone, PartialEq)]
pub struct ExamMalignancy {
    pub malignancy: Malignancy,
    /// The id of the view with the highest probability.
    pub from: String,
}

/// An image that was read: the caller's id, its DICOM identifiers and what the model said.
pub struct View<'a> {
    pub id: &'a str,
    pub dicom: &'a DicomInfo,
    pub prediction: &'a Prediction,
}

/// Summaries per study, in order of each study's first view.
pub fn summarise(views: &[View]) -> Vec<ExamSummary> {
    let mut studies: Vec<(&str, Vec<&View>)> = Vec::new();
    for view in views {
        let uid = view.dicom.study_instance_uid.as_str();
        match studies.iter_mut().find(|(s, _)| *s == uid) {
            Some((_, members)) => members.push(view),
            None => studies.push((uid, vec![view])),
        }
    }
    studies
        .into_iter()
        .map(|(uid, members)| exam(uid, &members))
        .collect()
}

fn exam(uid: &str, views: &[&View]) -> ExamSummary {
    let mut by_side: BTreeMap<u8, Vec<&View>> = BTreeMap::new();
    for view in views {
        let key = match view.dicom.laterality {
            Some(Laterality::Left) => 0,
            Some(Laterality::Right) => 1,
            None => 2,
        };
        by_side.entry(key).or_default().push(view);
    }
    let breasts: Vec<BreastSummary> = by_side.into_values().map(|v| breast(&v)).collect();
    let denser = breasts
        .iter()
        .filter_map(|b| b.density.as_ref())
        .max_by_key(|d| d.density)
        .cloned();
    let assessed: Vec<&ExamMalignancy> = breasts
        .iter()
        .filter_map(|b| b.malignancy.as_ref())
        .collect();
    let malignancy = (!assessed.is_empty())
        .then(|| highest(&assessed, |m| m.malignancy.probability))
        .map(|m| (*m).clone());
    ExamSummary {
        study_instance_uid: uid.to_string(),
        density: denser,
        malignancy,
        not_assessable_views: breasts.iter().map(|b| b.not_assessable.len()).sum(),
        breasts,
    }
}

/// The item with the highest `probability` (the last of equals); `items` is never empty.
fn highest<T>(items: &[T], probability: impl Fn(&T) -> f32) -> &T {
    items
        .iter()
        .max_by(|a, b| probability(a).total_cmp(&probability(b)))
        .expect("a study or breast has at least one view")
}

fn view_ref(v: &View) -> ViewRef {
    ViewRef {
        id: v.id.to_string(),
        sop_instance_uid: v.dicom.sop_instance_uid.clone(),
        view_position: v.dicom.view_position.clone(),
    }
}

fn breast(views: &[&View]) -> BreastSummary {
    let (assessed, declined): (Vec<&View>, Vec<&View>) = views
        .iter()
        .partition(|v| v.prediction.assessment.is_assessed());
    let (density, malignancy) = if assessed.is_empty() {
        (None, None)
    } else {
        let n = assessed.len() as f32;
        let probabilities: [f32; 4] = std::array::from_fn(|d| {
            assessed
                .iter()
                .map(|v| v.prediction.density_probabilities[d])
                .sum::<f32>()
                / n
        });
        let top = highest(&assessed, |v| v.prediction.malignancy.probability);
        (
            Some(ExamDensity {
                density: most_probable_density(&probabilities),
                probabilities,
            }),
            Some(ExamMalignancy {
                malignancy: top.prediction.malignancy,
                from: top.id.to_string(),
            }),
        )
    };
    BreastSummary {
        laterality: views[0].dicom.laterality,
        views: assessed.iter().map(|v| view_ref(v)).collect(),
        not_assessable: declined.iter().map(|v| view_ref(v)).collect(),
        density,
        malignancy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::assessment::Assessment;
    use crate::model::labels::{ClassLabel, Pathology};
    use crate::model::metadata::OodContract;

    fn prediction(density: [f32; 4], malignant: f32) -> Prediction {
        let contract = OodContract {
            method: "test".into(),
            threshold: 1.0,
        };
        Prediction {
            class_probabilities: [0.125; 8],
            class: ClassLabel::ALL[0],
            density_probabilities: density,
            density: most_probable_density(&density),
            malignancy: Malignancy {
                probability: malignant,
                threshold: 0.5,
            },
            assessment: Assessment::of(Some(0.5), Some(&contract)),
        }
    }

    fn declined(mut p: Prediction) -> Prediction {
        p.assessment = Assessment::of(
            Some(9.0),
            Some(&OodContract {
                method: "test".into(),
                threshold: 1.0,
            }),
        );
        p
    }

    fn info(study: &str, laterality: Option<Laterality>, view: &str) -> DicomInfo {
        DicomInfo {
            sop_instance_uid: format!("{study}.{view}"),
            study_instance_uid: study.into(),
            series_instance_uid: format!("{study}.1"),
            laterality,
            view_position: Some(ViewPosition::from_code(view)),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            manufacturer: None,
        }
    }

    #[test]
    fn breasts_take_the_highest_malignancy_and_mean_density_exams_the_denser_breast() {
        let (l, r) = (Some(Laterality::Left), Some(Laterality::Right));
        let infos = [
            info("s1", l, "CC"),
            info("s1", r, "CC"),
            info("s1", l, "MLO"),
            info("s2", None, "CC"),
        ];
        let preds = [
            prediction([0.1, 0.6, 0.3, 0.0], 0.2),
            prediction([0.0, 0.1, 0.2, 0.7], 0.1),
            prediction([0.1, 0.2, 0.7, 0.0], 0.8),
            prediction([1.0, 0.0, 0.0, 0.0], 0.4),
        ];
        let ids = ["lcc", "rcc", "lmlo", "other"];
        let views: Vec<View> = (0..4)
            .map(|i| View {
                id: ids[i],
                dicom: &infos[i],
                prediction: &preds[i],
            })
            .collect();
        let exams = summarise(&views);
        assert_eq!(exams.len(), 2);
        let s1 = &exams[0];
        assert_eq!(s1.breasts.len(), 2);
        let left = &s1.breasts[0];
        assert_eq!(left.laterality, l);
        assert_eq!(
            left.views.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
            ["lcc", "lmlo"]
        );
        // Mean density: D2 0.4, D3 0.5 → D3; highest malignancy 0.8 from the MLO.
        let (density, malignancy) = (
            left.density.as_ref().unwrap(),
            left.malignancy.as_ref().unwrap(),
        );
        assert_eq!(density.density, Density::D3);
        assert!((density.probabilities[2] - 0.5).abs() < 1e-6);
        assert_eq!(malignancy.malignancy.call(), Pathology::Malignant);
        assert_eq!(malignancy.from, "lmlo");
        assert_eq!(s1.breasts[1].density.as_ref().unwrap().density, Density::D4);
        assert_eq!(s1.density.as_ref().unwrap().density, Density::D4);
        assert_eq!(s1.malignancy.as_ref().unwrap().from, "lmlo");
        assert_eq!(exams[1].breasts[0].laterality, None);
        assert_eq!(
            exams[1].malignancy.as_ref().unwrap().malignancy.call(),
            Pathology::Benign
        );
        assert_eq!(
            (s1.status(), s1.not_assessable_views),
            (Status::Assessed, 0)
        );
    }

    #[test]
    fn views_not_assessed_are_left_out_and_counted() {
        let (l, r) = (Some(Laterality::Left), Some(Laterality::Right));
        let infos = [info("s", l, "CC"), info("s", l, "MLO"), info("s", r, "CC")];
        // The left MLO is the most suspicious and the densest, but was not assessed; the
        // right breast has no assessed view.
        let preds = [
            prediction([0.7, 0.3, 0.0, 0.0], 0.1),
            declined(prediction([0.0, 0.0, 0.0, 1.0], 0.99)),
            declined(prediction([0.0, 0.0, 1.0, 0.0], 0.9)),
        ];
        let views: Vec<View> = (0..3)
            .map(|i| View {
                id: ["lcc", "lmlo", "rcc"][i],
                dicom: &infos[i],
                prediction: &preds[i],
            })
            .collect();
        let [exam] = summarise(&views).try_into().unwrap();
        let (left, right) = (&exam.breasts[0], &exam.breasts[1]);
        assert_eq!(left.views.len(), 1);
        assert_eq!(left.not_assessable[0].id, "lmlo");
        assert_eq!(left.density.as_ref().unwrap().density, Density::D1);
        assert_eq!(left.malignancy.as_ref().unwrap().from, "lcc");
        assert_eq!(
            (right.status(), right.density.is_none()),
            (Status::NotAssessable, true)
        );
        assert_eq!(
            exam.density.as_ref().unwrap().density,
            Density::D1,
            "from the assessed breast"
        );
        assert_eq!(
            (exam.status(), exam.not_assessable_views),
            (Status::Assessed, 2)
        );
        let only_declined = summarise(&views[1..]);
        assert_eq!(only_declined[0].status(), Status::NotAssessable);
        assert!(only_declined[0].malignancy.is_none());
    }
}
