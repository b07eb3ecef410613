//! Readiness, model description, request ids, OpenAPI and Swagger UI over HTTP.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn not_ready_until_the_model_is_loaded_and_warmed_up() {
    let (server, loader) = start_unloaded(config(&["--warmup-runs", "2"])).await;
    let get = |path: &str| server.client.get(server.url(path)).send();
    assert_eq!(get("/health/live").await.unwrap().status(), 200);
    let ready = get("/health/ready").await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "loading");
    assert_eq!(get("/health").await.unwrap().status(), 503);
    let predict = server
        .post_image(fixture("d1b_Image_2.jpg"), "image/jpeg")
        .await;
    assert_eq!(
        predict
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let problem = expect_problem(predict, 503).await;
    assert!(problem["detail"].as_str().unwrap().contains("loading"));
    expect_problem(get("/v1/model").await.unwrap(), 503).await;

    loader.load().await.unwrap();

    let ready = get("/health/ready").await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["execution_provider"], "CPUExecutionProvider");
    assert_eq!(get("/health").await.unwrap().status(), 200);
    assert_eq!(
        server
            .post_image(fixture("d1b_Image_2.jpg"), "image/jpeg")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn auto_device_falls_back_to_cpu_and_reports_it() {
    let server = start(config(&["--device", "auto"])).await;
    let model: Value = server.get("/v1/model").await.json().await.unwrap();
    assert_eq!(model["execution_provider"], "CPUExecutionProvider");
    assert_eq!(model["fp16"], false);
    assert_eq!(model["labels"].as_array().unwrap().len(), 8);
    assert_eq!(model["labels"][7], "D4M");
    assert_eq!(model["input"]["height"], 224);
    assert_eq!(model["input"]["resize"], "bilinear");
    assert_eq!(model["malignancy_threshold"], 0.5);
    assert_eq!(model["version"], "0.0.0-untrained-test");
    assert!(model["trained_on"]
        .as_str()
        .unwrap()
        .contains("random weights"));
    assert_eq!(model["sha256"], sha256_hex(&test_model()).as_str());
}

#[tokio::test]
async fn request_ids_are_kept_or_made() {
    let server = start(config(&[])).await;
    let response = server
        .client
        .get(server.url("/health"))
        .header("x-request-id", "pacs-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "pacs-42");
    let response = server.post_image(b"nope".to_vec(), "image/jpeg").await;
    let made = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(made.len(), 36, "a UUID: {made}");
}

#[tokio::test]
async fn openapi_and_swagger_ui_are_served() {
    let server = start(config(&[])).await;
    let doc: Value = server.get("/openapi.json").await.json().await.unwrap();
    for path in [
        "/predict",
        "/batch",
        "/health",
        "/health/live",
        "/health/ready",
        "/v1/model",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the document"
        );
    }
    let docs = server.get("/docs/").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger-ui"));
}
