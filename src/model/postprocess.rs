//! From the model's outputs to its reading of one image: softmax, density and malignancy
//! marginals, the operating threshold.

use crate::model::assessment::Assessment;
use crate::model::labels::{ClassLabel, Density, Pathology};
use crate::model::metadata::ModelMetadata;

/// The model's reading of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Softmax probability of each class, in canonical order ([`ClassLabel::ALL`]).
    pub class_probabilities: [f32; 8],
    /// The most probable class.
    pub class: ClassLabel,
    /// P(density = k), each the sum of the benign and malignant class of that density.
    pub density_probabilities: [f32; 4],
    /// The most probable density.
    pub density: Density,
    pub malignancy: Malignancy,
    /// Whether the image lies inside what the model can read.
    pub assessment: Assessment,
}

/// Benign or malignant at the model's operating threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Malignancy {
    /// Sum of the four malignant class probabilities.
    pub probability: f32,
    /// The model's operating threshold (`mammo.malignancy_threshold`).
    pub threshold: f32,
}

impl Malignancy {
    /// `Malignant` when the probability reaches the threshold.
    pub fn call(self) -> Pathology {
        if self.probability >= self.threshold {
            Pathology::Malignant
        } else {
            Pathology::Benign
        }
    }

    /// Probability of the call: `probability` or `1 - probability`.
    pub fn confidence(self) -> f32 {
        match self.call() {
            Pathology::Malignant => self.probability,
            Pathology::Benign => 1.0 - self.probability,
        }
    }
}

impl Prediction {
    /// Probability of the chosen class.
    pub fn class_confidence(&self) -> f32 {
        self.class_probabilities[self.class.index()]
    }

    /// Probability of the chosen density.
    pub fn density_confidence(&self) -> f32 {
        self.density_probabilities[self.density.index()]
    }
}

/// Softmax over logits, computed in f64 so the probabilities sum to 1 within f32 rounding.
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Index of the largest value (the first one on ties).
pub fn argmax<T: PartialOrd + Copy>(values: &[T]) -> usize {
    (0..values.len()).fold(0, |best, i| if values[i] > values[best] { i } else { best })
}

/// The density whose probability is the largest (the least dense on ties).
pub fn most_probable_density(probabilities: &[f32; 4]) -> Density {
    Density::from_index(argmax(probabilities))
}

/// Class probabilities in canonical order (D1B..D4M), whatever order the model emits them in,
/// after dividing the logits by the model's temperature. Errors when the model gave another
/// number of logits than it has labels.
pub fn canonical_probabilities(
    logits: &[f32],
    metadata: &ModelMetadata,
) -> Result<[f64; 8], String> {
    if logits.len() != metadata.labels.len() {
        return Err(format!(
            "the model gave {} logits; its metadata names {} classes",
            logits.len(),
            metadata.labels.len()
        ));
    }
    let scaled: Vec<f32> = logits.iter().map(|l| l / metadata.temperature).collect();
    let probs = softmax(&scaled);
    let mut canonical = [0.0; 8];
    for (label, p) in metadata.labels.iter().zip(probs) {
        canonical[label.index()] = p;
    }
    Ok(canonical)
}

