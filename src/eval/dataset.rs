//! Image sets on disk: the three labelled layouts (CSV `filename,label`, one folder per class,
//! label prefix in the file name), unlabelled folders, and `families.csv` / `split.csv`; a
//! site's study manifest is read by [`super::manifest`]. The same layouts and label spellings
//! as `training/mammo_train/data.py`.

use crate::imaging::{DicomInfo, Laterality, ViewPosition};
use crate::model::labels::{ClassLabel, Density, UnknownLabel};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// File endings read as images.
const IMAGE_ENDINGS: [&str; 4] = ["jpg", "jpeg", "png", "dcm"];

/// What a set says of an image: its density, whether it is malignant, either, both or
/// neither (a site's records often hold one label and not the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Truth {
    pub density: Option<Density>,
    pub malignant: Option<bool>,
}

impl Truth {
    /// Both labels, from one of the eight classes.
    pub fn of(class: ClassLabel) -> Truth {
        Truth {
            density: Some(class.density()),
            malignant: Some(class.malignant()),
        }
    }

    /// The class, when both labels are known.
    pub fn class(self) -> Option<ClassLabel> {
        let (density, malignant) = (self.density?, self.malignant?);
        Some(ClassLabel::ALL[density.index() * 2 + usize::from(malignant)])
    }

    /// Whether the set gives any label.
    pub fn is_labelled(self) -> bool {
        self.density.is_some() || self.malignant.is_some()
    }
}

/// What a site's manifest row says of an image beyond its labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// The site's pseudonymous patient key: the unit its intervals resample.
    pub patient: String,
    pub study: Option<String>,
    pub laterality: Option<Laterality>,
    pub view: Option<ViewPosition>,
}

/// What is known of an image besides its labels: from the site's manifest, else from the
/// DICOM header. Never a patient attribute of the DICOM: the manifest's pseudonymous key is
/// the only patient identifier an evaluation or a prepared set writes.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub patient: Option<String>,
    pub study: Option<String>,
    pub laterality: Option<String>,
    pub view: Option<String>,
    pub manufacturer: Option<String>,
}

impl Attributes {
    /// The attributes of `item`, read as `dicom` (when it is one).
    pub fn of(item: &Item, dicom: Option<&DicomInfo>) -> Attributes {
        let record = item.record.as_ref();
        Attributes {
            patient: record.map(|r| r.patient.clone()),
            study: record.and_then(|r| r.study.clone()),
            laterality: record
                .and_then(|r| r.laterality)
                .or_else(|| dicom.and_then(|d| d.laterality))
                .map(|l| l.code().to_string()),
            view: record
                .and_then(|r| r.view.as_ref())
                .or_else(|| dicom.and_then(|d| d.view_position.as_ref()))
                .map(|v| v.code().to_string()),
            manufacturer: dicom.and_then(|d| d.manufacturer.clone()),
        }
    }
}

/// One image, with what the set knows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub path: PathBuf,
    /// The file name (or a manifest's `path`), which `families.csv`, `split.csv` and the
    /// predictions CSV key on.
    pub name: String,
    pub truth: Truth,
    /// The manifest row, for a site's set.
    pub record: Option<Record>,
}

/// Which layout a labelled set was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    Csv,
    ClassFolders,
    PrefixedNames,
    /// A site's study manifest (`--manifest`).
    Manifest,
}

/// A set that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{place}: {source}")]
    Label { place: String, source: UnknownLabel },
    #[error("{0} holds no JPEG or PNG images")]
    Empty(PathBuf),
    /// A manifest row that cannot stand: the place (`FILE:LINE`) and what is wrong.
    #[error("{place}: {reason}")]
    Row { place: String, reason: String },
}

pub(crate) fn unreadable(path: &Path, reason: impl ToString) -> DatasetError {
    DatasetError::Unreadable {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_ENDINGS.contains(&e.to_ascii_lowercase().as_str()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| unreadable(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

/// Reads a labelled set in whichever layout `path` is: a CSV file, a folder holding a
/// `train*.csv`, a folder of class folders, or a folder of label-prefixed files.
pub fn read_labelled(path: &Path) -> Result<(Vec<Item>, Layout), DatasetError> {
    if !path.exists() {
        return Err(DatasetError::Missing(path.to_path_buf()));
    }
    if path.is_file() {
        return Ok((read_csv(path)?, Layout::Csv));
    }
    let entries = sorted_entries(path)?;
    let csv = entries.iter().find(|p| {
        let name = file_name(p).to_ascii_lowercase();
        name.starts_with("train") && name.ends_with(".csv")
    });
    let items = if let Some(csv) = csv {
        (read_csv(csv)?, Layout::Csv)
    } else if entries.iter().any(|p| p.is_dir()) {
        (read_class_folders(&entries)?, Layout::ClassFolders)
    } else {
        (read_prefixed(&entries)?, Layout::PrefixedNames)
    };
    if items.0.is_empty() {
        return Err(DatasetError::Empty(path.to_path_buf()));
    }
    Ok(items)
}

/// `filename,label` rows; images beside the CSV, or in its `train/` folder.
fn read_csv(csv_path: &Path) -> Result<Vec<Item>, DatasetError> {
    let mut reader = csv::Reader::from_path(csv_path).map_err(|e| unreadable(csv_path, e))?;
    let headers = reader
        .headers()
        .map_err(|e| unreadable(csv_path, e))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| unreadable(csv_path, "expected a header `filename,label`"))
    };
    let (file_col, label_col) = (column("filename")?, column("label")?);
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| unreadable(csv_path, e))?;
        let (name, label) = (
            record.get(file_col).unwrap_or("").trim(),
            record.get(label_col).unwrap_or("").trim(),
        );
        let label = label
            .parse::<ClassLabel>()
            .map_err(|source| DatasetError::Label {
                place: format!("{}:{}", csv_path.display(), i + 2),
                source,
            })?;
        rows.push((name.to_string(), label));
    }
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let folder = match rows.first() {
        Some((first, _))
            if !base.join(first).exists() && base.join("train").join(first).exists() =>
        {
            base.join("train")
        }
        _ => base.to_path_buf(),
    };
    Ok(rows
        .into_iter()
        .map(|(name, label)| Item {
            path: folder.join(&name),
            name,
            truth: Truth::of(label),
            record: None,
        })
        .collect())
}

