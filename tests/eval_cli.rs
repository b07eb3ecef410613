//! `mammo-eval` end to end on fixture images: the three layouts, the audit on planted
//! duplicates, evaluate's JSON and CSV agreeing with each other, predict, and its errors.

mod common;

use common::*;
use mammo_serve::eval::dataset::{read_labelled, Layout};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mammo-eval-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn long_label(code: &str) -> String {
    format!(
        "Density{}{}",
        &code[1..2],
        if code.ends_with('B') {
            "Benign"
        } else {
            "Malignant"
        }
    )
}

/// The eight class fixtures as a CSV set (plus extra `filename,label` lines).
fn csv_set(name: &str, extra: &[(&str, &[u8], &str)]) -> PathBuf {
    let dir = temp_dir(name);
    let mut csv = String::from("filename,label\n");
    for f in CLASS_FIXTURES {
        std::fs::write(dir.join(f), fixture(f)).unwrap();
        csv += &format!("{f},{}\n", long_label(&f[..3].to_uppercase()));
    }
    for (file, bytes, label) in extra {
        std::fs::write(dir.join(file), bytes).unwrap();
        csv += &format!("{file},{label}\n");
    }
    std::fs::write(dir.join("Training_set.csv"), csv).unwrap();
    dir
}

fn eval_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mammo-eval"));
    command.env("ORT_DYLIB_PATH", ort_lib());
    command
}

/// `mammo-eval evaluate` of the set at `data` with the test model, writing into `out`.
fn evaluate(data: &Path, out: &Path) -> std::process::Output {
    with_test_model("evaluate", "--data", data, out)
}

/// `mammo-eval SUBCOMMAND SET_FLAG SET --out OUT --model` the test model.
fn with_test_model(
    subcommand: &str,
    set_flag: &str,
    set: &Path,
    out: &Path,
) -> std::process::Output {
    eval_command()
        .args([subcommand, set_flag])
        .arg(set)
        .arg("--out")
        .arg(out)
        .arg("--model")
        .arg(test_model())
        .output()
        .unwrap()
}

fn pairs(path: &Path) -> Vec<(String, String)> {
    let (items, _) = read_labelled(path).unwrap();
    let mut pairs: Vec<(String, String)> = items
        .iter()
        .map(|i| (i.name.clone(), i.truth.class().unwrap().code().to_string()))
        .collect();
    pairs.sort();
    pairs
}

#[test]
fn the_three_layouts_read_the_same_labels() {
    let csv = csv_set("layout-csv", &[]);
    let folders = temp_dir("layout-folders");
    let prefixed = temp_dir("layout-prefixed");
    let mut expected = Vec::new();
    for (i, f) in CLASS_FIXTURES.iter().enumerate() {
        let code = f[..3].to_uppercase();
        let folder = folders.join(if i % 2 == 0 {
            code.clone()
        } else {
            long_label(&code)
        });
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(f), fixture(f)).unwrap();
        std::fs::write(prefixed.join(format!("{code}_{f}")), fixture(f)).unwrap();
        expected.push((f.to_string(), code));
    }
    expected.sort();
    assert_eq!(pairs(&csv.join("Training_set.csv")), expected);
    assert_eq!(read_labelled(&csv).unwrap().1, Layout::Csv);
    assert_eq!(pairs(&folders), expected);
    assert_eq!(read_labelled(&folders).unwrap().1, Layout::ClassFolders);
    let prefixed_pairs: Vec<String> = pairs(&prefixed).into_iter().map(|(_, l)| l).collect();
    assert_eq!(
        prefixed_pairs,
        expected.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>()
    );
    assert_eq!(read_labelled(&prefixed).unwrap().1, Layout::PrefixedNames);
}

