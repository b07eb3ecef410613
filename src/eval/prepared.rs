//! Prepared images: the grey plane the model sees (decoded, grey-mapped, reduced, through the
//! full-field steps and the resize; before normalisation) as 16-bit grey PNGs, with a manifest,
//! so that training reads images made by the server's own preprocessing (`mammo-eval
//! prepare`). A value v in [0, 1] is stored as round(v × 65535): read back within half a
//! 16-bit step (1/131070) of what the server computed.

use crate::eval::dataset::{Attributes, Item};
use crate::imaging::{self, DecodeLimits, DicomInfo, Preprocessing};
use bytes::Bytes;
use image::{ImageBuffer, Luma};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The largest difference between a plane and the one read back from its PNG: half a 16-bit
/// step, and f32 rounding.
pub const PRECISION: f32 = 0.5 / 65535.0 + 1e-7;

/// One image written.
#[derive(Debug, Clone)]
pub struct Written {
    /// The PNG, relative to the output folder.
    pub path: PathBuf,
    pub item: Item,
    pub dicom: Option<DicomInfo>,
    /// SHA-256 of the source file: byte-identical copies are found by it.
    pub sha256: String,
}

/// Prepares `item`, the `index`-th of its set, with `preprocessing` and writes it to
/// `out/images/INDEX-NAME.png` (the index keeps names from two class folders apart; a
/// manifest's folders become `_`).
pub fn prepare(
    index: usize,
    item: &Item,
    preprocessing: &Preprocessing,
    limits: &DecodeLimits,
    out: &Path,
) -> Result<Written, String> {
    let bytes = std::fs::read(&item.path).map_err(|e| format!("cannot read the file: {e}"))?;
    let sha256 = format!("{:x}", Sha256::digest(&bytes));
    let (plane, dicom) = imaging::model_plane(&Bytes::from(bytes), limits, preprocessing)
        .map_err(|e| e.to_string())?;
    let flat = item.name.replace(['/', '\\'], "_");
    let path = PathBuf::from("images").join(format!("{index:06}-{flat}.png"));
    to_png(&plane, preprocessing.width, preprocessing.height)
        .save(out.join(&path))
        .map_err(|e| e.to_string())?;
    Ok(Written {
        path,
        item: item.clone(),
        dicom,
        sha256,
    })
}

/// A plane as a 16-bit grey image.
pub fn to_png(plane: &[f32], width: u32, height: u32) -> ImageBuffer<Luma<u16>, Vec<u16>> {
    let values = plane
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16)
        .collect();
    ImageBuffer::from_raw(width, height, values).expect("a plane has width × height values")
}

/// A prepared PNG's plane, values in [0, 1].
pub fn read_png(path: &Path) -> Result<(Vec<f32>, u32, u32), String> {
    let image = image::open(path).map_err(|e| e.to_string())?.into_luma16();
    let (width, height) = image.dimensions();
    let plane = image
        .into_raw()
        .into_iter()
        .map(|v| f32::from(v) / 65535.0)
        .collect();
    Ok((plane, width, height))
}

/// The columns of a prepared set's `manifest.csv`, which training reads
/// (`training/mammo_train/data.py`): the PNG (relative to the manifest), the image's name (the
/// key of split files and site manifests), the source file (absolute) and its SHA-256, the
/// labels it has (`label` only when both are known; `density` as BI-RADS A–D; `malignant`
/// yes/no), and the manifest's patient, study, laterality and view, else the DICOM's, and the
/// DICOM's manufacturer. No patient attribute of a DICOM is written.
pub const MANIFEST_COLUMNS: [&str; 12] = [
    "path",
    "name",
    "source",
    "sha256",
    "label",
    "density",
    "malignant",
    "patient",
    "study",
    "laterality",
    "view",
    "manufacturer",
];

/// The manifest of what was written: one row per image, paths relative to the manifest.
pub fn write_manifest(path: &Path, written: &[Written]) -> std::io::Result<()> {
    let mut csv = csv::Writer::from_path(path)?;
    csv.write_record(MANIFEST_COLUMNS)?;
    for w in written {
        let a = Attributes::of(&w.item, w.dicom.as_ref());
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let truth = w.item.truth;
        let source = std::fs::canonicalize(&w.item.path).unwrap_or_else(|_| w.item.path.clone());
        csv.write_record([
            w.path.to_string_lossy().as_ref(),
            &w.item.name,
            source.to_string_lossy().as_ref(),
            &w.sha256,
            truth.class().map_or("", |l| l.code()),
            truth.density.map_or("", |d| d.birads()),
            truth.malignant.map_or("", |m| if m { "yes" } else { "no" }),
            &text(&a.patient),
            &text(&a.study),
            &text(&a.laterality),
            &text(&a.view),
            &text(&a.manufacturer),
        ])?;
    }
    csv.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plane_survives_its_png_within_the_stated_precision() {
        let plane: Vec<f32> = (0..64).map(|i| i as f32 / 63.0).collect();
        let path = std::env::temp_dir().join(format!("mammo-prepared-{}.png", std::process::id()));
        to_png(&plane, 8, 8).save(&path).unwrap();
        let (back, w, h) = read_png(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!((w, h), (8, 8));
        for (a, b) in plane.iter().zip(&back) {
            assert!((a - b).abs() <= PRECISION, "{a} {b}");
        }
    }
}
