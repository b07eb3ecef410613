//! From eight logits to the answer: softmax, density and malignancy marginals, threshold.

use crate::model::labels::{birads_letter, ClassLabel};
use crate::model::metadata::ModelMetadata;
use serde::Serialize;
use utoipa::ToSchema;

/// The model's reading of one image.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Prediction {
    pub density: DensityCall,
    pub malignancy: MalignancyCall,
    pub class: ClassCall,
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

/// Softmax over logits, computed in f64 so the probabilities sum to 1 within f32 rounding.
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Index of the largest value (the first one on ties).
pub(crate) fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Class probabilities in canonical order (D1B..D4M), whatever order the model emits them in.
pub fn canonical_probabilities(logits: &[f32; 8], metadata: &ModelMetadata) -> [f64; 8] {
    let probs = softmax(logits);
    let mut canonical = [0.0; 8];
    for (label, p) in metadata.labels.iter().zip(probs) {
        canonical[label.index()] = p;
    }
    canonical
}

/// Interprets one image's logits under the model's metadata.
pub fn interpret(logits: &[f32; 8], metadata: &ModelMetadata) -> Prediction {
    let p = canonical_probabilities(logits, metadata);
    let density: Vec<f64> = (0..4).map(|d| p[2 * d] + p[2 * d + 1]).collect();
    let malignant: f64 = (0..4).map(|d| p[2 * d + 1]).sum();
    let best_density = argmax(&density);
    let best_class = ClassLabel::ALL[argmax(&p)];
    let threshold = metadata.malignancy_threshold;
    let is_malignant = malignant as f32 >= threshold;
    Prediction {
        density: DensityCall {
            label: format!("D{}", best_density + 1),
            birads: birads_letter(best_density as u8 + 1).to_string(),
            probabilities: DensityProbabilities {
                d1: density[0] as f32,
                d2: density[1] as f32,
                d3: density[2] as f32,
                d4: density[3] as f32,
            },
            confidence: density[best_density] as f32,
        },
        malignancy: MalignancyCall {
            label: if is_malignant { "malignant" } else { "benign" }.to_string(),
            probability: malignant as f32,
            threshold,
            confidence: if is_malignant {
                malignant
            } else {
                1.0 - malignant
            } as f32,
        },
        class: ClassCall {
            label: best_class.code().to_string(),
            probabilities: ClassProbabilities {
                D1B: p[0] as f32,
                D1M: p[1] as f32,
                D2B: p[2] as f32,
                D2M: p[3] as f32,
                D3B: p[4] as f32,
                D3M: p[5] as f32,
                D4B: p[6] as f32,
                D4M: p[7] as f32,
            },
            confidence: p[best_class.index()] as f32,
        },
    }
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
        let pred = interpret(&logits, &metadata(ClassLabel::ALL, 0.5));
        assert_eq!(pred.class.label, "D2M");
        assert!((pred.class.confidence - 0.4).abs() < 1e-6);
        assert_eq!(pred.density.label, "D2");
        assert_eq!(pred.density.birads, "B");
        assert!((pred.density.probabilities.d2 - 0.5).abs() < 1e-6);
        assert!((pred.density.probabilities.d3 - 0.34).abs() < 1e-6);
        assert!((pred.malignancy.probability - 0.78).abs() < 1e-6);
        assert_eq!(pred.malignancy.label, "malignant");
        assert!((pred.malignancy.confidence - 0.78).abs() < 1e-6);
    }

    #[test]
    fn threshold_decides_the_malignancy_label() {
        let logits = [0.0f32; 8]; // uniform: P(malignant) = 0.5
        let at = interpret(&logits, &metadata(ClassLabel::ALL, 0.5));
        assert_eq!(at.malignancy.label, "malignant");
        let above = interpret(&logits, &metadata(ClassLabel::ALL, 0.6));
        assert_eq!(above.malignancy.label, "benign");
        assert!((above.malignancy.confidence - 0.5).abs() < 1e-6);
    }

    #[test]
    fn model_output_order_is_respected() {
        let mut labels = ClassLabel::ALL;
        labels.reverse(); // output 0 is D4M
        let mut logits = [0.0f32; 8];
        logits[0] = 5.0;
        let pred = interpret(&logits, &metadata(labels, 0.5));
        assert_eq!(pred.class.label, "D4M");
        assert_eq!(pred.density.label, "D4");
        assert!(pred.class.probabilities.D4M > 0.9);
    }
}