/// Interprets one image's logits and out-of-distribution score under the model's metadata.
pub fn interpret(
    logits: &[f32],
    ood_score: Option<f32>,
    metadata: &ModelMetadata,
) -> Result<Prediction, String> {
    let p = canonical_probabilities(logits, metadata)?;
    let density: [f64; 4] = std::array::from_fn(|d| p[2 * d] + p[2 * d + 1]);
    let malignant: f64 = (0..4).map(|d| p[2 * d + 1]).sum();
    let density_probabilities = density.map(|v| v as f32);
    Ok(Prediction {
        class_probabilities: p.map(|v| v as f32),
        class: ClassLabel::ALL[argmax(&p)],
        density: Density::from_index(argmax(&density)),
        density_probabilities,
        malignancy: Malignancy {
            probability: malignant as f32,
            threshold: metadata.malignancy_threshold,
        },
        assessment: Assessment::of(ood_score, metadata.ood.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::{Preprocessing, ResizeFilter};

    fn metadata(labels: [ClassLabel; 8], threshold: f32) -> ModelMetadata {
        ModelMetadata {
            labels,
            preprocessing: Preprocessing {
                height: 224,
                width: 224,
                mean: [0.0; 3],
                std: [1.0; 3],
                resize: ResizeFilter::Bilinear,
                steps: Default::default(),
            },
            malignancy_threshold: threshold,
            version: "t".into(),
            arch: "t".into(),
            trained_on: "t".into(),
            temperature: 1.0,
            ood: None,
            precision: Default::default(),
            views: 1,
        }
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_logits() {
        let p = softmax(&[1000.0, 999.0, -1000.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((p[0] - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn marginals_are_sums_of_class_probabilities() {
        // ln of the wanted probabilities: D2M 0.4, D2B 0.1, D3M 0.3, the rest 0.04 each.
        let want = [0.04, 0.04, 0.1, 0.4, 0.04, 0.3, 0.04, 0.04];
        let logits: [f32; 8] = want.map(|p: f64| p.ln() as f32);
        let pred = interpret(&logits, None, &metadata(ClassLabel::ALL, 0.5)).unwrap();
        assert_eq!(pred.class.code(), "D2M");
        assert!((pred.class_confidence() - 0.4).abs() < 1e-6);
        assert_eq!(pred.density, Density::D2);
        assert!((pred.density_probabilities[1] - 0.5).abs() < 1e-6);
        assert!((pred.density_probabilities[2] - 0.34).abs() < 1e-6);
        assert!((pred.density_confidence() - 0.5).abs() < 1e-6);
        assert!((pred.malignancy.probability - 0.78).abs() < 1e-6);
        assert_eq!(pred.malignancy.call(), Pathology::Malignant);
        assert!((pred.malignancy.confidence() - 0.78).abs() < 1e-6);
    }

    #[test]
    fn threshold_decides_the_malignancy_label() {
        let logits = [0.0f32; 8]; // uniform: P(malignant) = 0.5
        let at = interpret(&logits, None, &metadata(ClassLabel::ALL, 0.5)).unwrap();
        assert_eq!(at.malignancy.call(), Pathology::Malignant);
        let above = interpret(&logits, None, &metadata(ClassLabel::ALL, 0.6)).unwrap();
        assert_eq!(above.malignancy.call(), Pathology::Benign);
        assert!((above.malignancy.confidence() - 0.5).abs() < 1e-6);
    }

    #[test]
    fn temperature_softens_the_probabilities() {
        let mut logits = [0.0f32; 8];
        logits[1] = 2.0;
        let mut warm = metadata(ClassLabel::ALL, 0.5);
        warm.temperature = 2.0;
        let plain = interpret(&logits, None, &metadata(ClassLabel::ALL, 0.5)).unwrap();
        let softened = interpret(&logits, None, &warm).unwrap();
        // e^2 / (e^2 + 7) vs e^1 / (e^1 + 7).
        let (e1, e2) = (1f64.exp(), 2f64.exp());
        assert!((plain.class_confidence() as f64 - e2 / (e2 + 7.0)).abs() < 1e-6);
        assert!((softened.class_confidence() as f64 - e1 / (e1 + 7.0)).abs() < 1e-6);
    }

    #[test]
    fn model_output_order_is_respected() {
        let mut labels = ClassLabel::ALL;
        labels.reverse(); // output 0 is D4M
        let mut logits = [0.0f32; 8];
        logits[0] = 5.0;
        let pred = interpret(&logits, None, &metadata(labels, 0.5)).unwrap();
        assert_eq!(pred.class.code(), "D4M");
        assert_eq!(pred.density, Density::D4);
        assert!(pred.class_probabilities[7] > 0.9);
        assert!(interpret(&logits[..7], None, &metadata(labels, 0.5))
            .unwrap_err()
            .contains("7 logits"));
    }
}
