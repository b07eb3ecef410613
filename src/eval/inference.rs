//! Runs a set of images through the same imaging and engine code as the server: decoding and
//! preprocessing on worker threads, ahead of batched inference.

use super::dataset::Item;
use crate::engine::Engine;
use crate::imaging::{self, DecodeLimits};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// One image's outcome: its eight logits, or why it could not be read.
pub type Outcome = Result<[f32; 8], String>;

/// Infers every item in batches of `batch`, with `decoders` threads decoding ahead;
/// `progress` is called with the number of images done so far.
pub fn infer_all(
    engine: &Engine,
    items: &[Item],
    limits: &DecodeLimits,
    decoders: usize,
    batch: usize,
    progress: impl Fn(usize),
) -> Vec<Outcome> {
    let preprocessing = engine.info().metadata.preprocessing.clone();
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::sync_channel::<(usize, Result<Vec<f32>, String>)>(batch.max(1) * 2);
    let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
    std::thread::scope(|scope| {
        for _ in 0..decoders.max(1) {
            let (tx, next, preprocessing) = (tx.clone(), &next, &preprocessing);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let tensor = std::fs::read(&item.path)
                    .map_err(|e| format!("cannot read the file: {e}"))
                    .and_then(|bytes| {
                        imaging::to_tensor(&bytes.into(), limits, preprocessing)
                            .map_err(|e| e.to_string())
                    });
                if tx.send((i, tensor)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut pending: Vec<(usize, Vec<f32>)> = Vec::with_capacity(batch);
        let mut done = 0;
        for (i, tensor) in rx {
            match tensor {
                Ok(t) => pending.push((i, t)),
                Err(e) => outcomes[i] = Some(Err(e)),
            }
            if pending.len() >= batch {
                run_batch(engine, &mut pending, &mut outcomes);
            }
            done += 1;
            progress(done);
        }
        run_batch(engine, &mut pending, &mut outcomes);
    });
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err("not processed".into())))
        .collect()
}

fn run_batch(
    engine: &Engine,
    pending: &mut Vec<(usize, Vec<f32>)>,
    outcomes: &mut [Option<Outcome>],
) {
    if pending.is_empty() {
        return;
    }
    let indices: Vec<usize> = pending.iter().map(|(i, _)| *i).collect();
    let images: Vec<Vec<f32>> = pending.drain(..).map(|(_, t)| t).collect();
    match engine.infer_blocking(images) {
        Ok(inference) => indices
            .iter()
            .zip(inference.logits)
            .for_each(|(&i, l)| outcomes[i] = Some(Ok(l))),
        Err(e) => indices
            .iter()
            .for_each(|&i| outcomes[i] = Some(Err(format!("inference failed: {e}")))),
    }
}
