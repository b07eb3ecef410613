//! Shared test harness: a real server on 127.0.0.1:0 over the real ONNX Runtime and the
//! generated untrained test model (`make test-model`), plus fixtures and raw-socket helpers.
#![allow(dead_code)]

use clap::Parser;
use mammo_serve::engine::gate::Gate;
use mammo_serve::engine::{Backend, Engine};
use mammo_serve::model::ModelMetadata;
use mammo_serve::pipeline::ModelInfo;
use mammo_serve::{Config, Server};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The trained model the repository ships (the server's default).
pub fn shipped_model() -> PathBuf {
    repo().join(mammo_serve::config::DEFAULT_MODEL)
}

/// The committed untrained test model (scripts/make_test_model.py): the contract without an
/// out-of-distribution detector.
pub fn test_model() -> PathBuf {
    repo().join("tests/fixtures/models/untrained.onnx")
}

/// The committed untrained test model with a stand-in detector: `ood_score` is the mean of the
/// normalised input, above 0 not assessed (the fixture mammograms pass, an inverted one does
/// not).
pub fn ood_test_model() -> PathBuf {
    repo().join("tests/fixtures/models/untrained-ood.onnx")
}

/// The ONNX Runtime library: ORT_DYLIB_PATH, else where `make setup` puts it.
pub fn ort_lib() -> PathBuf {
    let path = std::env::var_os("ORT_DYLIB_PATH")
        .map_or_else(|| repo().join(".ort/lib/libonnxruntime.so"), PathBuf::from);
    assert!(
        path.is_file(),
        "{} is missing: run `make setup`",
        path.display()
    );
    path
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures").join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// One JPEG per class, copied from the DPhi set (see tests/fixtures/README.md).
pub const CLASS_FIXTURES: [&str; 8] = [
    "d1b_Image_2.jpg",
    "d1m_Image_3.jpg",
    "d2b_Image_60.jpg",
    "d2m_Image_9.jpg",
    "d3b_Image_1.jpg",
    "d3m_Image_31.jpg",
    "d4b_Image_8.jpg",
    "d4m_Image_83.jpg",
];

/// A configuration for the test model on port 0, CPU, with `extra` flags on top.
pub fn config(extra: &[&str]) -> Config {
    let model = test_model();
    let lib = ort_lib();
    let mut args: Vec<String> = [
        "mammo-serve",
        "--port",
        "0",
        "--device",
        "cpu",
        "--intra-threads",
        "1",
        "--warmup-runs",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        "--model".into(),
        model.display().to_string(),
        "--ort-lib".into(),
        lib.display().to_string(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Config::try_parse_from(args).expect("test configuration parses")
}

/// The test models' preprocessing, as the planes before normalisation see it: 224 px, every
/// full-field step, bilinear (mean 0 and std 1, so a tensor is the plane itself).
pub fn full_field() -> mammo_serve::imaging::Preprocessing {
    mammo_serve::imaging::Preprocessing {
        height: 224,
        width: 224,
        mean: [0.0; 3],
        std: [1.0; 3],
        resize: mammo_serve::imaging::ResizeFilter::Bilinear,
        steps: "crop_breast,orient_left,pad_square".parse().unwrap(),
    }
}

/// Flags for a server whose one engine worker takes one image at a time while two more wait:
/// the queue is full with three images in (gate tests).
pub const ONE_WORKER_TWO_WAITING: [&str; 8] = [
    "--engine-workers",
    "1",
    "--max-queue-size",
    "2",
    "--max-batch-items",
    "2",
    "--max-batch-size",
    "1",
];

/// The value of an unlabelled or fully labelled series in a /metrics text (0 when absent).
pub fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Images waiting for the engine now, from `/metrics`.
pub async fn queue_depth(server: &TestServer) -> f64 {
    let metrics = server.get("/metrics").await.text().await.unwrap();
    series(&metrics, "mammo_queue_depth")
}

/// How long a test waits for something the server must do before it fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A running server; stops gracefully when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The `/metrics` listener's address, with `--metrics-addr`.
    pub metrics_addr: Option<SocketAddr>,
    pub client: reqwest::Client,
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_multipart(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// `/batch` of a multipart form, expecting 200; the JSON answer.
    pub async fn batch_json(&self, form: reqwest::multipart::Form) -> Value {
        let response = self.post_multipart("/batch", form).await;
        assert_eq!(response.status(), 200, "/batch");
        response.json().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `/predict` of `bytes`, expecting 200; the JSON answer.
    pub async fn predict_json(&self, bytes: Vec<u8>, content_type: &str) -> Value {
        let response = self.post_image(bytes, content_type).await;
        assert_eq!(response.status(), 200, "/predict as {content_type}");
        response.json().await.unwrap()
    }

    pub async fn post_image(&self, bytes: Vec<u8>, content_type: &str) -> reqwest::Response {
        self.post_bytes("/predict", bytes, content_type).await
    }

    /// POSTs `bytes` as `content_type` to `path` (which may carry a query).
    pub async fn post_bytes(
        &self,
        path: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap()
    }
}

impl TestServer {
    /// Sends the server its shutdown signal (as SIGTERM does for the binary).
    pub fn begin_shutdown(&self) {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(());
        }
    }

    /// Whether the server has stopped serving within `within` of now.
    pub async fn stopped(&mut self, within: Duration) -> bool {
        let serving = self.serving.take().expect("still serving");
        tokio::time::timeout(within, serving).await.is_ok()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// Binds and serves without loading the model: every prediction route answers 503.
pub async fn start_unloaded(config: Config) -> (TestServer, mammo_serve::Loader) {
    let server = Server::bind(config).await.expect("server binds");
    let loader = server.loader();
    (serve(server), loader)
}

/// The model contract of the test model, for engines that run no model file.
pub fn gate_model() -> ModelInfo {
    let props = [
        ("mammo.labels", "D1B,D1M,D2B,D2M,D3B,D3M,D4B,D4M"),
        ("mammo.input_size", "64"),
        ("mammo.mean", "0.5,0.5,0.5"),
        ("mammo.std", "0.5,0.5,0.5"),
        ("mammo.malignancy_threshold", "0.5"),
        ("mammo.version", "gate"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    let (metadata, _) = ModelMetadata::from_props(&props).expect("a complete contract");
    ModelInfo {
        name: "gate".into(),
        path: "gate".into(),
        sha256: "0".repeat(64),
        size_bytes: 0,
        metadata,
        provider: "gate".into(),
        fp16: false,
    }
}

/// A ready server whose engine runs one `gate` backend per `--engine-workers` instead of a
/// model, so that a test decides when each engine run finishes.
pub async fn start_gated(config: Config, gate: &Gate) -> TestServer {
    let model = gate_model();
    let server = Server::bind(config.clone()).await.expect("server binds");
    let backends: Vec<Box<dyn Backend>> = (0..config.engine_workers)
        .map(|_| Box::new(gate.backend(8, false)) as Box<dyn Backend>)
        .collect();
    let tensor_len = model.metadata.preprocessing.tensor_len();
    let engine = Engine::start(backends, tensor_len, config.engine(), server.observer())
        .expect("engine starts");
    server.install(engine, model);
    serve(server)
}

/// Serves `server` in the background until the returned handle is dropped.
fn serve(server: Server) -> TestServer {
    let addr = server.local_addr();
    let metrics_addr = server.metrics_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    TestServer {
        addr,
        metrics_addr,
        client,
        stop: std::sync::Mutex::new(Some(stop)),
        serving: Some(serving),
    }
}

/// A ready server: bound, model loaded and warmed up.
pub async fn start(config: Config) -> TestServer {
    let (server, loader) = start_unloaded(config).await;
    loader.load().await.expect("model loads");
    server
}

/// Asserts an `application/problem+json` error with `status` and returns its body.
pub async fn expect_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], "about:blank");
    assert!(!body["title"].as_str().unwrap().is_empty());
    assert!(!body["detail"].as_str().unwrap().is_empty());
    body
}

/// Opens a raw connection and sends a request's head and the first `sent` bytes of `body`,
/// leaving the request in flight until [`finish_upload`].
pub async fn start_upload(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
    sent: usize,
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..sent]).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

/// Sends the rest of the body (if any) and reads the raw response: (status, body text).
pub async fn finish_upload(mut stream: TcpStream, rest: &[u8]) -> (u16, String) {
    if !rest.is_empty() {
        stream.write_all(rest).await.unwrap();
    }
    read_response(&mut stream).await
}

/// Reads a whole `Connection: close` response: (status, body text).
pub async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Largest element-wise |a - b| of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A `/batch` multipart body: one `files` part per (file name, bytes).
pub fn files_form<'a>(
    parts: impl IntoIterator<Item = (&'a str, Vec<u8>)>,
) -> reqwest::multipart::Form {
    parts
        .into_iter()
        .fold(reqwest::multipart::Form::new(), |form, (name, bytes)| {
            form.part(
                "files",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
            )
        })
}

/// The `id` field of every element of a JSON array.
pub fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v["id"].as_str().expect("an id").to_string())
        .collect()
}

/// Reads a probability map into (key, value) pairs.
pub fn probabilities(value: &Value) -> Vec<(String, f64)> {
    value
        .as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect()
}

pub fn sha256_hex(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A JPEG signature followed by bytes that are no JPEG.
pub fn corrupt_jpeg() -> Vec<u8> {
    [
        &[0xFF, 0xD8, 0xFF, 0xE0][..],
        b"\x00\x10 this is not the rest of a JPEG file",
    ]
    .concat()
}

/// A multipart form with one part per (field name, bytes).
pub fn form(parts: Vec<(&'static str, Vec<u8>)>) -> reqwest::multipart::Form {
    parts
        .into_iter()
        .fold(reqwest::multipart::Form::new(), |form, (name, bytes)| {
            form.part(name, reqwest::multipart::Part::bytes(bytes))
        })
}

/// A line of an API keys file: `name:` and the lowercase hex SHA-256 of `key`.
pub fn key_line(name: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash: String = Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{name}:{hash}\n")
}

/// The JSON values of a JSON-lines file (an audit trail), one per line.
pub fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Writes `text` to a file named for `name` and this test process in the target's temp folder.
pub fn temp_file(name: &str, text: &str) -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// A STOW-RS body: each of `parts` (content type, bytes) as a part of a `multipart/related`
/// body; returns the request's content type and the body.
pub fn related(parts: &[(&str, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "mammo-test-boundary-7d3f";
    let mut body = Vec::new();
    for (content_type, bytes) in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        body,
    )
}

/// A ready server on the test model with its stand-in detector and a DICOMweb results folder
/// at `outbox`, a study settling after `settle` seconds, with `extra` flags on top.
pub async fn start_results(outbox: &Path, settle: &str, extra: &[&str]) -> TestServer {
    let model = ood_test_model();
    let mut args = vec![
        "--model",
        model.to_str().unwrap(),
        "--results-outbox",
        outbox.to_str().unwrap(),
        "--study-settle",
        settle,
    ];
    args.extend_from_slice(extra);
    start(config(&args)).await
}

/// A fresh empty folder under the system's temporary one, named for `what` and this process.
pub fn scratch(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mammo-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `check` on a 50 ms tick until it returns `Some`: the condition decides, not the
/// time; the test fails after [`PATIENCE`] rather than hang.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
    }
}