#[test]
fn audit_finds_planted_duplicates_within_and_across_sets() {
    // A byte copy, and a PNG re-encoding of a JPEG's decoded pixels (other bytes, same pixels).
    let jpeg = fixture("d2m_Image_9.jpg");
    let decoded = image::load_from_memory(&jpeg).unwrap();
    let mut png = Vec::new();
    decoded
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let set = csv_set(
        "audit",
        &[
            ("copy.jpg", &fixture("d1b_Image_2.jpg"), "D1B"),
            ("reencoded.png", &png, "Density2Malignant"),
        ],
    );
    let other = temp_dir("audit-other");
    std::fs::write(other.join("t1.jpg"), fixture("d4m_Image_83.jpg")).unwrap();
    std::fs::write(other.join("t2.png"), fixture("variant_grey8.png")).unwrap();

    let output = eval_command()
        .args(["audit", "--data"])
        .arg(&set)
        .arg("--against")
        .arg(&other)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("2 groups, 2 extra copies, 0 groups with conflicting labels"),
        "{stdout}"
    );
    assert!(
        stdout.contains("d2m_Image_9.jpg = reencoded.png")
            || stdout.contains("reencoded.png = d2m_Image_9.jpg"),
        "{stdout}"
    );
    assert!(stdout.contains("1 of its 2 images also occur"), "{stdout}");
}

#[test]
fn evaluate_writes_json_and_csv_that_agree_and_counts_unreadable_files() {
    let set = csv_set("evaluate", &[("broken.jpg", &corrupt_jpeg(), "D1M")]);
    let out = temp_dir("evaluate-out");
    let output = evaluate(&set, &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(2),
        "unreadable files make a non-zero exit:\n{stdout}"
    );
    assert!(stdout.contains("unreadable: broken.jpg"), "{stdout}");

    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["images_listed"], 9);
    assert_eq!(metrics["images_evaluated"], 8);
    assert_eq!(metrics["unreadable"][0]["name"], "broken.jpg");
    assert_eq!(
        metrics["model"]["sha256"],
        sha256_hex(&test_model()).as_str()
    );
    assert_eq!(metrics["layout"], "csv");

    let mut reader = csv::Reader::from_path(out.join("predictions.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 8);
    let correct = rows
        .iter()
        .filter(|r| r[col("label")] == r[col("predicted")])
        .count() as f64;
    let accuracy = metrics["metrics"]["classes"]["accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - correct / 8.0).abs() < 1e-12,
        "JSON accuracy {accuracy} vs CSV {correct}/8"
    );
    let confusion: u64 = metrics["metrics"]["classes"]["confusion"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(confusion, 8);
    // The report shows the same numbers and every figure.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains(&format!("<td>{accuracy:.3} [")),
        "report accuracy with its interval"
    );
    assert!(html.contains("9 listed, 8 evaluated, 1 unreadable"));
    assert!(html.contains("unreadable: broken.jpg"));
    assert_eq!(
        html.matches("<svg").count(),
        7,
        "three confusion matrices, ROC, two reliability diagrams, precision-recall"
    );
    let malignancy = &metrics["metrics"]["malignancy"];
    for key in ["binary_ece", "brier", "average_precision"] {
        assert!(malignancy[key].is_number(), "{key} in metrics.json");
    }
    assert_eq!(
        metrics["assessment"]["assessed"], 8,
        "a model without a detector"
    );
    assert_eq!(
        html.matches("<img").count(),
        8,
        "every evaluated image is an example here"
    );
    for row in &rows {
        assert_eq!(&row[col("assessment")], "assessed");
        let p: Vec<f64> = (col("p_D1B")..=col("p_D4M"))
            .map(|i| row[i].parse().unwrap())
            .collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        let malignant: f64 = (0..4).map(|d| p[2 * d + 1]).sum();
        let reported: f64 = row[col("malignancy_probability")].parse().unwrap();
        assert!((malignant - reported).abs() < 1e-5);
    }
}

#[test]
fn predict_writes_a_row_per_image() {
    let dir = temp_dir("predict");
    for f in &CLASS_FIXTURES[..3] {
        std::fs::write(dir.join(f), fixture(f)).unwrap();
    }
    let out = dir.join("predictions.csv");
    let status = eval_command()
        .args(["predict", "--data"])
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .arg("--model")
        .arg(test_model())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 4);
    assert!(text.starts_with(
        "filename,patient,study,laterality,view,manufacturer,label,true_density,true_malignant,\
         predicted,density,birads,malignancy_probability"
    ));
}

#[test]
fn missing_folders_and_unknown_labels_fail_clearly() {
    let output = eval_command()
        .args(["evaluate", "--data", "/nonexistent/set", "--out", "/tmp/x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/set does not exist"));
    let set = csv_set(
        "bad-label",
        &[("odd.jpg", &fixture("d1b_Image_2.jpg"), "Calcified")],
    );
    let output = eval_command()
        .args(["audit", "--data"])
        .arg(&set)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("Training_set.csv:10") && stderr.contains("Calcified"),
        "{stderr}"
    );
}

