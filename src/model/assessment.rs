//! Whether the model's answer about an image can be used: an image unlike the training data
//! (another modality, detector, processing or view) is declined, not guessed at.

use crate::model::metadata::OodContract;

/// Whether an image was assessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Assessed,
    /// The image lies outside what the model learned; its labels must not be used.
    NotAssessable,
}

impl Status {
    /// `assessed` or `not_assessable`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Assessed => "assessed",
            Status::NotAssessable => "not_assessable",
        }
    }
}

/// The verdict on one image, with what it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub status: Status,
    /// The model's out-of-distribution score (higher: less like the training data); `None`
    /// for a model without a detector.
    pub ood_score: Option<f32>,
    /// Scores above it are not assessed (`mammo.ood_threshold`).
    pub ood_threshold: Option<f32>,
    /// Why, in words, when the image was not assessed or could not be checked.
    pub reason: Option<String>,
}

impl Assessment {
    /// The verdict on an image the model scored `score`, under the model's `contract`.
    pub fn of(score: Option<f32>, contract: Option<&OodContract>) -> Assessment {
        let threshold = contract.map(|c| c.threshold);
        let (status, reason) = match (score, threshold) {
            (Some(s), Some(t)) if s.is_nan() || s > t => (
                Status::NotAssessable,
                Some(format!(
                    "the image is unlike the mammograms the model was trained on \
                     (out-of-distribution score {s:.3} above the threshold {t:.3}): another \
                     modality, detector, processing, view or acquisition than the training \
                     data; its density and malignancy are not reported"
                )),
            ),
            (Some(_), Some(_)) => (Status::Assessed, None),
            _ => (
                Status::Assessed,
                Some(
                    "the model has no out-of-distribution detector: whether the image is like \
                     its training data was not checked"
                        .to_string(),
                ),
            ),
        };
        Assessment {
            status,
            ood_score: score,
            ood_threshold: threshold,
            reason,
        }
    }

    pub fn is_assessed(&self) -> bool {
        self.status == Status::Assessed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_above_the_threshold_are_not_assessed() {
        let contract = OodContract {
            method: "maha_early".into(),
            threshold: 2.0,
        };
        assert!(Assessment::of(Some(1.9), Some(&contract)).is_assessed());
        assert!(Assessment::of(Some(2.0), Some(&contract)).is_assessed());
        let far = Assessment::of(Some(2.5), Some(&contract));
        assert_eq!(far.status, Status::NotAssessable);
        assert!(far
            .reason
            .unwrap()
            .contains("2.500 above the threshold 2.000"));
        let nan = Assessment::of(Some(f32::NAN), Some(&contract));
        assert_eq!(
            nan.status,
            Status::NotAssessable,
            "an unreadable score is no pass"
        );
    }

    #[test]
    fn a_model_without_a_detector_assesses_and_says_it_did_not_check() {
        let plain = Assessment::of(None, None);
        assert_eq!(
            (plain.status, plain.ood_score, plain.ood_threshold),
            (Status::Assessed, None, None)
        );
        assert!(plain.reason.unwrap().contains("not checked"));
    }
}
