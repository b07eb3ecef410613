//! The committed OpenAPI document must equal the one the code generates.

#[test]
fn committed_openapi_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = mammo_serve::api::openapi_json();
    assert!(
        committed == generated,
        "openapi/openapi.json differs from the API in the code; regenerate it with\n    make openapi\n(cargo run --bin mammo-serve -- --print-openapi > openapi/openapi.json) and review the diff"
    );
}