#[test]
fn dicom_files_are_evaluated_through_the_same_imaging_path() {
    let dir = temp_dir("dicom");
    std::fs::write(dir.join("D3B_mg_rle.dcm"), fixture("dicom/mg_rle.dcm")).unwrap();
    std::fs::write(dir.join("D3B_jpeg.jpg"), fixture("d3b_Image_1.jpg")).unwrap();
    assert_eq!(
        pairs(&dir),
        [
            ("D3B_jpeg.jpg".to_string(), "D3B".to_string()),
            ("D3B_mg_rle.dcm".to_string(), "D3B".to_string())
        ]
    );
    let out = temp_dir("dicom-out");
    let output = evaluate(&dir, &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["images_evaluated"], 2);
}

#[test]
fn prepare_writes_each_image_as_the_server_feeds_it_to_the_model() {
    use mammo_serve::eval::prepared::{read_png, PRECISION};
    use mammo_serve::imaging::{self, DecodeLimits};
    let data = csv_set(
        "prepare",
        &[("mg_rle.dcm", &fixture("dicom/mg_rle.dcm"), "Density3Benign")],
    );
    let out = temp_dir("prepare-out");
    let output = eval_command()
        .args(["prepare", "--data"])
        .arg(data.join("Training_set.csv"))
        .arg("--out")
        .arg(&out)
        .arg("--model")
        .arg(test_model())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let preprocessing = full_field();
    let mut manifest = csv::Reader::from_path(out.join("manifest.csv")).unwrap();
    let header = manifest.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = manifest.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), CLASS_FIXTURES.len() + 1, "every image written");
    for row in &rows {
        let (path, source, label) = (&row[col("path")], &row[col("name")], &row[col("label")]);
        let bytes = std::fs::read(data.join(source)).unwrap();
        assert_eq!(
            row[col("sha256")],
            sha256_hex(&data.join(source)),
            "{source}: the source's digest"
        );
        let (expected, _) =
            imaging::model_plane(&bytes.into(), &DecodeLimits::default(), &preprocessing).unwrap();
        let (plane, width, height) = read_png(&out.join(path)).unwrap();
        assert_eq!((width, height), (224, 224), "{source}");
        let worst = max_abs_diff(&plane, &expected);
        assert!(worst <= PRECISION, "{source}: off by {worst}");
        let expected_label = match source {
            "mg_rle.dcm" => "D3B".to_string(),
            class_fixture => class_fixture[..3].to_uppercase(),
        };
        assert_eq!(label, expected_label, "{source}");
    }
    let dicom = rows
        .iter()
        .find(|r| &r[col("name")] == "mg_rle.dcm")
        .unwrap();
    assert_eq!(
        (&dicom[col("laterality")], &dicom[col("view")]),
        ("L", "CC"),
        "the DICOM's laterality and view"
    );
}

/// A site's manifest: DICOMs and JPEGs in patient folders, partial labels, a missing file.
fn site_manifest(dir: &Path) -> PathBuf {
    let files = [
        ("p1/lcc.dcm", "dicom/mg_rle.dcm"),
        ("p1/rcc.dcm", "dicom/mg_right_cc.dcm"),
        ("p1/lmlo.dcm", "dicom/mg_left_mlo.dcm"),
        ("p2/a.jpg", "d1b_Image_2.jpg"),
        ("p2/b.jpg", "d4m_Image_83.jpg"),
        ("p3/lcc.dcm", "dicom/mg_mono1.dcm"),
        ("p3/c.jpg", "d2m_Image_9.jpg"),
    ];
    for (to, from) in files {
        let path = dir.join(to);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, fixture(from)).unwrap();
    }
    let manifest = dir.join("site.csv");
    std::fs::write(
        &manifest,
        "path,patient,study,laterality,view,density,malignant\n\
         p1/lcc.dcm,P1,S1,,,C,no\n\
         p1/rcc.dcm,P1,S1,,,C,\n\
         p1/lmlo.dcm,P1,S1,,,,yes\n\
         p2/a.jpg,P2,S2,L,CC,A,no\n\
         p2/b.jpg,P2,S2,R,MLO,4,yes\n\
         p3/lcc.dcm,P3,S3,,,2,yes\n\
         p3/c.jpg,P3,S3,L,MLO,B,\n\
         p4/missing.dcm,P4,S4,L,CC,A,no\n",
    )
    .unwrap();
    manifest
}

