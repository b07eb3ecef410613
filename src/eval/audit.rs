//! Data audit before any metric: class balance and exact duplicates (same decoded pixels)
//! within a set and across two sets.

use super::dataset::Item;
use crate::imaging::{decode, DecodeLimits};
use crate::model::ClassLabel;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// A class under this share of the images gets a warning (the DPhi set's own advice for D4M).
pub const MIN_CLASS_SHARE: f64 = 0.10;
/// A class resting on fewer families than this gets a warning.
pub const MIN_FAMILIES: usize = 3;
/// Examples listed per finding.
const EXAMPLES: usize = 5;

/// One class's count and what is worrying about it.
#[derive(Debug, Clone, Serialize)]
pub struct ClassCount {
    pub label: String,
    pub images: usize,
    pub share: f64,
    /// Distinct families, when families are known.
    pub families: Option<usize>,
    pub warnings: Vec<String>,
}

/// Identical decoded images inside one set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Duplicates {
    /// Groups of two or more files with the same pixels.
    pub groups: usize,
    /// Files beyond the first of each group.
    pub extra_copies: usize,
    /// Groups whose files carry different labels.
    pub conflicting_labels: usize,
    pub examples: Vec<Vec<String>>,
}

/// Images of a second set whose pixels also occur in the first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overlap {
    pub other_images: usize,
    pub also_in_this_set: usize,
    pub examples: Vec<(String, String)>,
}

/// A file that could not be decoded.
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub name: String,
    pub error: String,
}

/// Pixel hashes of a set's readable images, and its unreadable files.
pub struct Fingerprints {
    pub hashes: Vec<Option<String>>,
    pub unreadable: Vec<Unreadable>,
}

/// SHA-256 of each image's decoded grey pixels (with its size), decoded in parallel.
pub fn fingerprints(items: &[Item], limits: &DecodeLimits, threads: usize) -> Fingerprints {
    let hash = |item: &Item| -> Result<String, String> {
        let bytes = std::fs::read(&item.path).map_err(|e| e.to_string())?;
        let grey = decode(&bytes.into(), limits)
            .map_err(|e| e.to_string())?
            .grey;
        let mut hasher = Sha256::new();
        hasher.update(format!("{}x{}:", grey.width, grey.height));
        hasher.update(bytemuck::cast_slice::<f32, u8>(&grey.pixels));
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    };
    let results = super::parallel_map(items, threads, hash);
    let mut unreadable = Vec::new();
    let hashes = results
        .into_iter()
        .zip(items)
        .map(|(r, item)| {
            r.map_err(|error| {
                unreadable.push(Unreadable {
                    name: item.name.clone(),
                    error,
                })
            })
            .ok()
        })
        .collect();
    Fingerprints { hashes, unreadable }
}

/// Counts per class with warnings for rare classes and classes resting on few families; none
/// when no image has both labels (a site's set may hold density or malignancy alone).
pub fn class_counts(items: &[Item], families: Option<&HashMap<String, String>>) -> Vec<ClassCount> {
    if items.iter().all(|i| i.truth.class().is_none()) {
        return Vec::new();
    }
    let total = items.len().max(1);
    ClassLabel::ALL
        .iter()
        .map(|&label| {
            let members: Vec<&Item> = items
                .iter()
                .filter(|i| i.truth.class() == Some(label))
                .collect();
            let share = members.len() as f64 / total as f64;
            let families = families.map(|f| {
                let mut set: Vec<&String> = members.iter().filter_map(|i| f.get(&i.name)).collect();
                set.sort();
                set.dedup();
                set.len()
            });
            let mut warnings = Vec::new();
            if share < MIN_CLASS_SHARE {
                warnings.push(format!(
                    "{:.1}% of images (under {:.0}%): its metrics rest on few examples",
                    share * 100.0,
                    MIN_CLASS_SHARE * 100.0
                ));
            }
            if let Some(n) = families.filter(|&n| n < MIN_FAMILIES) {
                warnings.push(format!(
                    "only {n} famil{} of near-duplicates: effectively {n} example(s)",
                    if n == 1 { "y" } else { "ies" }
                ));
            }
            ClassCount {
                label: label.code().to_string(),
                images: members.len(),
                share,
                families,
                warnings,
            }
        })
        .collect()
}

