//! Runs a set of image files through the server's own pipeline (decode pool, engine,
//! postprocessing), many images in flight so that the engine can batch them.

use super::dataset::Item;
use crate::pipeline::{Pipeline, Reading};
use bytes::Bytes;
use futures_util::StreamExt;

/// One image's outcome: the model's reading, or why it could not be read.
pub type Outcome = Result<Reading, String>;

/// Reads every item, in order, `in_flight` at a time; `progress` is called with the number of
/// images done so far.
pub fn read_all(
    pipeline: &Pipeline,
    items: &[Item],
    in_flight: usize,
    progress: impl Fn(usize),
) -> Vec<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    runtime.block_on(async {
        let mut outcomes = Vec::with_capacity(items.len());
        let mut readings = futures_util::stream::iter(items)
            .map(|item| read_one(pipeline, item))
            .buffered(in_flight.max(1));
        while let Some(outcome) = readings.next().await {
            outcomes.push(outcome);
            progress(outcomes.len());
        }
        outcomes
    })
}

async fn read_one(pipeline: &Pipeline, item: &Item) -> Outcome {
    let path = item.path.clone();
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .map_err(|e| format!("reading task failed: {e}"))?
        .map_err(|e| format!("cannot read the file: {e}"))?;
    let mut readings = pipeline
        .read(vec![Bytes::from(bytes)], None)
        .await
        .map_err(|e| format!("inference failed: {e}"))?;
    readings.images.remove(0).map_err(|e| e.to_string())
}
