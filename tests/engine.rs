//! The engine through its library API: real ONNX Runtime, real session, the test model.

mod common;

use common::*;
use mammo_serve::engine::{self, Engine, EngineError, Provider};
use std::time::Duration;

fn load(extra: &[&str]) -> Engine {
    let config = config(extra);
    let env = engine::environment(&config.ort_lib).unwrap();
    Engine::load(&env, &config.engine()).unwrap()
}

fn tensors(n: usize, engine: &Engine) -> Vec<f32> {
    let len = engine.info().metadata.preprocessing.tensor_len();
    (0..n * len)
        .map(|i| ((i % 97) as f32 / 97.0) - 0.5)
        .collect()
}

#[tokio::test]
async fn split_batches_equal_single_runs() {
    let engine = load(&["--max-batch-size", "2"]);
    assert_eq!(engine.info().provider, Provider::Cpu);
    let len = engine.info().metadata.preprocessing.tensor_len();
    let input = tensors(5, &engine);
    let batched = engine.infer(input.clone(), 5).await.unwrap();
    assert_eq!(batched.logits.len(), 5);
    for (i, row) in batched.logits.iter().enumerate() {
        let alone = engine
            .infer(input[i * len..(i + 1) * len].to_vec(), 1)
            .await
            .unwrap();
        for (a, b) in row.iter().zip(&alone.logits[0]) {
            assert!((a - b).abs() < 1e-4, "image {i}: {a} vs {b}");
        }
    }
    assert_ne!(
        batched.logits[0], batched.logits[1],
        "different inputs, different logits"
    );
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_accepted_work_completes() {
    let engine = load(&["--max-queue-size", "1", "--max-batch-size", "1"]);
    // Keep the worker busy with a long job (hundreds of single-image runs)...
    let busy = tokio::spawn({
        let engine = engine.clone();
        let input = tensors(1500, &engine);
        async move { engine.infer(input, 1500).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so the next job waits in the one queue slot...
    let queued = tokio::spawn({
        let engine = engine.clone();
        let input = tensors(1, &engine);
        async move { engine.infer(input, 1).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...and one more is refused immediately.
    let refused = engine.infer(tensors(1, &engine), 1).await;
    assert!(
        matches!(refused, Err(EngineError::Overloaded(1))),
        "{refused:?}"
    );
    assert_eq!(busy.await.unwrap().unwrap().logits.len(), 1500);
    let queued = queued.await.unwrap().unwrap();
    assert!(
        queued.queue > Duration::from_millis(10),
        "it waited behind the long job: {:?}",
        queued.queue
    );
    engine
        .infer(tensors(1, &engine), 1)
        .await
        .expect("recovers");
}

#[tokio::test]
async fn wrong_tensor_length_is_an_inference_error_not_a_crash() {
    let engine = load(&[]);
    let err = engine.infer(vec![0.0; 10], 1).await.unwrap_err();
    assert!(matches!(err, EngineError::Inference(_)), "{err:?}");
    engine
        .infer(tensors(1, &engine), 1)
        .await
        .expect("the worker survives");
}
