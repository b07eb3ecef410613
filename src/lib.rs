//! mammo-serve: an HTTP inference service that reads a mammogram and returns breast density
//! (BI-RADS A–D), benign/malignant and confidences, as decision support for radiologists.
//!
//! Data path: `api` (HTTP, translation only) → `pipeline` (decode pool, admission, deadline)
//! → `imaging` (bytes → tensor) → `engine` (batching over a `Backend`: ONNX Runtime or a test
//! gate) → `model` (outputs → meaning) → `pipeline` → `api::dto` (JSON). `mammo-eval` runs the
//! same pipeline.

pub mod api;
pub mod audit;
pub mod config;
pub mod connections;
pub mod engine;
pub mod eval;
pub mod imaging;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod reload;
pub mod results;
mod server;
pub mod sr;
pub mod tls;

pub use config::Config;
pub use server::{run, shutdown_signal, Loader, Server};
