//! The `/batch` body readers: multipart (`files` parts) and JSON (`{items: [{id,
//! image_base64}]}`), chosen by the first byte. An error or at most the allowed items, never
//! a panic.
#![no_main]

use axum::body::Body;
use axum::extract::Request;
use libfuzzer_sys::fuzz_target;
use mammo_serve::api::handlers::read_batch;
use std::sync::OnceLock;

/// The boundary the multipart seeds use (scripts/fuzz.sh).
const BOUNDARY: &str = "mammo-fuzz-boundary";
const MAX_ITEMS: usize = 8;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let content_type = if kind & 1 == 0 {
        format!("multipart/form-data; boundary={BOUNDARY}")
    } else {
        "application/json".to_string()
    };
    let request = Request::builder()
        .method("POST")
        .uri("/batch")
        .header("content-type", content_type)
        .body(Body::from(body.to_vec()))
        .expect("a valid request");
    if let Ok(items) = runtime().block_on(read_batch(request, MAX_ITEMS)) {
        assert!(items.len() <= MAX_ITEMS);
    }
});
