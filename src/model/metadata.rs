//! The model contract: the `mammo.*` metadata properties an exported ONNX file carries.

use crate::imaging::{FullField, Preprocessing, ResizeFilter};
use crate::model::labels::ClassLabel;
use std::collections::HashMap;

/// What the server needs to know about a model, read from its ONNX metadata properties.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMetadata {
    /// Class of each output logit, in output order.
    pub labels: [ClassLabel; 8],
    /// How an image becomes the model's input tensor.
    pub preprocessing: Preprocessing,
    /// Malignancy probability at or above which the answer is "malignant".
    pub malignancy_threshold: f32,
    /// `mammo.version`.
    pub version: String,
    /// `mammo.arch`, e.g. `efficientnet_b0`.
    pub arch: String,
    /// `mammo.trained_on`: the data the weights were fitted to.
    pub trained_on: String,
    /// `mammo.temperature`: the logits are divided by it before the softmax (calibration).
    pub temperature: f32,
    /// `mammo.ood_method` and `mammo.ood_threshold`, for a model with an `ood_score` output.
    pub ood: Option<OodContract>,
    /// `mammo.precision`: the arithmetic of the weights and activations.
    pub precision: Precision,
    /// `mammo.views`: how many views of each image (flips, rotations) the graph runs the network
    /// on and averages the logits of; the engine's work per image scales with it.
    pub views: u32,
}

/// The numeric precision a model file computes in. A file without `mammo.precision` is `fp32`
/// (every export before the INT8 model), so its absence is not logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Fp32,
    /// Static INT8 quantization (QDQ), made from an FP32 model and gated by evaluation.
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "fp32" => Ok(Precision::Fp32),
            "int8" => Ok(Precision::Int8),
            other => Err(format!("expected fp32 or int8, got {other:?}")),
        }
    }
}

/// How a model scores the distance of an image from its training data.
#[derive(Debug, Clone, PartialEq)]
pub struct OodContract {
    /// `mammo.ood_method`, e.g. `maha_early`.
    pub method: String,
    /// `mammo.ood_threshold`: scores above it are not assessed.
    pub threshold: f32,
}

/// A metadata property that is missing where it is required, or malformed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetadataError {
    #[error("model metadata lacks required property `{0}` (see the model contract in the README)")]
    Missing(&'static str),
    #[error("model metadata property `{key}` = {value:?} is invalid: {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: String,
    },
}

/// Property used when `mammo.malignancy_threshold` is absent.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

impl ModelMetadata {
    /// Parses the `mammo.*` properties. Returns the metadata and a note for every optional
    /// property that fell back to a default, for the caller to log.
    pub fn from_props(
        props: &HashMap<String, String>,
    ) -> Result<(Self, Vec<String>), MetadataError> {
        let mut defaults = Vec::new();
        let mut optional = |key: &'static str, default: &str| -> String {
            props.get(key).cloned().unwrap_or_else(|| {
                defaults.push(format!("model metadata lacks `{key}`; using {default:?}"));
                default.to_string()
            })
        };
        let resize_text = optional("mammo.resize", "bilinear");
        let steps_text = optional("mammo.preprocess", "");
        let threshold_text = optional("mammo.malignancy_threshold", &DEFAULT_THRESHOLD.to_string());
        let temperature_text = optional("mammo.temperature", "1");
        let version = optional("mammo.version", "unknown");
        let arch = optional("mammo.arch", "unknown");
        let trained_on = optional("mammo.trained_on", "unknown");

        let required = |key: &'static str| props.get(key).ok_or(MetadataError::Missing(key));
        let labels = parse_labels(required("mammo.labels")?)?;
        let (height, width) = parse_size(required("mammo.input_size")?)?;
        let mean = parse_triple("mammo.mean", required("mammo.mean")?)?;
        let std = parse_triple("mammo.std", required("mammo.std")?)?;
        if std.iter().any(|s| *s <= 0.0) {
            return Err(invalid(
                "mammo.std",
                required("mammo.std")?,
                "every std must be > 0",
            ));
        }
        let resize: ResizeFilter = resize_text
            .parse()
            .map_err(|why: String| invalid("mammo.resize", &resize_text, &why))?;
        let steps: FullField = steps_text
            .parse()
            .map_err(|why: String| invalid("mammo.preprocess", &steps_text, &why))?;
        if steps.pad_square && height != width {
            return Err(invalid(
                "mammo.preprocess",
                &steps_text,
                "pad_square needs a square mammo.input_size",
            ));
        }
        let malignancy_threshold = parse_number(
            "mammo.malignancy_threshold",
            &threshold_text,
            |t| (0.0..=1.0).contains(&t),
            "expected a number in [0, 1]",
        )?;
        let temperature = parse_number(
            "mammo.temperature",
            &temperature_text,
            |t| t > 0.0,
            "expected a positive number",
        )?;
        let ood = parse_ood(
            props.get("mammo.ood_method"),
            props.get("mammo.ood_threshold"),
        )?;
        let precision = match props.get("mammo.precision") {
            Some(text) => text
                .parse()
                .map_err(|why: String| invalid("mammo.precision", text, &why))?,
            None => Precision::Fp32,
        };
        // A file without it is an export from before test-time views: one view, not logged.
        let views = match props.get("mammo.views") {
            Some(text) => text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| invalid("mammo.views", text, "expected a whole number >= 1"))?,
            None => 1,
        };
        let metadata = ModelMetadata {
            labels,
            preprocessing: Preprocessing {
                height,
                width,
                mean,
                std,
                resize,
                steps,
            },
            malignancy_threshold,
            version,
            arch,
            trained_on,
            temperature,
            ood,
            precision,
            views,
        };
        Ok((metadata, defaults))
    }
}

