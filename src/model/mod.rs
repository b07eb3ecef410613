//! Meaning of the model's outputs: the metadata contract, labels, softmax, marginals, threshold.

pub mod assessment;
pub mod exam;
pub mod labels;
pub mod metadata;
pub mod postprocess;

pub use assessment::{Assessment, Status};
pub use labels::{ClassLabel, Density, Pathology};
pub use metadata::{ModelMetadata, Precision};
pub use postprocess::{interpret, Malignancy, Prediction};

/// Carried by every answer, JSON or DICOM SR.
pub const NOTICE: &str = "Decision support only, not a diagnosis: this output is for review by a qualified radiologist. \
     The model has not been validated on full-field clinical studies and is not a medical device.";
