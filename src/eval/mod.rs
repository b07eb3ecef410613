//! Offline evaluation (used by `src/bin/mammo-eval.rs`): dataset readers, metrics, audit, reports.

pub mod metrics;
