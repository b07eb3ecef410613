//! `/predict` on real mammogram fixtures against a real server and the real engine.

mod common;

use common::*;
use serde_json::Value;

/// Checks the response contract on one prediction and returns its 8 class probabilities.
fn check_prediction(p: &Value) -> Vec<(String, f64)> {
    let classes = probabilities(&p["class"]["probabilities"]);
    assert_eq!(classes.len(), 8);
    let sum: f64 = classes.iter().map(|(_, v)| v).sum();
    assert!((sum - 1.0).abs() < 1e-5, "class probabilities sum to {sum}");
    let get = |k: &str| {
        classes
            .iter()
            .find(|(c, _)| c == k)
            .unwrap_or_else(|| panic!("no {k}"))
            .1
    };

    // Density marginals are benign + malignant of each density.
    let density = &p["density"];
    for d in 1..=4 {
        let marginal = density["probabilities"][format!("D{d}")].as_f64().unwrap();
        let expected = get(&format!("D{d}B")) + get(&format!("D{d}M"));
        assert!(
            (marginal - expected).abs() < 1e-6,
            "D{d}: {marginal} vs {expected}"
        );
    }
    let best_density = (1..=4)
        .max_by(|a, b| {
            let pa = density["probabilities"][format!("D{a}")].as_f64().unwrap();
            let pb = density["probabilities"][format!("D{b}")].as_f64().unwrap();
            pa.partial_cmp(&pb).unwrap()
        })
        .unwrap();
    assert_eq!(density["label"], format!("D{best_density}"));
    assert_eq!(density["birads"], ["A", "B", "C", "D"][best_density - 1]);

    // Malignancy is the sum of the malignant classes, labelled at the threshold.
    let m = &p["malignancy"];
    let malignant: f64 = (1..=4).map(|d| get(&format!("D{d}M"))).sum();
    let probability = m["probability"].as_f64().unwrap();
    assert!((probability - malignant).abs() < 1e-6);
    let threshold = m["threshold"].as_f64().unwrap();
    let expected_label = if probability >= threshold {
        "malignant"
    } else {
        "benign"
    };
    assert_eq!(m["label"], expected_label);
    let confidence = m["confidence"].as_f64().unwrap();
    let expected_confidence = if expected_label == "malignant" {
        probability
    } else {
        1.0 - probability
    };
    assert!((confidence - expected_confidence).abs() < 1e-6);

    // The class label is the arg-max.
    let (best, best_p) =
        classes
            .iter()
            .cloned()
            .fold((String::new(), -1.0), |a, b| if b.1 > a.1 { b } else { a });
    assert_eq!(p["class"]["label"], best.as_str());
    assert!((p["class"]["confidence"].as_f64().unwrap() - best_p).abs() < 1e-6);

    assert!(p["notice"].as_str().unwrap().contains("not a diagnosis"));
    for key in ["queue", "inference", "total"] {
        assert!(p["timing_ms"][key].as_f64().unwrap() >= 0.0);
    }
    classes
}

#[tokio::test]
async fn raw_jpeg_of_every_class_gets_a_consistent_prediction() {
    let server = start(config(&[])).await;
    let model_sha = sha256_hex(&test_model());
    let mut seen = Vec::new();
    for name in CLASS_FIXTURES {
        let response = server.post_image(fixture(name), "image/jpeg").await;
        assert_eq!(response.status(), 200, "{name}");
        let body: Value = response.json().await.unwrap();
        seen.push(check_prediction(&body));
        assert_eq!(body["model"]["sha256"], model_sha.as_str());
        assert_eq!(body["model"]["name"], "untrained");
        assert_eq!(body["model"]["version"], "0.0.0-untrained-test");
    }
    // Different images give different answers: the model really reads the pixels.
    assert_ne!(seen[0], seen[7]);
}

#[tokio::test]
async fn multipart_file_equals_raw_body() {
    let server = start(config(&[])).await;
    let bytes = fixture("d4m_Image_83.jpg");
    let raw: Value = server
        .post_image(bytes.clone(), "image/jpeg")
        .await
        .json()
        .await
        .unwrap();
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name("d4m.jpg")
        .mime_str("image/jpeg")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("note", "ignored")
        .part("file", part);
    let response = server.post_multipart("/predict", form).await;
    assert_eq!(response.status(), 200);
    let multipart: Value = response.json().await.unwrap();
    check_prediction(&multipart);
    assert_eq!(raw["class"], multipart["class"]);
}

#[tokio::test]
async fn every_common_pixel_format_reads_as_the_same_grey_image() {
    let server = start(config(&[])).await;
    let reference: Value = server
        .post_image(fixture("variant_grey8.png"), "image/png")
        .await
        .json()
        .await
        .unwrap();
    let reference = check_prediction(&reference);
    for name in [
        "variant_grey16.png",
        "variant_rgb8.png",
        "variant_rgba8.png",
        "variant_la8.png",
        "variant_palette.png",
    ] {
        let response = server.post_image(fixture(name), "image/png").await;
        assert_eq!(response.status(), 200, "{name}");
        let body: Value = response.json().await.unwrap();
        let got = check_prediction(&body);
        for ((k, a), (_, b)) in reference.iter().zip(&got) {
            assert!((a - b).abs() < 1e-4, "{name} {k}: {a} vs {b}");
        }
    }
    // The same pixels as JPEG and as PNG agree closely (JPEG decoders differ by a grey level at most).
    let jpeg = server
        .predict_json(fixture("d3b_Image_1.jpg"), "image/jpeg")
        .await;
    let jpeg = check_prediction(&jpeg);
    for ((k, a), (_, b)) in reference.iter().zip(&jpeg) {
        assert!((a - b).abs() < 0.02, "JPEG vs PNG {k}: {a} vs {b}");
    }
}

#[tokio::test]
async fn larger_images_are_resized_and_octet_stream_is_sniffed() {
    let server = start(config(&[])).await;
    let response = server
        .post_image(
            fixture("variant_grey16_448x560.png"),
            "application/octet-stream",
        )
        .await;
    assert_eq!(response.status(), 200);
    check_prediction(&response.json().await.unwrap());
    // No content type at all: the bytes are sniffed too.
    let response = server
        .client
        .post(server.url("/predict"))
        .body(fixture("d1b_Image_2.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