fn read_class_folders(entries: &[PathBuf]) -> Result<Vec<Item>, DatasetError> {
    let mut items = Vec::new();
    for folder in entries.iter().filter(|p| p.is_dir()) {
        let label =
            file_name(folder)
                .parse::<ClassLabel>()
                .map_err(|source| DatasetError::Label {
                    place: format!("class folder {}", folder.display()),
                    source,
                })?;
        for path in sorted_entries(folder)?.into_iter().filter(|p| is_image(p)) {
            items.push(Item {
                name: file_name(&path),
                path,
                truth: Truth::of(label),
                record: None,
            });
        }
    }
    Ok(items)
}

/// The longest leading run of `_`/`-`-separated words of the file stem that names a class.
pub fn label_from_name(name: &str) -> Result<ClassLabel, UnknownLabel> {
    let stem = Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().replace('-', "_"))
        .unwrap_or_default();
    let words: Vec<&str> = stem.split('_').collect();
    (1..=words.len())
        .rev()
        .find_map(|n| words[..n].join("_").parse().ok())
        .ok_or_else(|| {
            UnknownLabel(format!(
                "{name} (file name does not start with a class label such as D1B_)"
            ))
        })
}

fn read_prefixed(entries: &[PathBuf]) -> Result<Vec<Item>, DatasetError> {
    entries
        .iter()
        .filter(|p| p.is_file() && is_image(p))
        .map(|path| {
            let name = file_name(path);
            let label = label_from_name(&name).map_err(|source| DatasetError::Label {
                place: format!("{}", path.display()),
                source,
            })?;
            Ok(Item {
                path: path.clone(),
                name,
                truth: Truth::of(label),
                record: None,
            })
        })
        .collect()
}

/// Every image file in a folder (no labels), sorted by name.
pub fn read_unlabelled(dir: &Path) -> Result<Vec<Item>, DatasetError> {
    if !dir.is_dir() {
        return Err(DatasetError::Missing(dir.to_path_buf()));
    }
    let items: Vec<Item> = sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_file() && is_image(p))
        .map(|path| Item {
            name: file_name(&path),
            path,
            truth: Truth::default(),
            record: None,
        })
        .collect();
    if items.is_empty() {
        return Err(DatasetError::Empty(dir.to_path_buf()));
    }
    Ok(items)
}

/// A `families.csv` (`filename,family`) or `split.csv` (`filename,family,fold`): family and
/// fold (when present) by file name.
pub fn read_groups(path: &Path) -> Result<HashMap<String, (String, Option<u32>)>, DatasetError> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| unreadable(path, e))?;
    let headers = reader.headers().map_err(|e| unreadable(path, e))?.clone();
    let find = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (file_col, family_col) = match (find("filename"), find("family")) {
        (Some(f), Some(g)) => (f, g),
        _ => {
            return Err(unreadable(
                path,
                "expected columns `filename,family` (and `fold` in a split)",
            ))
        }
    };
    let fold_col = find("fold");
    let mut groups = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| unreadable(path, e))?;
        let fold = match fold_col.map(|c| record.get(c).unwrap_or("").trim().parse::<u32>()) {
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => return Err(unreadable(path, format!("bad fold: {e}"))),
            None => None,
        };
        let name = record.get(file_col).unwrap_or("").trim().to_string();
        groups.insert(
            name,
            (
                record.get(family_col).unwrap_or("").trim().to_string(),
                fold,
            ),
        );
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_prefixes() {
        assert_eq!(label_from_name("D1B_001.jpg").unwrap().code(), "D1B");
        assert_eq!(
            label_from_name("Density3_Benign-7.png").unwrap().code(),
            "D3B"
        );
        assert_eq!(
            label_from_name("Density4Malignant_x_y.jpg").unwrap().code(),
            "D4M"
        );
        assert!(label_from_name("scan_001.jpg").is_err());
    }
}
