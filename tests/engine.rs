//! The engine through its library API. Queueing, overload, deadlines and ordering run on a
//! gate backend that the test lets through run by one, so they hold on any machine speed;
//! the equality of batched and single runs runs the real ONNX Runtime on the test model.

mod common;

use common::*;
use mammo_serve::engine::gate::Gate;
use mammo_serve::engine::{onnx, Backend, Engine, EngineError, EngineOptions, Unobserved};
use mammo_serve::metrics::{Metrics, Snapshot};
use mammo_serve::pipeline::{self, OnnxOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Floats in one test tensor (the gate backend reads any length).
const LEN: usize = 48;

fn options(queue: usize, batch: usize) -> EngineOptions {
    EngineOptions {
        max_queue_size: queue,
        max_batch_size: batch,
        max_queue_delay: Duration::ZERO,
    }
}

/// An engine of `workers` gate backends behind `gate`.
fn gated(gate: &Gate, workers: usize, options: EngineOptions, metrics: Arc<Metrics>) -> Engine {
    let backends = (0..workers)
        .map(|_| Box::new(gate.backend(8, false)) as Box<dyn Backend>)
        .collect();
    Engine::start(backends, LEN, options, metrics).unwrap()
}

/// `n` different tensors of `len` floats: tensor `k` is a ramp offset by `k`.
fn tensors(n: usize, len: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|k| {
            (0..len)
                .map(|i| (((i + 31 * k) % 97) as f32 / 97.0) - 0.5)
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn batched_runs_of_the_real_model_equal_single_runs_in_request_order() {
    let config = config(&["--max-batch-size", "2"]);
    let env = onnx::environment(&config.ort_lib).unwrap();
    let options: OnnxOptions = config.onnx();
    let (engine, model) = pipeline::load_onnx(&env, &options, Arc::new(Unobserved)).unwrap();
    assert_eq!(model.provider, "CPUExecutionProvider");
    let images = tensors(5, model.metadata.preprocessing.tensor_len());
    let batched = engine.infer(images.clone(), None).await.unwrap();
    assert_eq!(batched.outputs.len(), 5);
    for (i, row) in batched.outputs.iter().enumerate() {
        let alone = engine.infer(vec![images[i].clone()], None).await.unwrap();
        for (x, y) in row.logits.iter().zip(&alone.outputs[0].logits) {
            assert!((x - y).abs() < 1e-4, "image {i}: {row:?} vs {alone:?}");
        }
    }
    assert_ne!(
        batched.outputs[0], batched.outputs[1],
        "different inputs, different logits"
    );
}

#[tokio::test]
async fn queued_requests_are_batched_and_each_gets_its_own_answer() {
    let gate = Gate::closed();
    let metrics = Arc::new(Metrics::default());
    let engine = gated(&gate, 1, options(64, 8), Arc::clone(&metrics));
    let images = tensors(25, LEN);
    // The first request holds the worker at the gate while 24 more queue up behind it.
    let first = {
        let (engine, image) = (engine.clone(), images[0].clone());
        tokio::spawn(async move { engine.infer(vec![image], None).await })
    };
    assert!(gate.waiting(1, PATIENCE).await);
    let rest: Vec<_> = images[1..]
        .iter()
        .map(|image| {
            let (engine, image) = (engine.clone(), image.clone());
            tokio::spawn(async move { engine.infer(vec![image], None).await })
        })
        .collect();
    while engine.queue_depth() < 24 {
        tokio::task::yield_now().await;
    }
    gate.open();
    let mut answers = vec![first.await.unwrap().unwrap()];
    for task in rest {
        answers.push(task.await.unwrap().unwrap());
    }
    for (k, answer) in answers.iter().enumerate() {
        let alone = engine.infer(vec![images[k].clone()], None).await.unwrap();
        assert_eq!(
            answer.outputs, alone.outputs,
            "request {k} got another's answer"
        );
    }
    // One run for the first image, then the 24 queued ones in runs of 8, then 25 singles.
    let text = metrics.render(&Snapshot::default());
    assert_eq!(count(&text, "mammo_batch_size_count"), 1 + 3 + 25, "{text}");
    assert_eq!(count(&text, "mammo_images_inferred_total"), 50);
}

fn count(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_loses_no_accepted_work_and_recovers() {
    let gate = Gate::closed();
    let engine = gated(&gate, 1, options(4, 1), Arc::default());
    let running = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.infer(tensors(1, LEN), None).await })
    };
    assert!(gate.waiting(1, PATIENCE).await);
    // The worker holds one image at the gate; the queue takes four more, then refuses.
    let accepted: Vec<_> = (0..4)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.infer(tensors(1, LEN), None).await })
        })
        .collect();
    while engine.queue_depth() < 4 {
        tokio::task::yield_now().await;
    }
    for _ in 0..10 {
        let refused = engine.infer(tensors(1, LEN), None).await.unwrap_err();
        assert!(matches!(refused, EngineError::Overloaded(4)), "{refused:?}");
    }
    gate.open();
    running
        .await
        .unwrap()
        .expect("the running image is answered");
    for task in accepted {
        assert_eq!(task.await.unwrap().unwrap().outputs.len(), 1);
    }
    assert_eq!(gate.images_run(), 5, "refused images never ran");
    assert_eq!(engine.queue_depth(), 0);
    engine.infer(tensors(1, LEN), None).await.expect("recovers");
}

#[tokio::test]
async fn images_past_their_deadline_are_answered_expired_not_run() {
    let gate = Gate::opened();
    let engine = gated(&gate, 1, options(8, 1), Arc::default());
    let err = engine
        .infer(tensors(1, LEN), Some(Instant::now()))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Expired(_)), "{err:?}");
    assert_eq!(gate.images_run(), 0);
}

#[tokio::test]
async fn abandoned_work_is_dropped_before_it_runs() {
    let gate = Gate::closed();
    let engine = gated(&gate, 1, options(8, 1), Arc::default());
    let running = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.infer(tensors(1, LEN), None).await })
    };
    assert!(gate.waiting(1, PATIENCE).await);
    let abandoned = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.infer(tensors(3, LEN), None).await })
    };
    while engine.queue_depth() < 3 {
        tokio::task::yield_now().await;
    }
    abandoned.abort();
    let _ = abandoned.await;
    gate.open();
    running.await.unwrap().unwrap();
    engine.infer(tensors(1, LEN), None).await.unwrap();
    assert_eq!(gate.images_run(), 2, "the abandoned images never ran");
}

#[tokio::test]
async fn a_batch_larger_than_the_queue_is_refused_whole() {
    let gate = Gate::opened();
    let engine = gated(&gate, 1, options(3, 8), Arc::default());
    let err = engine.infer(tensors(4, LEN), None).await.unwrap_err();
    assert!(matches!(err, EngineError::Overloaded(3)), "{err:?}");
    assert_eq!(engine.queue_depth(), 0);
}

#[tokio::test]
async fn wrong_tensor_length_is_an_inference_error_not_a_crash() {
    let gate = Gate::opened();
    let engine = gated(&gate, 1, options(8, 8), Arc::default());
    let err = engine.infer(vec![vec![0.0; 10]], None).await.unwrap_err();
    assert!(matches!(err, EngineError::Inference(_)), "{err:?}");
    engine
        .infer(tensors(1, LEN), None)
        .await
        .expect("the worker survives");
}