fn invalid(key: &'static str, value: &str, why: &str) -> MetadataError {
    MetadataError::Invalid {
        key,
        value: value.to_string(),
        why: why.to_string(),
    }
}

/// A finite number that passes `valid`.
fn parse_number(
    key: &'static str,
    text: &str,
    valid: impl Fn(f32) -> bool,
    expected: &str,
) -> Result<f32, MetadataError> {
    text.trim()
        .parse::<f32>()
        .ok()
        .filter(|v| v.is_finite() && valid(*v))
        .ok_or_else(|| invalid(key, text, expected))
}

/// The out-of-distribution contract: both properties or neither.
fn parse_ood(
    method: Option<&String>,
    threshold: Option<&String>,
) -> Result<Option<OodContract>, MetadataError> {
    match (method, threshold) {
        (None, None) => Ok(None),
        (Some(method), Some(threshold)) => Ok(Some(OodContract {
            method: method.trim().to_string(),
            threshold: parse_number(
                "mammo.ood_threshold",
                threshold,
                |_| true,
                "expected a number",
            )?,
        })),
        (Some(_), None) => Err(MetadataError::Missing("mammo.ood_threshold")),
        (None, Some(_)) => Err(MetadataError::Missing("mammo.ood_method")),
    }
}

fn parse_labels(text: &str) -> Result<[ClassLabel; 8], MetadataError> {
    let parsed = text
        .split(',')
        .map(|s| s.trim().parse::<ClassLabel>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("mammo.labels", text, &e.to_string()))?;
    let labels: [ClassLabel; 8] = parsed.try_into().map_err(|v: Vec<_>| {
        invalid(
            "mammo.labels",
            text,
            &format!("expected 8 labels, got {}", v.len()),
        )
    })?;
    let mut sorted = labels;
    sorted.sort();
    if sorted != ClassLabel::ALL {
        return Err(invalid(
            "mammo.labels",
            text,
            "each of the eight classes must appear once",
        ));
    }
    Ok(labels)
}

/// `224` (square) or `224,224` / `224x224` (height, width).
fn parse_size(text: &str) -> Result<(u32, u32), MetadataError> {
    let parts: Vec<&str> = text.split([',', 'x']).map(str::trim).collect();
    let nums: Option<Vec<u32>> = parts
        .iter()
        .map(|p| p.parse().ok().filter(|n| (8..=4096).contains(n)))
        .collect();
    match nums.as_deref() {
        Some([side]) => Ok((*side, *side)),
        Some([h, w]) => Ok((*h, *w)),
        _ => Err(invalid(
            "mammo.input_size",
            text,
            "expected `S` or `H,W` with sides in 8..=4096",
        )),
    }
}

