//! The eight classes, their density and malignancy parts, and the label spellings users have.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// One of the eight classes: breast density 1–4 crossed with benign/malignant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ClassLabel {
    density: u8,
    malignant: bool,
}

impl ClassLabel {
    /// All eight classes in canonical order: D1B, D1M, D2B, D2M, D3B, D3M, D4B, D4M.
    pub const ALL: [ClassLabel; 8] = [
        ClassLabel::new(1, false),
        ClassLabel::new(1, true),
        ClassLabel::new(2, false),
        ClassLabel::new(2, true),
        ClassLabel::new(3, false),
        ClassLabel::new(3, true),
        ClassLabel::new(4, false),
        ClassLabel::new(4, true),
    ];

    const fn new(density: u8, malignant: bool) -> Self {
        ClassLabel { density, malignant }
    }

    /// Density 1..=4.
    pub fn density(self) -> u8 {
        self.density
    }

    /// Whether this class is one of the malignant ones.
    pub fn malignant(self) -> bool {
        self.malignant
    }

    /// Position in [`ClassLabel::ALL`].
    pub fn index(self) -> usize {
        usize::from(self.density - 1) * 2 + usize::from(self.malignant)
    }

    /// Short code such as `D3B`.
    pub fn code(self) -> &'static str {
        const CODES: [&str; 8] = ["D1B", "D1M", "D2B", "D2M", "D3B", "D3M", "D4B", "D4M"];
        CODES[self.index()]
    }
}

impl fmt::Display for ClassLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A label that names none of the eight classes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown class label {0:?}: expected D1B..D4M, Density1Benign..Density4Malignant or Density1_Benign-style names")]
pub struct UnknownLabel(pub String);

impl FromStr for ClassLabel {
    type Err = UnknownLabel;

    /// Accepts `D3B`, `Density3Benign`, `Density3_Benign`, `density-3-malignant` and the like,
    /// case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let folded: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let rest = folded
            .strip_prefix("density")
            .or_else(|| folded.strip_prefix('d'))
            .ok_or_else(|| UnknownLabel(s.to_string()))?;
        let mut chars = rest.chars();
        let density = match chars.next() {
            Some(d @ '1'..='4') => d as u8 - b'0',
            _ => return Err(UnknownLabel(s.to_string())),
        };
        let malignant = match chars.as_str() {
            "b" | "benign" => false,
            "m" | "malignant" => true,
            _ => return Err(UnknownLabel(s.to_string())),
        };
        Ok(ClassLabel::new(density, malignant))
    }
}

/// BI-RADS breast composition letter for a density 1..=4.
pub fn birads_letter(density: u8) -> &'static str {
    ["A", "B", "C", "D"][usize::from(density.clamp(1, 4) - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_name_the_same_class() {
        for s in [
            "D3M",
            "d3m",
            "Density3Malignant",
            "Density3_Malignant",
            "density-3-malignant",
        ] {
            let label: ClassLabel = s.parse().unwrap();
            assert_eq!(label.code(), "D3M", "{s}");
            assert_eq!(label.density(), 3);
            assert!(label.malignant());
        }
        assert_eq!(
            "Density1Benign".parse::<ClassLabel>().unwrap().code(),
            "D1B"
        );
    }

    #[test]
    fn unknown_labels_are_errors() {
        for s in ["", "D5B", "D0M", "Density3", "D3X", "Benign", "D3Bx"] {
            assert!(s.parse::<ClassLabel>().is_err(), "{s:?} parsed");
        }
    }

    #[test]
    fn index_matches_canonical_order() {
        for (i, label) in ClassLabel::ALL.iter().enumerate() {
            assert_eq!(label.index(), i);
            assert_eq!(label.code().parse::<ClassLabel>().unwrap(), *label);
        }
        assert_eq!(birads_letter(1), "A");
        assert_eq!(birads_letter(4), "D");
    }
}
