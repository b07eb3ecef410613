//! The trained model in models/ is the server's default, loads under the model contract, and
//! matches its recorded SHA-256.

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
    assert_eq!(model["version"], "2.1.0");
    assert_eq!(
        model["input"]["steps"],
        serde_json::json!(["crop_breast", "orient_left", "pad_square"])
    );
    assert!(model["trained_on"].as_str().unwrap().contains("DPhi"));
    let threshold = model["malignancy_threshold"].as_f64().unwrap();
    assert!(threshold > 0.0 && threshold < 1.0);
    assert_eq!(model["input"]["mean"][0], 0.498);

    // A training-set image of each class (so this checks wiring, not skill: see MODEL_CARD.md).
    for name in CLASS_FIXTURES {
        let body: Value = server
            .post_image(fixture(name), "image/jpeg")
            .await
            .json()
            .await
            .unwrap();
        let expected = name[..3].to_uppercase();
        assert_eq!(body["class"]["label"], expected.as_str(), "{name}");
        assert_eq!(body["density"]["label"], &expected[..2]);
        let malignant = expected.ends_with('M');
        assert_eq!(
            body["malignancy"]["label"],
            if malignant { "malignant" } else { "benign" },
            "{name}"
        );
    }
    // The same through DICOM: full-field-style objects made from two of those images, as a
    // left CC, the mirrored right CC, MONOCHROME1 and a left MLO.
    for (name, class) in [
        ("mg_rle.dcm", "D3B"),
        ("mg_right_cc.dcm", "D3B"),
        ("mg_mono1.dcm", "D3B"),
        ("mg_left_mlo.dcm", "D3M"),
    ] {
        let bytes = fixture(&format!("dicom/{name}"));
        let body = server.predict_json(bytes, "application/dicom").await;
        assert_eq!(body["class"]["label"], class, "{name}");
    }
}
