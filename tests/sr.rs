//! Results as DICOM Structured Reports (issue #17): `/predict` with `Accept: application/dicom`
//! answers a Comprehensive SR (TID 1500) about the image's study. Every SR made here must pass
//! dciodvfy (dicom3tools) without an error and be read by dsrdump (dcmtk) and by highdicom
//! (`tests/sr_read.py`); `scripts/dicom_tools.sh` installs them (`make check` runs it).
//! Runs the committed test model with its stand-in detector, so that one fixture is assessed
//! and another is not.

mod common;

use common::*;
use dicom_dictionary_std::tags;
use dicom_object::{from_reader, DefaultDicomObject};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

async fn start_ood() -> TestServer {
    let model = ood_test_model();
    start(config(&["--model", model.to_str().unwrap()])).await
}

/// `/predict` of a DICOM fixture asking for an SR, expecting 200 `application/dicom`.
async fn sr_of(server: &TestServer, name: &str) -> Vec<u8> {
    let response = server
        .client
        .post(server.url("/predict"))
        .header("content-type", "application/dicom")
        .header("accept", "application/dicom")
        .body(fixture(&format!("dicom/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{name}");
    assert_eq!(response.headers()["content-type"], "application/dicom");
    response.bytes().await.unwrap().to_vec()
}

fn parse(bytes: &[u8]) -> DefaultDicomObject {
    from_reader(&bytes[128..]).expect("the SR is DICOM Part 10")
}

fn text(object: &DefaultDicomObject, tag: dicom_core::Tag) -> String {
    object
        .element(tag)
        .unwrap_or_else(|_| panic!("{tag} is present"))
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// dciodvfy's report of `path`, failing the test on any line that says "Error".
fn dciodvfy(path: &Path) -> String {
    let output = Command::new("dciodvfy")
        .arg(path)
        .output()
        .expect("dciodvfy (dicom3tools) is installed: run scripts/dicom_tools.sh");
    let report = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    let errors: Vec<&str> = report.lines().filter(|l| l.contains("Error")).collect();
    assert!(
        errors.is_empty(),
        "dciodvfy found errors:\n{}",
        errors.join("\n")
    );
    assert!(report.contains("ComprehensiveSR"), "{report}");
    report
}

/// dsrdump's rendering of `path` (it exits non-zero on a file it cannot read).
fn dsrdump(path: &Path) -> String {
    let output = Command::new("dsrdump")
        .arg(path)
        .output()
        .expect("dsrdump (dcmtk) is installed: run scripts/dicom_tools.sh");
    assert!(
        output.status.success(),
        "dsrdump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// highdicom's reading of `path` (tests/sr_read.py).
fn highdicom(path: &Path) -> Value {
    let python = repo().join(".ort/tools/bin/python");
    let output = Command::new(&python)
        .arg(repo().join("tests/sr_read.py"))
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/dicom_tools.sh", python.display()));
    assert!(
        output.status.success(),
        "highdicom could not read the SR: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Writes `bytes` to a file of its own and runs the three readers on it.
fn validated(bytes: &[u8], name: &str) -> (String, Value) {
    let dir = std::env::temp_dir().join(format!("mammo-sr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    dciodvfy(&path);
    let dump = dsrdump(&path);
    let read = highdicom(&path);
    std::fs::remove_file(&path).unwrap();
    (dump, read)
}

#[tokio::test]
async fn an_assessed_image_gives_a_valid_sr_with_its_study_its_patient_and_the_reading() {
    let server = start_ood().await;
    let json = server
        .predict_json(fixture("dicom/mg_rle.dcm"), "application/dicom")
        .await;
    let bytes = sr_of(&server, "mg_rle.dcm").await;
    let sr = parse(&bytes);
    let source = parse(&fixture("dicom/mg_rle.dcm"));
    assert_eq!(
        text(&sr, tags::SOP_CLASS_UID),
        "1.2.840.10008.5.1.4.1.1.88.33"
    );
    assert_eq!(text(&sr, tags::MODALITY), "SR");
    for tag in [
        tags::STUDY_INSTANCE_UID,
        tags::PATIENT_NAME,
        tags::PATIENT_ID,
        tags::PATIENT_BIRTH_DATE,
        tags::ACCESSION_NUMBER,
    ] {
        // Type 2: present in the SR, empty when the source has no value.
        let copied = source
            .element(tag)
            .map_or(String::new(), |_| text(&source, tag));
        assert_eq!(text(&sr, tag), copied, "{tag} copied from the source");
    }
    assert!(text(&sr, tags::SOP_INSTANCE_UID).starts_with("2.25."));

    let (dump, read) = validated(&bytes, "assessed.dcm");
    assert!(dump.contains("Imaging Measurement Report"), "{dump}");
    assert_eq!(
        read["study_instance_uid"],
        text(&source, tags::STUDY_INSTANCE_UID)
    );
    let groups = read["groups"].as_array().unwrap();
    assert_eq!(
        groups.len(),
        2,
        "one group for the image, one for its breast: {read}"
    );
    let source_uid = text(&source, tags::SOP_INSTANCE_UID);
    let probability = json["malignancy"]["probability"].as_f64().unwrap() * 100.0;
    let birads = json["density"]["birads"].as_str().unwrap();
    let composition = [
        "Almost entirely fat",
        "Scattered fibroglandular densities",
        "Heterogeneously dense",
        "Extremely dense",
    ][(birads.as_bytes()[0] - b'A') as usize];
    let call = if json["malignancy"]["label"] == "malignant" {
        "Malignant"
    } else {
        "Benign"
    };
    for group in groups {
        assert_eq!(group["sources"], serde_json::json!([source_uid]), "{group}");
        let measured = &group["measurements"][0];
        assert_eq!(measured[0], "Probability of cancer");
        assert!(
            (measured[1].as_f64().unwrap() - probability).abs() < 1e-3,
            "{measured} vs {probability}"
        );
        assert_eq!(measured[2], "%");
        let evaluations = &group["evaluations"];
        assert_eq!(evaluations["Breast composition"], composition);
        assert_eq!(
            evaluations["Malignancy call at the model operating threshold"],
            call
        );
        assert_eq!(
            evaluations["AI assessment status"],
            "Assessed: image like the training data"
        );
    }
}

#[tokio::test]
async fn an_image_not_assessed_gives_a_valid_sr_that_says_so_without_values() {
    let server = start_ood().await;
    let bytes = sr_of(&server, "ood_negative_left_mlo.dcm").await;
    let (dump, read) = validated(&bytes, "declined.dcm");
    assert!(dump.contains("Not assessable"), "{dump}");
    for group in read["groups"].as_array().unwrap() {
        assert_eq!(
            group["measurements"],
            serde_json::json!([]),
            "no probability: {group}"
        );
        let evaluations = group["evaluations"].as_object().unwrap();
        assert_eq!(
            evaluations["AI assessment status"],
            "Not assessable: unlike the training data, do not use results"
        );
        assert!(!evaluations.contains_key("Breast composition"), "{group}");
    }
}

#[tokio::test]
async fn the_same_image_and_model_give_the_same_sr_uids() {
    let server = start_ood().await;
    let first = parse(&sr_of(&server, "mg_explicit_le.dcm").await);
    let again = parse(&sr_of(&server, "mg_explicit_le.dcm").await);
    let other = parse(&sr_of(&server, "mg_left_mlo.dcm").await);
    for tag in [tags::SOP_INSTANCE_UID, tags::SERIES_INSTANCE_UID] {
        assert_eq!(text(&first, tag), text(&again, tag));
    }
    assert_ne!(
        text(&first, tags::SOP_INSTANCE_UID),
        text(&other, tags::SOP_INSTANCE_UID)
    );
}

#[tokio::test]
async fn an_sr_needs_a_dicom_image_and_json_stays_the_default() {
    let server = start_ood().await;
    let response = server
        .client
        .post(server.url("/predict"))
        .header("content-type", "image/jpeg")
        .header("accept", "application/dicom")
        .body(fixture("d3b_Image_1.jpg"))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 406).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("needs a DICOM image"));
    // JSON when the caller prefers it, or accepts anything.
    for accept in ["application/json, application/dicom", "*/*"] {
        let response = server
            .client
            .post(server.url("/predict"))
            .header("content-type", "application/dicom")
            .header("accept", accept)
            .body(fixture("dicom/mg_rle.dcm"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{accept}"
        );
    }
}
