//! API keys (`--api-keys-file`): every route but the health probes needs
//! `Authorization: Bearer KEY`; refusals are 401 problems; the file is re-read when it
//! changes; the audit trail names the key that asked.

mod common;

use common::*;
use std::time::Duration;

async fn get_with(server: &TestServer, path: &str, key: Option<&str>) -> reqwest::Response {
    let request = server.client.get(server.url(path));
    let request = match key {
        Some(key) => request.bearer_auth(key),
        None => request,
    };
    request.send().await.unwrap()
}

#[tokio::test]
async fn only_the_probes_are_open_and_a_valid_key_is_served() {
    let keys = temp_file(
        "keys-basic",
        &format!(
            "# test keys\n{}{}",
            key_line("viewer", "v-key-1"),
            key_line("router", "r-key-2")
        ),
    );
    let audit = temp_file("audit-auth.jsonl", "");
    let server = start(config(&[
        "--api-keys-file",
        keys.to_str().unwrap(),
        "--audit-log",
        audit.to_str().unwrap(),
    ]))
    .await;
    for probe in ["/health/live", "/health/ready"] {
        assert_eq!(
            get_with(&server, probe, None).await.status(),
            200,
            "{probe}"
        );
    }
    for path in ["/health", "/v1/model", "/metrics", "/openapi.json"] {
        let refused = get_with(&server, path, None).await;
        assert_eq!(
            refused.headers()["www-authenticate"].to_str().unwrap(),
            "Bearer",
            "{path}"
        );
        let problem = expect_problem(refused, 401).await;
        assert!(problem["detail"].as_str().unwrap().contains("Bearer"));
        assert_eq!(
            get_with(&server, path, Some("r-key-2")).await.status(),
            200,
            "{path}"
        );
    }
    let wrong = get_with(&server, "/v1/model", Some("v-key-2")).await;
    let problem = expect_problem(wrong, 401).await;
    assert!(problem["detail"].as_str().unwrap().contains("not valid"));

    let predict = |key: Option<&'static str>| {
        let request = server
            .client
            .post(server.url("/predict"))
            .header("content-type", "image/jpeg")
            .body(fixture("d1b_Image_2.jpg"));
        let request = match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        request.send()
    };
    expect_problem(predict(None).await.unwrap(), 401).await;
    let answered = predict(Some("v-key-1")).await.unwrap();
    assert_eq!(answered.status(), 200);

    // The audit trail names the key, never the key itself.
    let entries = jsonl(&audit);
    let trail = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(entries.len(), 1, "{trail}");
    assert_eq!(entries[0]["key"], "viewer");
    assert!(!trail.contains("v-key-1"));
}

#[tokio::test]
async fn keys_added_and_revoked_in_the_file_take_effect_without_a_restart() {
    let keys = temp_file("keys-reload", &key_line("old", "old-key"));
    let server = start(config(&["--api-keys-file", keys.to_str().unwrap()])).await;
    assert_eq!(
        get_with(&server, "/v1/model", Some("old-key"))
            .await
            .status(),
        200
    );

    std::fs::write(
        &keys,
        format!("# rotated\n{}", key_line("new", "new-key-longer")),
    )
    .unwrap();
    // Tried until the server has re-read the file (it checks every few seconds).
    let rotated = async {
        while get_with(&server, "/v1/model", Some("new-key-longer"))
            .await
            .status()
            != 200
        {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), rotated)
        .await
        .expect("the new key was never accepted");
    assert_eq!(
        get_with(&server, "/v1/model", Some("old-key"))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn a_malformed_keys_file_stops_start_up_naming_the_line() {
    let keys = temp_file(
        "keys-bad",
        &format!("{}viewer:not-a-hash\n", key_line("ok", "k")),
    );
    let mut config = config(&[]);
    config.api_keys_file = Some(keys);
    let error = format!("{:#}", mammo_serve::run(config).await.unwrap_err());
    assert!(error.contains("line 2"), "{error}");
    assert!(!error.contains("not-a-hash"), "{error}");
}

#[tokio::test]
async fn metrics_on_their_own_listener_need_no_key_and_leave_the_api_port() {
    let keys = temp_file("keys-metrics", &key_line("viewer", "v-key"));
    let server = start(config(&[
        "--api-keys-file",
        keys.to_str().unwrap(),
        "--metrics-addr",
        "127.0.0.1:0",
    ]))
    .await;
    let metrics_addr = server.metrics_addr.expect("a metrics listener");
    assert_ne!(metrics_addr, server.addr);
    let scrape = server
        .client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.text().await.unwrap().contains("mammo_model_info"));
    let elsewhere = server
        .client
        .get(format!("http://{metrics_addr}/v1/model"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        elsewhere.status(),
        404,
        "only /metrics on the metrics listener"
    );
    assert_eq!(
        get_with(&server, "/metrics", Some("v-key")).await.status(),
        404
    );
}
