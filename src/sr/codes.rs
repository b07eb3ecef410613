//! The coded concepts of our SR, with where they come from (PS3.16 templates and context
//! groups; the choice is explained in docs/dicom-sr.md).

use super::content::Code;
use crate::imaging::Laterality;
use crate::model::labels::{Density, Pathology};

/// TID 1500 root.
pub const MEASUREMENT_REPORT: Code = Code::new("126000", "DCM", "Imaging Measurement Report");
/// TID 1204.
pub const LANGUAGE: Code = Code::new("121049", "DCM", "Language of Content Item and Descendants");
pub const ENGLISH_US: Code = Code::new("en-US", "RFC5646", "English (United States)");
/// TID 1002 / TID 1004: the observer is a device, the model.
pub const OBSERVER_TYPE: Code = Code::new("121005", "DCM", "Observer Type");
pub const DEVICE: Code = Code::new("121007", "DCM", "Device");
pub const DEVICE_OBSERVER_UID: Code = Code::new("121012", "DCM", "Device Observer UID");
pub const DEVICE_OBSERVER_NAME: Code = Code::new("121013", "DCM", "Device Observer Name");
pub const DEVICE_OBSERVER_MANUFACTURER: Code =
    Code::new("121014", "DCM", "Device Observer Manufacturer");
pub const DEVICE_OBSERVER_MODEL_NAME: Code =
    Code::new("121015", "DCM", "Device Observer Model Name");
/// TID 1500 row 4, values from CID 6050 "Breast Procedure Reported".
pub const PROCEDURE_REPORTED: Code = Code::new("121058", "DCM", "Procedure reported");
pub const BILATERAL_MAMMOGRAM: Code = Code::new("36626-0", "LN", "breast - bilateral mammogram");
pub const LEFT_MAMMOGRAM: Code = Code::new("36627-8", "LN", "breast - left mammogram");
pub const RIGHT_MAMMOGRAM: Code = Code::new("37774-7", "LN", "breast - right mammogram");
pub const UNILATERAL_MAMMOGRAM: Code = Code::new("46339-8", "LN", "breast - unilateral mammogram");
/// TID 1600 / 1601.
pub const IMAGE_LIBRARY: Code = Code::new("111028", "DCM", "Image Library");
pub const IMAGE_LIBRARY_GROUP: Code = Code::new("126200", "DCM", "Image Library Group");
pub const IMAGE_LATERALITY: Code = Code::new("111027", "DCM", "Image Laterality");
/// TID 1500 / TID 1501.
pub const IMAGING_MEASUREMENTS: Code = Code::new("126010", "DCM", "Imaging Measurements");
pub const MEASUREMENT_GROUP: Code = Code::new("125007", "DCM", "Measurement Group");
pub const TRACKING_IDENTIFIER: Code = Code::new("112039", "DCM", "Tracking Identifier");
pub const TRACKING_UID: Code = Code::new("112040", "DCM", "Tracking Unique Identifier");
pub const FINDING_SITE: Code = Code::new("363698007", "SCT", "Finding Site");
pub const BREAST: Code = Code::new("76752008", "SCT", "Breast");
/// CID 244 "Laterality".
pub const LATERALITY: Code = Code::new("272741003", "SCT", "Laterality");
pub const SOURCE_OF_MEASUREMENT: Code = Code::new("121112", "DCM", "Source of Measurement");
pub const QUALITATIVE_EVALUATIONS: Code = Code::new("C0034375", "UMLS", "Qualitative Evaluations");
pub const COMMENT: Code = Code::new("121106", "DCM", "Comment");
/// TID 4019 "Algorithm Identification".
pub const ALGORITHM_NAME: Code = Code::new("111001", "DCM", "Algorithm Name");
pub const ALGORITHM_VERSION: Code = Code::new("111003", "DCM", "Algorithm Version");
pub const ALGORITHM_PARAMETERS: Code = Code::new("111002", "DCM", "Algorithm Parameters");
/// As in TID 4005, in percent (0–100).
pub const PROBABILITY_OF_CANCER: Code = Code::new("111047", "DCM", "Probability of cancer");
pub const PERCENT: Code = Code::new("%", "UCUM", "Percent");
/// CID 6000 "Overall Breast Composition" under this concept.
pub const BREAST_COMPOSITION: Code = Code::new("129715009", "SCT", "Breast composition");

/// Our private coding scheme, declared in the SOP Common Module's Coding Scheme Identification
/// Sequence: no standard concept names a model's call at its operating threshold or its
/// out-of-distribution verdict.
pub const PRIVATE_SCHEME: &str = "99MAMMOSERVE";
pub const MALIGNANCY_CALL: Code = Code::new(
    "MALIGNANCY-CALL",
    PRIVATE_SCHEME,
    "Malignancy call at the model operating threshold",
);
pub const ASSESSMENT: Code = Code::new("ASSESSMENT", PRIVATE_SCHEME, "AI assessment status");
pub const ASSESSED: Code = Code::new(
    "ASSESSED",
    PRIVATE_SCHEME,
    "Assessed: image like the training data",
);
pub const NOT_ASSESSABLE: Code = Code::new(
    "NOT-ASSESSABLE",
    PRIVATE_SCHEME,
    "Not assessable: unlike the training data, do not use results",
);

/// The BI-RADS composition category of a density (CID 6000).
pub fn composition(density: Density) -> Code {
    [
        Code::new("129716005", "SCT", "Almost entirely fat"),
        Code::new("129717001", "SCT", "Scattered fibroglandular densities"),
        Code::new("129718006", "SCT", "Heterogeneously dense"),
        Code::new("129719003", "SCT", "Extremely dense"),
    ][density.index()]
}

/// SNOMED CT's benign and malignant qualifiers (as in CID 6063).
pub fn pathology(call: Pathology) -> Code {
    match call {
        Pathology::Malignant => Code::new("21594007", "SCT", "Malignant"),
        Pathology::Benign => Code::new("30807003", "SCT", "Benign"),
    }
}

/// CID 244 "Laterality".
pub fn side(laterality: Laterality) -> Code {
    match laterality {
        Laterality::Left => Code::new("7771000", "SCT", "Left"),
        Laterality::Right => Code::new("24028007", "SCT", "Right"),
    }
}