/// Exact duplicates within one set.
pub fn duplicates(items: &[Item], hashes: &[Option<String>]) -> Duplicates {
    let mut by_hash: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    for (item, hash) in items.iter().zip(hashes) {
        if let Some(h) = hash {
            by_hash.entry(h).or_default().push(item);
        }
    }
    let groups: Vec<&Vec<&Item>> = by_hash.values().filter(|g| g.len() > 1).collect();
    Duplicates {
        groups: groups.len(),
        extra_copies: groups.iter().map(|g| g.len() - 1).sum(),
        conflicting_labels: groups
            .iter()
            .filter(|g| g.iter().any(|i| i.truth != g[0].truth))
            .count(),
        examples: groups
            .iter()
            .take(EXAMPLES)
            .map(|g| g.iter().map(|i| i.name.clone()).collect())
            .collect(),
    }
}

/// Images of `other` whose pixels occur in `items`.
pub fn overlap(
    items: &[Item],
    hashes: &[Option<String>],
    other: &[Item],
    other_hashes: &[Option<String>],
) -> Overlap {
    let ours: HashMap<&str, &Item> = items
        .iter()
        .zip(hashes)
        .filter_map(|(i, h)| h.as_deref().map(|h| (h, i)))
        .collect();
    let matches: Vec<(String, String)> = other
        .iter()
        .zip(other_hashes)
        .filter_map(|(o, h)| {
            h.as_deref()
                .and_then(|h| ours.get(h))
                .map(|i| (o.name.clone(), i.name.clone()))
        })
        .collect();
    Overlap {
        other_images: other.len(),
        also_in_this_set: matches.len(),
        examples: matches.into_iter().take(EXAMPLES).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::dataset::Truth;
    use std::path::PathBuf;

    fn item(name: &str, label: &str) -> Item {
        Item {
            path: PathBuf::from(name),
            name: name.into(),
            truth: Truth::of(label.parse().unwrap()),
            record: None,
        }
    }

    #[test]
    fn duplicates_and_overlap_by_hash() {
        let items = [
            item("a", "D1B"),
            item("b", "D1B"),
            item("c", "D2M"),
            item("d", "D3B"),
        ];
        let hashes = [
            Some("x".to_string()),
            Some("x".into()),
            Some("y".into()),
            Some("x".into()),
        ];
        let d = duplicates(&items, &hashes);
        assert_eq!((d.groups, d.extra_copies, d.conflicting_labels), (1, 2, 1));
        assert_eq!(d.examples, vec![vec!["a", "b", "d"]]);
        let other = [item("t1", "D1B"), item("t2", "D1B")];
        let o = overlap(
            &items,
            &hashes,
            &other,
            &[Some("y".into()), Some("z".into())],
        );
        assert_eq!((o.other_images, o.also_in_this_set), (2, 1));
        assert_eq!(o.examples, vec![("t1".to_string(), "c".to_string())]);
    }

    #[test]
    fn rare_classes_and_few_families_are_flagged() {
        let mut items: Vec<Item> = (0..19).map(|i| item(&format!("m{i}"), "D2M")).collect();
        items.push(item("rare", "D4M"));
        let families: HashMap<String, String> = items
            .iter()
            .enumerate()
            .map(|(n, i)| (i.name.clone(), format!("f{}", n % 4)))
            .collect();
        let counts = class_counts(&items, Some(&families));
        let d4m = counts.iter().find(|c| c.label == "D4M").unwrap();
        assert_eq!(d4m.images, 1);
        assert_eq!(d4m.warnings.len(), 2, "{:?}", d4m.warnings);
        let d2m = counts.iter().find(|c| c.label == "D2M").unwrap();
        assert!(d2m.warnings.is_empty(), "{:?}", d2m.warnings);
    }
}
