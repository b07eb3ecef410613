//! What an image shows: which breast, from which direction.

/// Which breast an image shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Laterality {
    Left,
    Right,
}

impl Laterality {
    /// `L` or `R` (DICOM code string); anything else (U, B, empty) is not one breast.
    pub fn from_code(code: &str) -> Option<Self> {
        match code.trim() {
            "L" => Some(Laterality::Left),
            "R" => Some(Laterality::Right),
            _ => None,
        }
    }

    /// `L` or `R`.
    pub fn code(self) -> &'static str {
        match self {
            Laterality::Left => "L",
            Laterality::Right => "R",
        }
    }
}

/// The projection of a mammogram (View Position (0018,5101)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ViewPosition {
    /// Cranio-caudal.
    Cc,
    /// Medio-lateral oblique.
    Mlo,
    /// Any other code DICOM allows (ML, LM, XCCL, ...), kept as sent.
    Other(String),
}

impl ViewPosition {
    /// From a View Position code string.
    pub fn from_code(code: &str) -> Self {
        match code.trim() {
            "CC" => ViewPosition::Cc,
            "MLO" => ViewPosition::Mlo,
            other => ViewPosition::Other(other.to_string()),
        }
    }

    /// The code string, as DICOM writes it.
    pub fn code(&self) -> &str {
        match self {
            ViewPosition::Cc => "CC",
            ViewPosition::Mlo => "MLO",
            ViewPosition::Other(code) => code,
        }
    }
}