#[test]
fn a_site_manifest_is_evaluated_by_patient_and_writes_no_patient_attribute() {
    let dir = temp_dir("site");
    let manifest = site_manifest(&dir);
    let out = temp_dir("site-out");
    let output = with_test_model("evaluate", "--manifest", &manifest, &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "a missing file:\n{stdout}");
    assert!(stdout.contains("unreadable: p4/missing.dcm"), "{stdout}");
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["layout"], "manifest");
    assert_eq!(metrics["images_evaluated"], 7);
    let m = &metrics["metrics"];
    assert_eq!(m["resampling"]["unit"], "patients");
    assert_eq!(m["resampling"]["groups"], 3, "three patients were read");
    assert_eq!(m["classes"]["images"], 4, "rows with both labels");
    assert_eq!(m["density"]["images"], 6, "rows with a density");
    assert_eq!(m["malignancy"]["images"], 5, "rows with a malignancy label");
    for ci in [
        &m["density"]["accuracy_ci95"],
        &m["malignancy"]["brier_ci95"],
    ] {
        assert_eq!(ci.as_array().map(Vec::len), Some(2), "an interval: {ci}");
    }
    let table = |by: &str| -> Vec<String> {
        metrics["subgroups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["by"] == by)
            .unwrap()["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["value"].as_str().unwrap().to_string())
            .collect()
    };
    // Views and lateralities come from the manifest, else from the DICOM header.
    assert_eq!(table("view"), ["CC", "MLO"]);
    assert_eq!(table("laterality"), ["L", "R"]);
    assert_eq!(table("manufacturer"), ["not given"]);
    assert_eq!(table("density"), ["A", "B", "C", "D", "not given"]);

    let predictions = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    assert!(
        predictions.contains("p1/rcc.dcm,P1,S1,R,CC,"),
        "{predictions}"
    );
    // The fixtures' patient name, ID and birth date reach no output.
    for file in ["metrics.json", "predictions.csv", "report.html"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        for attribute in ["Fixture^Synthetic", "FIXTURE-0001", "19700101"] {
            assert!(!text.contains(attribute), "{file} holds {attribute}");
        }
    }
}

#[test]
fn a_manifest_row_that_cannot_stand_stops_the_run_naming_it() {
    let dir = temp_dir("site-bad");
    let manifest = site_manifest(&dir);
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            "p2/b.jpg,P2,S2,R,MLO,4,yes",
            "p2/b.jpg,P2,S2,R,MLO,4,perhaps",
        ),
    )
    .unwrap();
    let output = eval_command()
        .args(["evaluate", "--manifest"])
        .arg(&manifest)
        .args(["--out", "/tmp/unused"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("site.csv:6: unknown malignant value \"perhaps\""),
        "{stderr}"
    );
}

#[test]
fn prepare_reads_a_manifest_and_writes_its_keys_and_labels() {
    let dir = temp_dir("site-prepare");
    let manifest = site_manifest(&dir);
    let out = temp_dir("site-prepare-out");
    let output = with_test_model("prepare", "--manifest", &manifest, &out);
    assert_eq!(output.status.code(), Some(2), "the missing file");
    let mut reader = csv::Reader::from_path(out.join("manifest.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 7);
    let row = |name: &str| rows.iter().find(|r| &r[col("name")] == name).unwrap();
    let lmlo = row("p1/lmlo.dcm");
    assert_eq!(
        [
            &lmlo[col("patient")],
            &lmlo[col("label")],
            &lmlo[col("density")],
            &lmlo[col("malignant")],
            &lmlo[col("view")]
        ],
        ["P1", "", "", "yes", "MLO"]
    );
    assert_eq!(&row("p2/b.jpg")[col("label")], "D4M");
    assert!(out.join(&row("p3/lcc.dcm")[col("path")]).is_file());
    let description: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("prepare.json")).unwrap()).unwrap();
    assert_eq!(description["images_written"], 7);
    assert_eq!(description["unreadable"][0]["name"], "p4/missing.dcm");
    let all = std::fs::read_to_string(out.join("manifest.csv")).unwrap();
    assert!(!all.contains("FIXTURE-0001") && !all.contains("Fixture^Synthetic"));
}
