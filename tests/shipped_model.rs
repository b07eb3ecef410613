//! The trained model in models/ is the server's default, loads under the model contract with
//! its detector and temperature, matches its recorded SHA-256, reads training-like images and
//! declines images unlike them.

mod common;

use clap::Parser;
use common::*;
use mammo_serve::config::DEFAULT_MODEL;
use mammo_serve::Config;
use serde_json::Value;

#[tokio::test]
async fn the_default_model_is_the_shipped_trained_model() {
    let defaults = Config::try_parse_from(["mammo-serve"]).unwrap();
    assert_eq!(defaults.model.to_str(), Some(DEFAULT_MODEL));
    let shipped = shipped_model();
    let recorded = std::fs::read_to_string(repo().join(format!("{DEFAULT_MODEL}.sha256"))).unwrap();
    assert_eq!(
        recorded.split_whitespace().next(),
        Some(sha256_hex(&shipped).as_str()),
        "models/mammo.onnx.sha256 is stale"
    );

    let server = start(config(&["--model", &shipped.display().to_string()])).await;
    let model: Value = server.get("/v1/model").await.json().await.unwrap();
    assert_eq!(model["arch"], "efficientnet_lite0");
    assert_eq!(model["version"], "2.6.0");
    assert_eq!(model["views"], 2, "the image and its mirror image: {model}");
    assert!(
        model["temperature"].as_f64().unwrap() > 1.0,
        "calibrated: {model}"
    );
    assert_eq!(model["ood"]["method"], "maha_stage4");
    assert!(model["ood"]["threshold"].as_f64().unwrap() > 0.0);
    assert_eq!(
        model["input"]["steps"],
        serde_json::json!(["crop_breast", "orient_left", "pad_square"])
    );
    assert!(model["trained_on"].as_str().unwrap().contains("DPhi"));
    let threshold = model["malignancy_threshold"].as_f64().unwrap();
    assert!(threshold > 0.0 && threshold < 1.0);
    assert_eq!(model["input"]["mean"][0], 0.498);
    assert_eq!(model["precision"], "fp32");
    reads_training_like_images_and_declines_others(&server).await;
}

/// `--precision int8` serves models/mammo-int8.onnx: the FP32 model quantized, with its
/// metadata, reporting its precision, and reading and declining the same images.
#[tokio::test]
async fn the_int8_model_is_the_shipped_model_quantized() {
    let fp32 = start(config(&["--model", &shipped_model().display().to_string()])).await;
    let int8 = start(config(&[
        "--model",
        &shipped_model().display().to_string(),
        "--precision",
        "int8",
    ]))
    .await;
    let fp32_model: Value = fp32.get("/v1/model").await.json().await.unwrap();
    let int8_model: Value = int8.get("/v1/model").await.json().await.unwrap();
    assert_eq!(int8_model["name"], "mammo-int8");
    assert_eq!(int8_model["precision"], "int8");
    for key in [
        "version",
        "labels",
        "input",
        "temperature",
        "views",
        "ood",
        "malignancy_threshold",
    ] {
        assert_eq!(int8_model[key], fp32_model[key], "{key}");
    }
    assert!(
        int8_model["size_bytes"].as_u64().unwrap() * 2 < fp32_model["size_bytes"].as_u64().unwrap(),
        "int8 weights are a quarter of fp32's, less the float layers: {int8_model}"
    );
    let health: Value = int8.get("/health").await.json().await.unwrap();
    assert_eq!(health["model"]["precision"], "int8");
    reads_training_like_images_and_declines_others(&int8).await;
}

async fn reads_training_like_images_and_declines_others(server: &TestServer) {
    // A training-set image of each class (so this checks wiring, not skill: see MODEL_CARD.md;
    // three of them are in the held-out fold, and all eight happen to be read right).
    for name in CLASS_FIXTURES {
        let body: Value = server
            .post_image(fixture(name), "image/jpeg")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["assessment"]["status"], "assessed", "{name}");
        let expected = name[..3].to_uppercase();
        assert_eq!(body["class"]["label"], expected.as_str(), "{name}");
        assert_eq!(body["density"]["label"], &expected[..2]);
        // The threshold is set for 0.90 sensitivity, so a malignant mass must be called
        // malignant; a benign one may be too (the card gives the held-out specificity).
        if expected.ends_with('M') {
            assert_eq!(body["malignancy"]["label"], "malignant", "{name}");
        }
    }
    // The same through DICOM: full-field-style objects made from two of those images, as a
    // left CC, the mirrored right CC, MONOCHROME1 and a left MLO. Their synthetic detector
    // puts them near the detector's threshold, so their labels are asked for explicitly.
    for (name, class) in [
        ("mg_rle.dcm", "D3B"),
        ("mg_right_cc.dcm", "D3B"),
        ("mg_mono1.dcm", "D3B"),
        ("mg_left_mlo.dcm", "D3M"),
    ] {
        let response = server
            .post_bytes(
                "/predict?include_unassessable=true",
                fixture(&format!("dicom/{name}")),
                "application/dicom",
            )
            .await;
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["class"]["label"], class, "{name}");
    }
    // Images unlike the training data are declined without labels: an inverted mammogram, and
    // DICOM views whose grey levels are negated (proxies of a wrong polarity or grey mapping).
    for (name, content_type) in [
        ("proxy_inverted_d3b.png", "image/png"),
        ("dicom/ood_negative_left_mlo.dcm", "application/dicom"),
        ("dicom/ood_negative_right_cc.dcm", "application/dicom"),
    ] {
        let body = server.predict_json(fixture(name), content_type).await;
        assert_eq!(body["assessment"]["status"], "not_assessable", "{name}");
        assert!(body.get("class").is_none(), "{name}: {body}");
    }
}
