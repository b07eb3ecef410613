//! The domain's vocabulary: breast density, pathology, the eight classes they make, and the
//! label spellings users have.

use std::fmt;
use std::str::FromStr;

/// Breast density category, D1 (almost entirely fatty) to D4 (extremely dense).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Density {
    D1,
    D2,
    D3,
    D4,
}

impl Density {
    /// The four categories, least dense first.
    pub const ALL: [Density; 4] = [Density::D1, Density::D2, Density::D3, Density::D4];

    /// The category at `index` (0 = D1), clamped to D4.
    pub fn from_index(index: usize) -> Density {
        Density::ALL[index.min(3)]
    }

    /// 0 for D1 .. 3 for D4.
    pub fn index(self) -> usize {
        self as usize
    }

    /// `D1`..`D4`.
    pub fn code(self) -> &'static str {
        ["D1", "D2", "D3", "D4"][self.index()]
    }

    /// BI-RADS breast composition letter (5th edition): `A`..`D`.
    pub fn birads(self) -> &'static str {
        ["A", "B", "C", "D"][self.index()]
    }
}

/// Benign or malignant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pathology {
    Benign,
    Malignant,
}

impl Pathology {
    /// `benign` or `malignant`.
    pub fn name(self) -> &'static str {
        match self {
            Pathology::Benign => "benign",
            Pathology::Malignant => "malignant",
        }
    }
}

/// One of the eight classes: breast density crossed with pathology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClassLabel {
    density: Density,
    pathology: Pathology,
}

impl ClassLabel {
    /// All eight classes in canonical order: D1B, D1M, D2B, D2M, D3B, D3M, D4B, D4M.
    pub const ALL: [ClassLabel; 8] = [
        ClassLabel::new(Density::D1, Pathology::Benign),
        ClassLabel::new(Density::D1, Pathology::Malignant),
        ClassLabel::new(Density::D2, Pathology::Benign),
        ClassLabel::new(Density::D2, Pathology::Malignant),
        ClassLabel::new(Density::D3, Pathology::Benign),
        ClassLabel::new(Density::D3, Pathology::Malignant),
        ClassLabel::new(Density::D4, Pathology::Benign),
        ClassLabel::new(Density::D4, Pathology::Malignant),
    ];

    pub const fn new(density: Density, pathology: Pathology) -> Self {
        ClassLabel { density, pathology }
    }

    pub fn density(self) -> Density {
        self.density
    }

    pub fn pathology(self) -> Pathology {
        self.pathology
    }

    /// Whether this class is one of the malignant ones.
    pub fn malignant(self) -> bool {
        self.pathology == Pathology::Malignant
    }

    /// Position in [`ClassLabel::ALL`].
    pub fn index(self) -> usize {
        self.density.index() * 2 + usize::from(self.malignant())
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
            Some(d @ '1'..='4') => Density::from_index(usize::from(d as u8 - b'1')),
            _ => return Err(UnknownLabel(s.to_string())),
        };
        let pathology = match chars.as_str() {
            "b" | "benign" => Pathology::Benign,
            "m" | "malignant" => Pathology::Malignant,
            _ => return Err(UnknownLabel(s.to_string())),
        };
        Ok(ClassLabel::new(density, pathology))
    }
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
            assert_eq!(label.density(), Density::D3);
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
        assert_eq!(Density::D1.birads(), "A");
        assert_eq!(Density::D4.birads(), "D");
        assert!(Density::D4 > Density::D3, "denser compares greater");
    }
}
