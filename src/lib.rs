//! mammo-serve: an HTTP inference service that reads a mammogram and returns breast density
//! (BI-RADS A–D), benign/malignant and confidences, as decision support for radiologists.
//!
//! Data path: `api` (HTTP) → `imaging` (bytes → tensor) → `engine` (tensor → logits, ort)
//! → `model` (logits → meaning) → `api::types` (JSON).

pub mod api;
pub mod config;
pub mod engine;
pub mod eval;
pub mod imaging;
pub mod metrics;
pub mod model;
mod server;

pub use config::Config;
pub use server::{run, shutdown_signal, Loader, Server};
