//! A reading as it is kept on disk until its study's SR is made: what the model said about one
//! DICOM image and the image's identifiers (never patient attributes: those stay in the
//! source's own file). JSON, so that an operator can read what is waiting.

use crate::imaging::{DicomInfo, Laterality, ViewPosition};
use crate::model::{Assessment, ClassLabel, Density, Malignancy, Prediction, Status};
use crate::pipeline::Reading;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    /// `L`, `R` or absent.
    pub laterality: Option<String>,
    pub view_position: Option<String>,
    pub transfer_syntax: String,
    #[serde(default)]
    pub manufacturer: Option<String>,
    pub class_probabilities: [f32; 8],
    pub class: String,
    pub density_probabilities: [f32; 4],
    pub density: String,
    pub malignancy_probability: f32,
    pub malignancy_threshold: f32,
    pub assessed: bool,
    pub ood_score: Option<f32>,
    pub ood_threshold: Option<f32>,
    pub reason: Option<String>,
}

impl Record {
    /// The record of a reading of a DICOM image (`None` for another image).
    pub fn of(reading: &Reading) -> Option<Record> {
        let info = reading.dicom.as_ref()?;
        let p = &reading.prediction;
        Some(Record {
            sop_instance_uid: info.sop_instance_uid.clone(),
            study_instance_uid: info.study_instance_uid.clone(),
            series_instance_uid: info.series_instance_uid.clone(),
            laterality: info.laterality.map(|l| l.code().to_string()),
            view_position: info.view_position.as_ref().map(|v| v.code().to_string()),
            transfer_syntax: info.transfer_syntax.clone(),
            manufacturer: info.manufacturer.clone(),
            class_probabilities: p.class_probabilities,
            class: p.class.code().to_string(),
            density_probabilities: p.density_probabilities,
            density: p.density.code().to_string(),
            malignancy_probability: p.malignancy.probability,
            malignancy_threshold: p.malignancy.threshold,
            assessed: p.assessment.is_assessed(),
            ood_score: p.assessment.ood_score,
            ood_threshold: p.assessment.ood_threshold,
            reason: p.assessment.reason.clone(),
        })
    }

    /// The reading back; `None` when a label in the file is not one we write.
    pub fn reading(&self) -> Option<Reading> {
        let class = *ClassLabel::ALL.iter().find(|c| c.code() == self.class)?;
        let density = *Density::ALL.iter().find(|d| d.code() == self.density)?;
        let status = if self.assessed {
            Status::Assessed
        } else {
            Status::NotAssessable
        };
        Some(Reading {
            prediction: Prediction {
                class_probabilities: self.class_probabilities,
                class,
                density_probabilities: self.density_probabilities,
                density,
                malignancy: Malignancy {
                    probability: self.malignancy_probability,
                    threshold: self.malignancy_threshold,
                },
                assessment: Assessment {
                    status,
                    ood_score: self.ood_score,
                    ood_threshold: self.ood_threshold,
                    reason: self.reason.clone(),
                },
            },
            dicom: Some(DicomInfo {
                sop_instance_uid: self.sop_instance_uid.clone(),
                study_instance_uid: self.study_instance_uid.clone(),
                series_instance_uid: self.series_instance_uid.clone(),
                laterality: self.laterality.as_deref().and_then(Laterality::from_code),
                view_position: self.view_position.as_deref().map(ViewPosition::from_code),
                transfer_syntax: self.transfer_syntax.clone(),
                manufacturer: self.manufacturer.clone(),
            }),
        })
    }
}
