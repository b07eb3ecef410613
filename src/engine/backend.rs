//! The seam between the batching engine and whatever runs the model.

/// Runs a batch of input tensors through a model. One backend belongs to one engine worker
/// thread, so `run` may keep per-session state without locking.
pub trait Backend: Send + 'static {
    /// Runs `n` images, whose tensors lie one after another in `input`, in one call.
    fn run(&mut self, input: &[f32], n: usize) -> Result<BatchOutputs, String>;
}

/// What the model gave for a batch of `n` images.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutputs {
    /// `n` rows of `classes` logits, row-major.
    pub logits: Vec<f32>,
    /// Logits per image.
    pub classes: usize,
    /// One out-of-distribution score per image, when the model computes one.
    pub ood_score: Option<Vec<f32>>,
}

/// What the model gave for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOutputs {
    pub logits: Vec<f32>,
    pub ood_score: Option<f32>,
}

impl BatchOutputs {
    /// Splits the batch into its `n` images, checking that every output has one entry per
    /// image and that the logits are finite (a model that overflowed answers nothing).
    pub fn split(self, n: usize) -> Result<Vec<ImageOutputs>, String> {
        if self.classes == 0 || self.logits.len() != n * self.classes {
            return Err(format!(
                "the model returned {} logits for a batch of {n} ({} per image)",
                self.logits.len(),
                self.classes
            ));
        }
        if let Some(bad) = self.logits.iter().find(|v| !v.is_finite()) {
            return Err(format!("the model returned a non-finite logit ({bad})"));
        }
        let scores: Vec<Option<f32>> = match self.ood_score {
            Some(s) if s.len() == n => s.into_iter().map(Some).collect(),
            Some(s) => {
                return Err(format!(
                    "the model returned {} out-of-distribution scores for a batch of {n}",
                    s.len()
                ))
            }
            None => vec![None; n],
        };
        Ok(self
            .logits
            .chunks_exact(self.classes)
            .zip(scores)
            .map(|(row, ood_score)| ImageOutputs {
                logits: row.to_vec(),
                ood_score,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_splits_into_rows_with_their_scores() {
        let outputs = BatchOutputs {
            logits: vec![1.0, 2.0, 3.0, 4.0],
            classes: 2,
            ood_score: Some(vec![0.5, 7.0]),
        };
        let images = outputs.split(2).unwrap();
        assert_eq!(images[1].logits, [3.0, 4.0]);
        assert_eq!(images[1].ood_score, Some(7.0));
    }

    #[test]
    fn wrong_counts_and_non_finite_logits_are_errors() {
        let short = BatchOutputs {
            logits: vec![1.0; 3],
            classes: 2,
            ood_score: None,
        };
        assert!(short.split(2).unwrap_err().contains("3 logits"));
        let scores = BatchOutputs {
            logits: vec![1.0; 4],
            classes: 2,
            ood_score: Some(vec![1.0]),
        };
        assert!(scores
            .split(2)
            .unwrap_err()
            .contains("1 out-of-distribution"));
        let nan = BatchOutputs {
            logits: vec![1.0, f32::NAN],
            classes: 2,
            ood_score: None,
        };
        assert!(nan.split(1).unwrap_err().contains("non-finite"));
    }
}
