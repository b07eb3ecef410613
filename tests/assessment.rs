//! The assessment of every answer: an image the model's detector flags is answered 200 as
//! `not_assessable` without labels (unless asked for), per item in `/batch`, left out of the
//! exam summary; a model without a detector still serves, every image `assessed` unchecked.
//! Runs the committed test model with its stand-in detector (the mean of the input: the
//! fixture mammograms pass, an inverted mammogram does not).

mod common;

use common::*;
use serde_json::Value;

async fn start_ood() -> TestServer {
    let model = ood_test_model();
    start(config(&["--model", model.to_str().unwrap()])).await
}

#[tokio::test]
async fn a_mammogram_is_assessed_and_an_out_of_distribution_image_is_declined_without_labels() {
    let server = start_ood().await;
    let body = server
        .predict_json(fixture("d3b_Image_1.jpg"), "image/jpeg")
        .await;
    let a = &body["assessment"];
    assert_eq!(a["status"], "assessed");
    assert!(a["ood_score"].as_f64().unwrap() < 0.0);
    assert_eq!(a["ood_threshold"], 0.0);
    assert!(a["reason"].is_null());
    for key in ["density", "malignancy", "class"] {
        assert!(body.get(key).is_some(), "{key} of an assessed image");
    }

    let declined = server
        .predict_json(fixture("proxy_inverted_d3b.png"), "image/png")
        .await;
    let a = &declined["assessment"];
    assert_eq!(a["status"], "not_assessable");
    assert!(a["ood_score"].as_f64().unwrap() > 0.0);
    assert!(a["reason"]
        .as_str()
        .unwrap()
        .contains("unlike the mammograms"));
    for key in ["density", "malignancy", "class"] {
        assert!(declined.get(key).is_none(), "{key} leaked: {declined}");
    }
    assert!(declined["notice"]
        .as_str()
        .unwrap()
        .contains("Decision support"));

    // Asked for, the labels come back and the status stays.
    let response = server
        .post_bytes(
            "/predict?include_unassessable=true",
            fixture("proxy_inverted_d3b.png"),
            "image/png",
        )
        .await;
    let with_labels: Value = response.json().await.unwrap();
    assert_eq!(with_labels["assessment"]["status"], "not_assessable");
    assert!(with_labels["density"]["label"].is_string());
    assert!(with_labels["malignancy"]["probability"].is_number());

    let bad = server
        .post_bytes(
            "/predict?include_unassessable=perhaps",
            fixture("proxy_inverted_d3b.png"),
            "image/png",
        )
        .await;
    let problem = expect_problem(bad, 400).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("include_unassessable"));

    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("mammo_assessments_total{status=\"assessed\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("mammo_assessments_total{status=\"not_assessable\"} 2\n"));
    let model: Value = server.get("/v1/model").await.json().await.unwrap();
    assert_eq!(model["ood"]["threshold"], 0.0);
    assert_eq!(model["temperature"], 1.0);
    assert_eq!(model["views"], 1, "a file without mammo.views runs one");
}

#[tokio::test]
async fn a_batch_answers_each_item_with_its_own_assessment_and_exams_leave_declined_views_out() {
    let server = start_ood().await;
    let form = files_form([
        ("mammogram.jpg", fixture("d1b_Image_2.jpg")),
        ("inverted.png", fixture("proxy_inverted_d3b.png")),
        ("broken.jpg", corrupt_jpeg()),
    ]);
    let body = server.batch_json(form).await;
    let r = body["results"].as_array().unwrap();
    assert_eq!(r[0]["prediction"]["assessment"]["status"], "assessed");
    assert!(r[0]["prediction"]["class"].is_object());
    assert_eq!(r[1]["prediction"]["assessment"]["status"], "not_assessable");
    assert!(r[1]["prediction"].get("class").is_none());
    assert_eq!(
        (r[2]["ok"].as_bool(), r[2]["error"]["status"].as_u64()),
        (Some(false), Some(400))
    );

    // One study: the left CC assessed; the left MLO and the right CC stored in negative.
    let form = files_form([
        ("lcc.dcm", fixture("dicom/mg_explicit_le.dcm")),
        ("lmlo.dcm", fixture("dicom/ood_negative_left_mlo.dcm")),
        ("rcc.dcm", fixture("dicom/ood_negative_right_cc.dcm")),
    ]);
    let body = server.batch_json(form).await;
    let statuses: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prediction"]["assessment"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["assessed", "not_assessable", "not_assessable"]);
    let [exam] = body["exams"].as_array().unwrap().as_slice() else {
        panic!("one study: {body}");
    };
    assert_eq!(exam["status"], "assessed");
    assert_eq!(exam["not_assessable_views"], 2);
    let (left, right) = (&exam["breasts"][0], &exam["breasts"][1]);
    assert_eq!(ids(&left["views"]), ["lcc.dcm"]);
    assert_eq!(ids(&left["not_assessable"]), ["lmlo.dcm"]);
    assert_eq!(left["malignancy"]["from"], "lcc.dcm");
    let lcc = body["results"][0]["prediction"]["malignancy"]["probability"].clone();
    assert_eq!(
        exam["malignancy"]["probability"], lcc,
        "only the assessed view counts"
    );
    assert_eq!(right["status"], "not_assessable");
    assert!(right.get("density").is_none() && right.get("malignancy").is_none());
    assert_eq!(exam["density"], left["density"], "the only assessed breast");

    // A study with no assessed view is not assessable as a whole.
    let form = files_form([("rcc.dcm", fixture("dicom/ood_negative_right_cc.dcm"))]);
    let body = server.batch_json(form).await;
    let exam = &body["exams"][0];
    assert_eq!(exam["status"], "not_assessable");
    assert!(exam.get("density").is_none() && exam.get("malignancy").is_none());
}

#[tokio::test]
async fn a_model_without_a_detector_still_serves_and_says_it_did_not_check() {
    let server = start(config(&[])).await;
    for (bytes, content_type) in [
        (fixture("d3b_Image_1.jpg"), "image/jpeg"),
        (fixture("proxy_inverted_d3b.png"), "image/png"),
    ] {
        let body = server.predict_json(bytes, content_type).await;
        let a = &body["assessment"];
        assert_eq!(a["status"], "assessed");
        assert!(a["ood_score"].is_null() && a["ood_threshold"].is_null());
        assert!(a["reason"].as_str().unwrap().contains("not checked"));
        assert!(body["class"].is_object());
    }
    let model: Value = server.get("/v1/model").await.json().await.unwrap();
    assert!(model["ood"].is_null());
}
