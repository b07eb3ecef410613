//! `/batch`: order, per-item errors, limits, both body forms.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn single(server: &TestServer, name: &str) -> Value {
    server.predict_json(fixture(name), "image/jpeg").await
}

#[tokio::test]
async fn multipart_batch_keeps_order_and_isolates_a_corrupt_item() {
    let server = start(config(&["--max-batch-size", "2"])).await;
    let names = [
        "d1b_Image_2.jpg",
        "d4m_Image_83.jpg",
        "broken.jpg",
        "d2m_Image_9.jpg",
    ];
    let form = files_form(names.map(|name| {
        let bytes = if name == "broken.jpg" {
            corrupt_jpeg()
        } else {
            fixture(name)
        };
        (name, bytes)
    }));
    let response = server.post_multipart("/batch", form).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for (result, name) in results.iter().zip(names) {
        assert_eq!(result["id"], name);
    }
    assert_eq!(results[2]["ok"], false);
    assert_eq!(results[2]["error"]["status"], 400);
    assert!(results[2].get("prediction").is_none());
    // Each good item's answer is the one /predict gives for that very image.
    for i in [0, 1, 3] {
        assert_eq!(results[i]["ok"], true);
        let alone = single(&server, names[i]).await;
        let (a, b) = (
            &results[i]["prediction"]["class"]["probabilities"],
            &alone["class"]["probabilities"],
        );
        for (k, v) in a.as_object().unwrap() {
            assert!(
                (v.as_f64().unwrap() - b[k].as_f64().unwrap()).abs() < 1e-5,
                "item {i} {k}"
            );
        }
    }
    assert!(body["notice"].as_str().unwrap().contains("not a diagnosis"));
}

#[tokio::test]
async fn json_batch_reports_bad_base64_and_unusable_images_per_item() {
    let server = start(config(&[])).await;
    let items = json!({"items": [
        {"id": "good", "image_base64": b64(&fixture("d3m_Image_31.jpg"))},
        {"id": "not-base64", "image_base64": "%%%"},
        {"id": "huge", "image_base64": b64(&fixture("bad_huge_dimensions.png"))},
        {"id": "empty", "image_base64": ""},
        {"id": "png16", "image_base64": b64(&fixture("variant_grey16.png"))},
    ]});
    let response = server.post_json("/batch", &items).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    let statuses: Vec<Value> = results
        .iter()
        .map(|r| r["error"]["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        vec![Value::Null, json!(400), json!(422), json!(400), Value::Null]
    );
    assert_eq!(
        results[0]["prediction"]["class"],
        single(&server, "d3m_Image_31.jpg").await["class"]
    );
    assert_eq!(results[4]["ok"], true);
}

#[tokio::test]
async fn batch_limits_and_malformed_bodies_are_refused() {
    let server = start(config(&["--max-batch-items", "2"])).await;
    let item = json!({"id": "x", "image_base64": b64(&fixture("d1b_Image_2.jpg"))});
    let over = json!({"items": [item, item, item]});
    let response = server.post_json("/batch", &over).await;
    let problem = expect_problem(response, 413).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("more than 2 items"));

    let three = form(vec![("files", fixture("d1b_Image_2.jpg")); 3]);
    expect_problem(server.post_multipart("/batch", three).await, 413).await;

    let empty = server.post_json("/batch", &json!({"items": []})).await;
    expect_problem(empty, 400).await;
    let syntax = server
        .post_bytes("/batch", b"{not json".to_vec(), "application/json")
        .await;
    expect_problem(syntax, 400).await;
    let schema = server.post_json("/batch", &json!({"images": []})).await;
    expect_problem(schema, 422).await;
    let wrong_field = form(vec![("file", fixture("d1b_Image_2.jpg"))]);
    let response = server.post_multipart("/batch", wrong_field).await;
    let problem = expect_problem(response, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("files"));
    let raw = server
        .post_image(fixture("d1b_Image_2.jpg"), "image/jpeg")
        .await;
    assert_eq!(raw.status(), 200, "sanity: /predict still fine");
    let response = server
        .post_bytes("/batch", fixture("d1b_Image_2.jpg"), "image/jpeg")
        .await;
    expect_problem(response, 415).await;
}

#[tokio::test]
async fn multipart_parts_without_file_names_get_positional_ids() {
    let server = start(config(&[])).await;
    let form = form(vec![
        ("files", fixture("d2b_Image_60.jpg")),
        ("files", fixture("d4b_Image_8.jpg")),
    ]);
    let body = server.batch_json(form).await;
    assert_eq!(ids(&body["results"]), ["files[0]", "files[1]"]);
}
