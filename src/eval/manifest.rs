//! A site's study manifest: the CSV a site writes from its RIS export to validate or fine-tune
//! the model on its own studies (README, "Validate and fine-tune on your own studies").
//!
//! Columns: `path` (a DICOM, JPEG or PNG file, relative to the manifest) and `patient` (a
//! pseudonymous grouping key) are required; `study`, `laterality` (`L`/`R`), `view` (`CC`,
//! `MLO`, …), `density` (`A`–`D` or `1`–`4`) and `malignant` (`yes`/`no`; a normal screen is
//! `no`) may be left out or left empty on a row. A value that cannot be read, a missing column
//! or an empty `patient` stops the reading with the row's place; a missing file is not an
//! error here (it is reported as unreadable when read, and the run goes on).

use super::dataset::{unreadable, DatasetError, Item, Record, Truth};
use crate::imaging::{Laterality, ViewPosition};
use crate::model::labels::Density;
use std::collections::HashMap;
use std::path::Path;

/// The columns a manifest must have.
const REQUIRED: [&str; 2] = ["path", "patient"];

/// Reads a study manifest; image paths are resolved against the manifest's folder.
pub fn read(manifest: &Path) -> Result<Vec<Item>, DatasetError> {
    if !manifest.is_file() {
        return Err(DatasetError::Missing(manifest.to_path_buf()));
    }
    let mut reader = csv::Reader::from_path(manifest).map_err(|e| unreadable(manifest, e))?;
    let headers = reader
        .headers()
        .map_err(|e| unreadable(manifest, e))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    if let Some(missing) = REQUIRED.iter().find(|c| column(c).is_none()) {
        return Err(unreadable(
            manifest,
            format!(
                "the manifest has no `{missing}` column (it needs `path` and `patient`, and may \
                 have `study`, `laterality`, `view`, `density`, `malignant`)"
            ),
        ));
    }
    let base = manifest.parent().unwrap_or(Path::new("."));
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut items = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let place = format!("{}:{line}", manifest.display());
        let record = record.map_err(|e| unreadable(manifest, e))?;
        let field = |name: &str| {
            column(name)
                .and_then(|c| record.get(c))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let row_error = |reason: String| DatasetError::Row {
            place: place.clone(),
            reason,
        };
        let path = field("path").ok_or_else(|| row_error("the row has no `path`".into()))?;
        let patient = field("patient")
            .ok_or_else(|| row_error(format!("{path}: the row has no `patient` key")))?;
        if let Some(first) = seen.insert(path.to_string(), line) {
            return Err(row_error(format!(
                "{path} is listed again (first on line {first})"
            )));
        }
        let truth = Truth {
            density: field("density")
                .map(density)
                .transpose()
                .map_err(&row_error)?,
            malignant: field("malignant")
                .map(malignant)
                .transpose()
                .map_err(&row_error)?,
        };
        let laterality = field("laterality")
            .map(|l| {
                Laterality::from_code(&l.to_ascii_uppercase())
                    .ok_or_else(|| format!("unknown laterality {l:?} (expected L or R)"))
            })
            .transpose()
            .map_err(&row_error)?;
        items.push(Item {
            path: base.join(path),
            name: path.to_string(),
            truth,
            record: Some(Record {
                patient: patient.to_string(),
                study: field("study").map(str::to_string),
                laterality,
                view: field("view").map(|v| ViewPosition::from_code(&v.to_ascii_uppercase())),
            }),
        });
    }
    if items.is_empty() {
        return Err(DatasetError::Empty(manifest.to_path_buf()));
    }
    Ok(items)
}

/// BI-RADS `A`–`D`, density `1`–`4` (or `D1`–`D4`).
fn density(value: &str) -> Result<Density, String> {
    let code = value.to_ascii_uppercase();
    let index = match code.trim_start_matches('D') {
        "A" | "1" => 0,
        "B" | "2" => 1,
        "C" | "3" => 2,
        "4" => 3,
        "" if code == "D" => 3,
        _ => return Err(format!("unknown density {value:?} (expected A–D or 1–4)")),
    };
    Ok(Density::from_index(index))
}

/// `yes`/`no` (also `true`/`false`, `1`/`0`, `malignant`/`benign`).
fn malignant(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" | "malignant" => Ok(true),
        "no" | "n" | "false" | "0" | "benign" => Ok(false),
        _ => Err(format!(
            "unknown malignant value {value:?} (expected yes or no)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Result<Vec<Item>, DatasetError> {
        let dir = std::env::temp_dir().join(format!(
            "mammo-manifest-{}-{}",
            std::process::id(),
            text.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("site.csv");
        std::fs::write(&path, text).unwrap();
        let read = read(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        read
    }

    #[test]
    fn partial_labels_and_optional_columns() {
        let items = manifest(
            "path,patient,study,laterality,view,density,malignant\n\
             a/1.dcm,P1,S1,L,CC,B,no\n\
             a/2.dcm,P1,S1,r,mlo,,yes\n\
             b/3.png,P2,,,,4,\n",
        )
        .unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].truth.class().map(|c| c.code()), Some("D2B"));
        assert_eq!(items[1].truth.density, None);
        assert_eq!(items[1].truth.malignant, Some(true));
        assert_eq!(items[2].truth.density, Some(Density::D4));
        assert!(items[2].truth.class().is_none());
        let record = items[1].record.as_ref().unwrap();
        assert_eq!(record.laterality, Some(Laterality::Right));
        assert_eq!(record.view, Some(ViewPosition::Mlo));
        assert_eq!(items[1].name, "a/2.dcm");
        assert!(items[1].path.ends_with("a/2.dcm"));
    }

    #[test]
    fn bad_rows_stop_the_reading_and_name_the_row() {
        let no_patient = manifest("path,density\nx.png,A\n").unwrap_err();
        assert!(
            no_patient.to_string().contains("no `patient` column"),
            "{no_patient}"
        );
        let bad_density = manifest("path,patient,density\nx.png,P1,A\ny.png,P2,E\n").unwrap_err();
        assert!(
            bad_density
                .to_string()
                .contains("site.csv:3: unknown density \"E\""),
            "{bad_density}"
        );
        let bad_malignant = manifest("path,patient,malignant\nx.png,P1,maybe\n").unwrap_err();
        assert!(bad_malignant.to_string().contains(":2: unknown malignant"));
        let empty_patient = manifest("path,patient\nx.png,\n").unwrap_err();
        assert!(empty_patient
            .to_string()
            .contains(":2: x.png: the row has no `patient`"));
        let repeated = manifest("path,patient\nx.png,P1\nx.png,P2\n").unwrap_err();
        assert!(repeated
            .to_string()
            .contains(":3: x.png is listed again (first on line 2)"));
    }
}
