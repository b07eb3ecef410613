//! Offline evaluation (used by `src/bin/mammo-eval.rs`): dataset readers, metrics, audit, reports.

pub mod audit;
pub mod dataset;
pub mod html;
pub mod inference;
pub mod manifest;
pub mod metrics;
pub mod plots;
pub mod prepared;
pub mod report;

/// Maps `f` over `items` on `threads` scoped threads, keeping order.
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread panicked"))
            .collect()
    })
}
