//! The audit trail (`--audit-log`): one JSON line per image answered or refused, with the
//! request id, route, SOP Instance UID, model version, assessment and the labels given, and
//! nothing of the patient. Runs the test model with its stand-in detector, so that the trail
//! holds assessed, declined and refused images.

mod common;

use common::*;
use serde_json::Value;
use std::path::PathBuf;

/// A server on the test model with the detector, keeping its audit trail in a fresh file
/// named for the test (under the target directory).
async fn start_audited(name: &str) -> (TestServer, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("audit-{name}-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let model = ood_test_model();
    let server = start(config(&[
        "--model",
        model.to_str().unwrap(),
        "--audit-log",
        path.to_str().unwrap(),
    ]))
    .await;
    (server, path)
}

#[tokio::test]
async fn every_image_answered_or_refused_is_one_line_without_patient_attributes() {
    let (server, path) = start_audited("images").await;

    let response = server
        .client
        .post(server.url("/predict"))
        .header("content-type", "application/dicom")
        .header("x-request-id", "audit-dicom-1")
        .body(fixture("dicom/mg_left_mlo.dcm"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server
        .predict_json(fixture("proxy_inverted_d3b.png"), "image/png")
        .await;
    let batch = form(vec![
        ("files", fixture("d1b_Image_2.jpg")),
        ("files", corrupt_jpeg()),
    ]);
    let response = server.post_multipart("/batch", batch).await;
    assert_eq!(response.status(), 200);

    let trail = jsonl(&path);
    assert_eq!(trail.len(), 4, "{trail:#?}");
    let dicom = &trail[0];
    assert_eq!(dicom["request_id"], "audit-dicom-1");
    assert_eq!(dicom["route"], "/predict");
    assert_eq!(dicom["status"], "assessed");
    assert!(dicom["sop_instance_uid"]
        .as_str()
        .unwrap()
        .starts_with("1.2."));
    assert!(dicom["labels"]["class"].is_string());
    assert!(dicom["model_version"].is_string());
    assert!(dicom["time"].as_str().unwrap().ends_with('Z'));

    // Declined: no labels recorded, as none were given.
    assert_eq!(trail[1]["status"], "not_assessable");
    assert!(trail[1].get("labels").is_none(), "{}", trail[1]);
    assert!(trail[1].get("sop_instance_uid").is_none());

    // The batch: each item by its id, the corrupt one refused with its status.
    assert_eq!(trail[2]["route"], "/batch");
    assert_eq!(trail[2]["item"], "files[0]");
    assert_eq!(trail[2]["status"], "assessed");
    assert_eq!(trail[3]["item"], "files[1]");
    assert_eq!(trail[3]["status"], "refused");
    assert_eq!(trail[3]["problem_status"], 400);
    assert_eq!(trail[2]["request_id"], trail[3]["request_id"]);
    assert_ne!(trail[2]["request_id"], trail[1]["request_id"]);

    let text = std::fs::read_to_string(&path).unwrap();
    for phi in ["Fixture^Synthetic", "FIXTURE-0001", "19700101"] {
        assert!(!text.contains(phi), "{phi} in the audit trail");
    }
}

#[tokio::test]
async fn labels_asked_for_on_a_declined_image_are_recorded() {
    let (server, path) = start_audited("asked").await;
    let response = server
        .post_bytes(
            "/predict?include_unassessable=true",
            fixture("proxy_inverted_d3b.png"),
            "image/png",
        )
        .await;
    let body: Value = response.json().await.unwrap();
    let trail = jsonl(&path);
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0]["status"], "not_assessable");
    assert_eq!(trail[0]["labels"]["class"], body["class"]["label"]);
}

#[tokio::test]
async fn an_audit_trail_that_cannot_be_opened_stops_start_up() {
    let mut config = config(&[]);
    config.audit_log = Some(PathBuf::from("/nonexistent-dir/audit.jsonl"));
    let error = mammo_serve::run(config).await.unwrap_err();
    assert!(format!("{error:#}").contains("audit trail"), "{error:#}");
}
