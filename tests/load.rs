//! Behaviour under concurrent load on a real server: dynamic batching keeps every answer with
//! its own image, a full queue answers 429 and recovers, late work gets 503 without running,
//! /metrics counts what happened, and every prediction carries its timing headers. Overload
//! and deadlines run on a gate backend that the test lets through, so they hold on any
//! machine speed.

mod common;

use common::*;
use futures_util::future::join_all;
use mammo_serve::engine::gate::Gate;
use serde_json::Value;

/// Class probabilities of one response, in a fixed order.
fn class_vector(p: &Value) -> Vec<f64> {
    probabilities(&p["class"]["probabilities"])
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

#[tokio::test]
async fn queued_requests_are_batched_and_each_answer_is_for_its_own_image() {
    let gate = Gate::closed();
    let server = start_gated(
        config(&["--engine-workers", "1", "--max-batch-size", "8"]),
        &gate,
    )
    .await;
    gate.release(CLASS_FIXTURES.len());
    let mut expected = Vec::new();
    for name in CLASS_FIXTURES {
        let r = server.post_image(fixture(name), "image/jpeg").await;
        assert_eq!(r.status(), 200);
        expected.push(class_vector(&r.json().await.unwrap()));
    }
    let before = server.get("/metrics").await.text().await.unwrap();

    // One request holds the worker at the gate while 32 queue behind it.
    let first = server.post_image(fixture(CLASS_FIXTURES[0]), "image/jpeg");
    let (first, responses) = tokio::join!(first, async {
        assert!(gate.waiting(1, PATIENCE).await);
        let requests = join_all((0..32).map(|i| {
            let name = CLASS_FIXTURES[i % CLASS_FIXTURES.len()];
            server.post_image(fixture(name), "image/jpeg")
        }));
        let releaser = async {
            while queue_depth(&server).await < 32.0 {
                tokio::task::yield_now().await;
            }
            gate.open();
        };
        tokio::join!(requests, releaser).0
    });
    assert_eq!(first.status(), 200);
    for (i, r) in responses.into_iter().enumerate() {
        assert_eq!(r.status(), 200);
        let got = class_vector(&r.json().await.unwrap());
        assert_eq!(
            got,
            expected[i % CLASS_FIXTURES.len()],
            "request {i} got another image's answer"
        );
    }

    let after = server.get("/metrics").await.text().await.unwrap();
    let moved = |name| series(&after, name) - series(&before, name);
    assert_eq!(moved("mammo_images_inferred_total"), 33.0);
    assert_eq!(
        moved("mammo_batch_size_count"),
        5.0,
        "one run, then 32 in runs of 8"
    );
}

#[tokio::test]
async fn a_full_queue_answers_429_keeps_health_live_and_recovers() {
    let gate = Gate::closed();
    let server = start_gated(config(&ONE_WORKER_TWO_WAITING), &gate).await;
    let image = || fixture(CLASS_FIXTURES[0]);
    // The first request holds the only worker at the gate; of five more, the queue takes two.
    let first = server.post_image(image(), "image/jpeg");
    let (first, held) = tokio::join!(first, async {
        assert!(gate.waiting(1, PATIENCE).await);
        let burst = join_all((0..5).map(|_| server.post_image(image(), "image/jpeg")));
        let live = server.get("/health/live");
        let releaser = async {
            // Every refusal is answered at once, before any image runs.
            while server_429s(&server).await < 3.0 {
                tokio::task::yield_now().await;
            }
            gate.open();
        };
        let (burst, live, ()) = tokio::join!(burst, live, releaser);
        assert_eq!(live.status(), 200, "liveness answers under overload");
        burst
    });
    assert_eq!(first.status(), 200);
    let (mut ok, mut refused) = (1, 0);
    for r in held {
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
    assert_eq!(
        (ok, refused),
        (3, 3),
        "the running image and the two queued are answered"
    );
    assert_eq!(gate.images_run(), 3, "refused images never ran");
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert_eq!(series(&metrics, "mammo_queue_depth"), 0.0);
    let r = server.post_image(image(), "image/jpeg").await;
    assert_eq!(r.status(), 200, "recovers once the burst is over");
}

/// `/predict` answers with 429 so far, from `/metrics`.
async fn server_429s(server: &TestServer) -> f64 {
    let metrics = server.get("/metrics").await.text().await.unwrap();
    series(
        &metrics,
        "mammo_http_requests_total{route=\"/predict\",status=\"429\"}",
    )
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
        before.contains("mammo_model_info{name=\"untrained\""),
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
async fn work_that_waits_past_its_deadline_gets_503_without_running_and_the_rest_is_answered() {
    let gate = Gate::closed();
    let server = start_gated(
        config(&[
            "--engine-workers",
            "1",
            "--max-batch-size",
            "1",
            "--request-timeout",
            "1",
        ]),
        &gate,
    )
    .await;
    let image = || fixture(CLASS_FIXTURES[1]);
    // A is let through in time; B is taken by the worker and held at the gate; C, D and E
    // wait in the queue. All of B..E pass their 1 s deadline: 503. (The only time the test
    // depends on: the worker takes B within 1 s of A's run, a thread's wake-up.)
    let a = server.post_image(image(), "image/jpeg");
    let (a, late) = tokio::join!(a, async {
        assert!(gate.waiting(1, PATIENCE).await);
        let b = server.post_image(image(), "image/jpeg");
        let rest = async {
            gate.release(1);
            assert!(gate.finished(1, PATIENCE).await, "A ran");
            assert!(gate.waiting(1, PATIENCE).await, "B reaches the gate");
            join_all((0..3).map(|_| server.post_image(image(), "image/jpeg"))).await
        };
        let (b, mut rest) = tokio::join!(b, rest);
        rest.insert(0, b);
        rest
    });
    assert_eq!(a.status(), 200);
    for r in late {
        assert_eq!(r.headers()["retry-after"], "1");
        expect_problem(r, 503).await;
    }
    gate.open();
    // F queues behind C, D and E, which the worker drops as expired on its way to F.
    assert_eq!(server.post_image(image(), "image/jpeg").await.status(), 200);
    assert_eq!(
        gate.images_run(),
        3,
        "A, B (taken before its deadline) and F"
    );
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        series(&metrics, "mammo_queue_depth"),
        0.0,
        "nothing left queued"
    );
    assert_eq!(series(&metrics, "mammo_images_inferred_total"), 3.0);
}