fn parse_triple(key: &'static str, text: &str) -> Result<[f32; 3], MetadataError> {
    let nums: Option<Vec<f32>> = text
        .split(',')
        .map(|p| p.trim().parse().ok().filter(|v: &f32| v.is_finite()))
        .collect();
    nums.and_then(|v| v.try_into().ok())
        .ok_or_else(|| invalid(key, text, "expected three comma-separated numbers"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn complete() -> HashMap<String, String> {
        props(&[
            ("mammo.labels", "D1B,D1M,D2B,D2M,D3B,D3M,D4B,D4M"),
            ("mammo.input_size", "224"),
            ("mammo.mean", "0.485,0.456,0.406"),
            ("mammo.std", "0.229,0.224,0.225"),
            ("mammo.resize", "bilinear"),
            ("mammo.malignancy_threshold", "0.31"),
            ("mammo.version", "1.2.0"),
            ("mammo.arch", "efficientnet_b0"),
            ("mammo.trained_on", "dphi"),
            ("mammo.preprocess", "crop_breast,pad_square"),
            ("mammo.temperature", "1.5"),
            ("mammo.ood_method", "maha_early"),
            ("mammo.ood_threshold", "3.25"),
            ("mammo.precision", "int8"),
            ("mammo.views", "2"),
        ])
    }

    #[test]
    fn parses_a_complete_contract() {
        let (m, defaults) = ModelMetadata::from_props(&complete()).unwrap();
        assert!(defaults.is_empty());
        assert_eq!(m.labels, ClassLabel::ALL);
        assert_eq!((m.preprocessing.height, m.preprocessing.width), (224, 224));
        assert_eq!(m.preprocessing.std, [0.229, 0.224, 0.225]);
        assert_eq!(m.malignancy_threshold, 0.31);
        assert_eq!(m.version, "1.2.0");
        assert_eq!(m.preprocessing.steps.names(), ["crop_breast", "pad_square"]);
        assert_eq!(m.temperature, 1.5);
        assert_eq!(
            m.ood,
            Some(OodContract {
                method: "maha_early".into(),
                threshold: 3.25
            })
        );
        assert_eq!(m.precision, Precision::Int8);
        assert_eq!(m.views, 2);
    }

    #[test]
    fn label_order_and_aliases_follow_the_model() {
        let mut p = complete();
        p.insert(
            "mammo.labels".into(),
            "Density4Malignant,D1B,D1M,D2B,D2M,D3B,D3M,D4B".into(),
        );
        let (m, _) = ModelMetadata::from_props(&p).unwrap();
        assert_eq!(m.labels[0].code(), "D4M");
        assert_eq!(m.labels[1].code(), "D1B");
    }

    #[test]
    fn optional_properties_default_with_a_note() {
        let mut p = complete();
        p.remove("mammo.malignancy_threshold");
        p.remove("mammo.version");
        p.remove("mammo.preprocess");
        p.remove("mammo.temperature");
        p.remove("mammo.ood_method");
        p.remove("mammo.ood_threshold");
        p.remove("mammo.precision");
        p.remove("mammo.views");
        let (m, defaults) = ModelMetadata::from_props(&p).unwrap();
        assert_eq!(m.malignancy_threshold, DEFAULT_THRESHOLD);
        assert_eq!(m.precision, Precision::Fp32, "models before INT8 are fp32");
        assert_eq!(m.views, 1, "models before test-time views run one");
        assert_eq!((m.temperature, m.ood), (1.0, None));
        assert_eq!(m.version, "unknown");
        assert_eq!(
            m.preprocessing.steps,
            FullField::default(),
            "no full-field steps"
        );
        assert_eq!(defaults.len(), 4);
    }

    #[test]
    fn required_and_malformed_properties_are_errors() {
        let mut p = complete();
        p.remove("mammo.mean");
        assert_eq!(
            ModelMetadata::from_props(&p).unwrap_err(),
            MetadataError::Missing("mammo.mean")
        );
        for (key, bad) in [
            ("mammo.labels", "D1B,D1M,D2B,D2M,D3B,D3M,D4B"),
            ("mammo.labels", "D1B,D1B,D2B,D2M,D3B,D3M,D4B,D4M"),
            ("mammo.input_size", "big"),
            ("mammo.std", "0.2,0,0.2"),
            ("mammo.mean", "0.4,0.4"),
            ("mammo.resize", "lanczos9"),
            ("mammo.malignancy_threshold", "1.5"),
            ("mammo.preprocess", "crop_breast,rotate"),
            ("mammo.temperature", "0"),
            ("mammo.ood_threshold", "high"),
            ("mammo.precision", "fp16"),
            ("mammo.views", "0"),
            ("mammo.views", "two"),
        ] {
            let mut p = complete();
            p.insert(key.into(), bad.into());
            let err = ModelMetadata::from_props(&p).unwrap_err();
            assert!(err.to_string().contains(key), "{key}={bad}: {err}");
        }
        let mut p = complete();
        p.remove("mammo.ood_threshold");
        assert_eq!(
            ModelMetadata::from_props(&p).unwrap_err(),
            MetadataError::Missing("mammo.ood_threshold")
        );
        let mut p = complete();
        p.insert("mammo.input_size".into(), "256,192".into());
        let err = ModelMetadata::from_props(&p).unwrap_err();
        assert!(
            err.to_string().contains("pad_square needs a square"),
            "{err}"
        );
        p.insert("mammo.preprocess".into(), "crop_breast".into());
        let (m, _) = ModelMetadata::from_props(&p).unwrap();
        assert_eq!((m.preprocessing.height, m.preprocessing.width), (256, 192));
    }
}
