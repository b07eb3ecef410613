//! The engine through its library API: real ONNX Runtime, real sessions, the test model.

mod common;

use common::*;
use mammo_serve::engine::{self, Engine, EngineError, Provider};
use mammo_serve::metrics::{Metrics, Snapshot};
use std::sync::Arc;
use std::time::Instant;

fn load_with(extra: &[&str], metrics: Arc<Metrics>) -> Engine {
    let config = config(extra);
    let env = engine::environment(&config.ort_lib).unwrap();
    Engine::load(&env, &config.engine(), metrics).unwrap()
}

fn load(extra: &[&str]) -> Engine {
    load_with(extra, Arc::default())
}

/// `n` different images: image `k` is a ramp offset by `k`.
fn tensors(n: usize, engine: &Engine) -> Vec<Vec<f32>> {
    let len = engine.info().metadata.preprocessing.tensor_len();
    (0..n)
        .map(|k| {
            (0..len)
                .map(|i| (((i + 31 * k) % 97) as f32 / 97.0) - 0.5)
                .collect()
        })
        .collect()
}

fn assert_close(a: &[f32; 8], b: &[f32; 8], what: &str) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-4, "{what}: {a:?} vs {b:?}");
    }
}

#[tokio::test]
async fn batched_runs_equal_single_runs_in_request_order() {
    let engine = load(&["--max-batch-size", "2"]);
    assert_eq!(engine.info().provider, Provider::Cpu);
    let images = tensors(5, &engine);
    let batched = engine.infer(images.clone(), None).await.unwrap();
    assert_eq!(batched.logits.len(), 5);
    for (i, row) in batched.logits.iter().enumerate() {
        let alone = engine.infer(vec![images[i].clone()], None).await.unwrap();
        assert_close(row, &alone.logits[0], &format!("image {i}"));
    }
    assert_ne!(
        batched.logits[0], batched.logits[1],
        "different inputs, different logits"
    );
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_each_gets_its_own_answer() {
    let metrics = Arc::new(Metrics::default());
    let engine = load_with(
        &["--max-batch-size", "8", "--max-queue-delay-ms", "5"],
        Arc::clone(&metrics),
    );
    let images = tensors(24, &engine);
    let mut expected = Vec::new();
    for image in &images {
        expected.push(
            engine
                .infer(vec![image.clone()], None)
                .await
                .unwrap()
                .logits[0],
        );
    }
    let tasks: Vec<_> = images
        .into_iter()
        .map(|image| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.infer(vec![image], None).await })
        })
        .collect();
    for (k, task) in tasks.into_iter().enumerate() {
        let answer = task.await.unwrap().unwrap();
        assert_close(&answer.logits[0], &expected[k], &format!("request {k}"));
    }
    // 24 single runs before, then the 24 concurrent requests in fewer, larger runs.
    let text = metrics.render(&Snapshot::default());
    let runs_of_one = count(&text, "mammo_batch_size_bucket{le=\"1\"}");
    let runs = count(&text, "mammo_batch_size_count");
    assert!(
        runs < 48 && runs_of_one < runs,
        "no batching happened:\n{text}"
    );
    assert_eq!(count(&text, "mammo_images_inferred_total"), 48);
}

fn count(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_loses_no_accepted_work_and_recovers() {
    // The shipped model (~10 ms an image) on one worker: the test model runs in microseconds,
    // and on two busy cores each push could wake the worker, which then drained the queue
    // before the next push (seen once in CI: 60 done, none refused).
    let model = shipped_model();
    let engine = load(&[
        "--model",
        model.to_str().unwrap(),
        "--engine-workers",
        "1",
        "--max-queue-size",
        "4",
        "--max-batch-size",
        "1",
    ]);
    let tasks: Vec<_> = tensors(60, &engine)
        .into_iter()
        .map(|image| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.infer(vec![image], None).await })
        })
        .collect();
    let (mut done, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(answer) => {
                assert_eq!(answer.logits.len(), 1);
                done += 1;
            }
            Err(EngineError::Overloaded(4)) => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(refused > 0 && done >= 4, "done {done}, refused {refused}");
    assert_eq!(engine.queue_depth(), 0);
    engine
        .infer(tensors(1, &engine), None)
        .await
        .expect("recovers");
}

#[tokio::test]
async fn images_past_their_deadline_are_answered_expired_not_run() {
    let engine = load(&["--max-batch-size", "1"]);
    let err = engine
        .infer(tensors(1, &engine), Some(Instant::now()))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Expired(_)), "{err:?}");
}

#[tokio::test]
async fn a_batch_larger_than_the_queue_is_refused_whole() {
    let engine = load(&["--max-queue-size", "3", "--max-batch-items", "3"]);
    let err = engine.infer(tensors(4, &engine), None).await.unwrap_err();
    assert!(matches!(err, EngineError::Overloaded(3)), "{err:?}");
    assert_eq!(engine.queue_depth(), 0);
}

#[tokio::test]
async fn wrong_tensor_length_is_an_inference_error_not_a_crash() {
    let engine = load(&[]);
    let err = engine.infer(vec![vec![0.0; 10]], None).await.unwrap_err();
    assert!(matches!(err, EngineError::Inference(_)), "{err:?}");
    engine
        .infer(tensors(1, &engine), None)
        .await
        .expect("the worker survives");
}
