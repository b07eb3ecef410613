//! Behaviour under concurrent load on a real server: dynamic batching keeps every answer with
//! its own image, a full queue answers 429 and recovers, /metrics counts what happened, and
//! every prediction carries its timing headers.

mod common;

use common::*;
use futures_util::future::join_all;
use serde_json::Value;

/// Class probabilities of one response, in a fixed order.
fn class_vector(p: &Value) -> Vec<f64> {
    probabilities(&p["class"]["probabilities"])
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// The value of an unlabelled or fully labelled series in a /metrics text.
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A ready server on the shipped model (slow enough on a CPU to build a queue) with `extra` flags.
async fn start_shipped(extra: &[&str]) -> TestServer {
    let model = shipped_model();
    let mut args = vec!["--model", model.to_str().unwrap()];
    args.extend_from_slice(extra);
    start(config(&args)).await
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_each_answer_is_for_its_own_image() {
    let server = start(config(&[
        "--max-batch-size",
        "8",
        "--max-queue-delay-ms",
        "20",
    ]))
    .await;
    let mut expected = Vec::new();
    for name in CLASS_FIXTURES {
        let r = server.post_image(fixture(name), "image/jpeg").await;
        assert_eq!(r.status(), 200);
        expected.push(class_vector(&r.json().await.unwrap()));
    }
    let before = server.get("/metrics").await.text().await.unwrap();

    let requests = (0..32).map(|i| {
        let name = CLASS_FIXTURES[i % CLASS_FIXTURES.len()];
        server.post_image(fixture(name), "image/jpeg")
    });
    let responses = join_all(requests).await;
    for (i, r) in responses.into_iter().enumerate() {
        assert_eq!(r.status(), 200);
        let got = class_vector(&r.json().await.unwrap());
        for (a, b) in got.iter().zip(&expected[i % CLASS_FIXTURES.len()]) {
            assert!(
                (a - b).abs() < 1e-5,
                "request {i} got another image's answer"
            );
        }
    }

    let after = server.get("/metrics").await.text().await.unwrap();
    let runs = series(&after, "mammo_batch_size_count") - series(&before, "mammo_batch_size_count");
    let images = series(&after, "mammo_images_inferred_total")
        - series(&before, "mammo_images_inferred_total");
    assert_eq!(images, 32.0);
    assert!(
        runs < 32.0,
        "32 concurrent images ran in {runs} engine runs: no batching"
    );
}

#[tokio::test]
async fn a_full_queue_answers_429_keeps_health_live_and_recovers() {
    // One single-threaded engine worker on the shipped model (~10 ms an image) drains the queue
    // far slower than two decode slots fill it (a 224-px JPEG, even in a debug build), so a
    // queue of two images overflows when 48 requests arrive together.
    let server = start_shipped(&[
        "--engine-workers",
        "1",
        "--max-queue-size",
        "2",
        "--max-batch-items",
        "2",
        "--max-batch-size",
        "1",
        "--max-queue-delay-ms",
        "0",
    ])
    .await;
    let requests = (0..48).map(|i| server.post_image(fixture(CLASS_FIXTURES[i % 8]), "image/jpeg"));
    let (responses, live) = tokio::join!(join_all(requests), server.get("/health/live"));
    assert_eq!(live.status(), 200, "liveness answers under overload");
    let (mut ok, mut refused) = (0, 0);
    for r in responses {
        match r.status().as_u16() {
            200 => {
                assert!(r.headers().contains_key("x-total-time"));
                ok += 1;
            }
            429 => {
                assert_eq!(r.headers()["retry-after"], "1");
                let problem = expect_problem(r, 429).await;
                assert!(problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains("queue is full"));
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 2 && refused > 0, "{ok} answered, {refused} refused");
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        series(
            &metrics,
            "mammo_http_requests_total{route=\"/predict\",status=\"429\"}"
        ),
        refused as f64
    );
    assert_eq!(series(&metrics, "mammo_queue_depth"), 0.0);
    let r = server
        .post_image(fixture(CLASS_FIXTURES[0]), "image/jpeg")
        .await;
    assert_eq!(r.status(), 200, "recovers once the burst is over");
}

#[tokio::test]
async fn metrics_count_requests_images_and_time() {
    let server = start(config(&[])).await;
    let text = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        r.text().await.unwrap()
    };
    let before = text(server.get("/metrics").await).await;
    assert!(before.contains("# TYPE mammo_http_requests_total counter"));
    assert!(
        before.contains("mammo_model_info{name=\"untrained-test-model\""),
        "{before}"
    );

    let r = server
        .post_image(fixture(CLASS_FIXTURES[2]), "image/jpeg")
        .await;
    assert_eq!(r.status(), 200);
    let ms = |h: &str| r.headers()[h].to_str().unwrap().parse::<f64>().unwrap();
    let (queue, inference, total) = (
        ms("x-queue-time"),
        ms("x-inference-time"),
        ms("x-total-time"),
    );
    assert!(
        queue >= 0.0 && inference > 0.0 && total >= queue + inference,
        "{queue} {inference} {total}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["timing_ms"]["total"].as_f64().unwrap(), total);
    let bad = server
        .post_image(b"not an image".to_vec(), "image/jpeg")
        .await;
    assert_eq!(bad.status(), 400);
    let batch = server
        .post_multipart(
            "/batch",
            form(vec![
                ("files", fixture(CLASS_FIXTURES[0])),
                ("files", fixture(CLASS_FIXTURES[1])),
            ]),
        )
        .await;
    assert_eq!(batch.status(), 200);
    assert!(batch.headers().contains_key("x-queue-time"));

    let after = text(server.get("/metrics").await).await;
    let moved = |name: &str| series(&after, name) - series(&before, name);
    assert_eq!(
        moved("mammo_http_requests_total{route=\"/predict\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        moved("mammo_http_requests_total{route=\"/predict\",status=\"400\"}"),
        1.0
    );
    assert_eq!(
        moved("mammo_http_requests_total{route=\"/batch\",status=\"200\"}"),
        1.0
    );
    assert_eq!(moved("mammo_images_inferred_total"), 3.0);
    assert_eq!(moved("mammo_queue_wait_seconds_count"), 3.0);
    assert!(moved("mammo_inference_duration_seconds_sum") > 0.0);
    assert_eq!(
        moved("mammo_http_request_duration_seconds_count{route=\"/predict\"}"),
        2.0
    );
    // Nothing left in flight but the scrape itself.
    assert!(
        after.contains("mammo_http_requests_in_flight 1\n"),
        "{after}"
    );
}

#[tokio::test]
async fn work_that_waits_past_its_deadline_gets_503_and_the_rest_is_answered() {
    // One single-threaded worker on the shipped model (~10 ms an image) and a 200 ms budget:
    // of 48 requests arriving together (~480 ms of inference; within the default
    // --max-concurrency of 64, so none is refused with 429) the last ones cannot start in
    // time, while the first are answered even on two cores busy with other work (a 60 ms
    // budget once left none answered while clippy ran beside the tests).
    let server = start_shipped(&[
        "--engine-workers",
        "1",
        "--max-batch-size",
        "1",
        "--request-timeout",
        "0.2",
    ])
    .await;
    let requests = (0..48).map(|i| server.post_image(fixture(CLASS_FIXTURES[i % 8]), "image/jpeg"));
    let (mut ok, mut late) = (0, 0);
    for r in join_all(requests).await {
        match r.status().as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(r.headers()["retry-after"], "1");
                expect_problem(r, 503).await;
                late += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok > 0 && late > 0, "{ok} answered, {late} late");
    // Abandoned images leave the queue when a worker next looks (after the run in progress).
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = server.get("/metrics").await.text().await.unwrap();
        if series(&metrics, "mammo_queue_depth") == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        series(&metrics, "mammo_queue_depth"),
        0.0,
        "nothing left queued"
    );
    assert!(
        series(&metrics, "mammo_images_inferred_total") < 48.0,
        "late images were not run"
    );
}
