//! The `mammo-serve` binary as operators run it: start-up errors, JSON logs, graceful SIGTERM.

mod common;

use common::*;
use mammo_serve::engine::Unobserved;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mammo-serve"));
    for (key, _) in std::env::vars() {
        if key.starts_with("MAMMO_") {
            command.env_remove(key);
        }
    }
    command.env("ORT_DYLIB_PATH", ort_lib());
    command.args(["--port", "0", "--intra-threads", "1"]);
    command
}

/// Runs the binary to completion (it must exit by itself) and returns (success, stderr).
fn run_to_exit(command: &mut Command) -> (bool, String) {
    let output = command.stdout(Stdio::null()).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn a_missing_model_file_stops_start_up_with_its_path() {
    let (ok, stderr) = run_to_exit(binary().args(["--model", "/nonexistent/model.onnx"]));
    assert!(!ok);
    assert!(
        stderr.contains("model file /nonexistent/model.onnx not found"),
        "{stderr}"
    );
}

#[test]
fn a_model_in_another_precision_than_asked_for_stops_start_up() {
    let (ok, stderr) = run_to_exit(
        binary()
            .args(["--precision", "int8", "--model"])
            .arg(test_model()),
    );
    assert!(!ok);
    assert!(
        stderr.contains("untrained-int8.onnx not found"),
        "int8 looks for the sibling file: {stderr}"
    );
    let int8 = repo().join("models/mammo-int8.onnx").display().to_string();
    let options = config(&["--device", "cpu", "--precision", "fp32", "--model", &int8]).onnx();
    let env = mammo_serve::engine::onnx::environment(&ort_lib()).unwrap();
    let refused = mammo_serve::pipeline::load_onnx(&env, &options, Arc::new(Unobserved))
        .err()
        .expect("an int8 file served as fp32");
    assert!(
        refused
            .to_string()
            .contains(&format!("--precision fp32 asked for, but {int8} is int8")),
        "{refused}"
    );
}

#[test]
fn a_missing_onnx_runtime_library_names_the_setup_command() {
    let (ok, stderr) = run_to_exit(
        binary()
            .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
            .arg("--model")
            .arg(test_model()),
    );
    assert!(!ok);
    assert!(
        stderr.contains("ONNX Runtime library not found at /nonexistent/libonnxruntime.so"),
        "{stderr}"
    );
    assert!(stderr.contains("make setup"), "{stderr}");
}

#[test]
fn an_explicit_gpu_device_that_cannot_be_had_names_the_missing_library() {
    for (device, library) in [
        ("cuda", "libonnxruntime_providers_cuda.so"),
        ("tensorrt", "libonnxruntime_providers_tensorrt.so"),
    ] {
        let (ok, stderr) = run_to_exit(
            binary()
                .args(["--device", device])
                .arg("--model")
                .arg(test_model()),
        );
        assert!(!ok, "{device} must not fall back silently");
        assert!(stderr.contains(library), "{device}: {stderr}");
    }
}

#[test]
fn a_corrupt_model_file_stops_start_up() {
    let path = std::env::temp_dir().join(format!("mammo-corrupt-{}.onnx", std::process::id()));
    std::fs::write(&path, b"this is not an ONNX protobuf").unwrap();
    let (ok, stderr) = run_to_exit(binary().args(["--device", "cpu"]).arg("--model").arg(&path));
    std::fs::remove_file(&path).ok();
    assert!(!ok);
    assert!(stderr.contains("could not load model"), "{stderr}");
}

#[test]
fn invalid_flag_combinations_are_refused() {
    let (ok, stderr) = run_to_exit(
        binary()
            .args(["--device", "cpu", "--fp16"])
            .arg("--model")
            .arg(test_model()),
    );
    assert!(!ok);
    assert!(stderr.contains("--fp16"), "{stderr}");
}

#[test]
fn help_documents_every_flag_with_its_environment_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_mammo-serve"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for (flag, env) in [
        ("--host", "MAMMO_HOST"),
        ("--port", "MAMMO_PORT"),
        ("--model", "MAMMO_MODEL"),
        ("--device", "MAMMO_DEVICE"),
        ("--fp16", "MAMMO_FP16"),
        ("--trt-cache-dir", "MAMMO_TRT_CACHE_DIR"),
        ("--intra-threads", "MAMMO_INTRA_THREADS"),
        ("--max-body-bytes", "MAMMO_MAX_BODY_BYTES"),
        ("--max-batch-items", "MAMMO_MAX_BATCH_ITEMS"),
        ("--request-timeout", "MAMMO_REQUEST_TIMEOUT"),
        ("--max-concurrency", "MAMMO_MAX_CONCURRENCY"),
        ("--log-format", "MAMMO_LOG_FORMAT"),
        ("--ort-lib", "ORT_DYLIB_PATH"),
    ] {
        assert!(
            help.contains(flag) && help.contains(&format!("env: {env}")),
            "{flag} / {env} not in --help:\n{help}"
        );
    }
}

/// A running binary with JSON logs, read line by line on a thread.
struct Running {
    child: Child,
    logs: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Running {
    fn start(extra: &[&str]) -> Running {
        let mut child = binary()
            .args(["--log-format", "json", "--device", "cpu"])
            .arg("--model")
            .arg(test_model())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            logs,
            seen: Vec::new(),
        }
    }

    /// Waits until the server has logged where it listens and that it is ready: its address.
    fn ready_at(&mut self) -> std::net::SocketAddr {
        let listening = self.wait_for("listening");
        let addr = listening["fields"]["address"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        self.wait_for("ready");
        addr
    }

    /// Waits for a log line whose message contains `text`.
    fn wait_for(&mut self, text: &str) -> Value {
        self.wait_for_count(text, 1)
    }

    /// Waits for the `n`th log line (counting from the start) whose message contains `text`.
    fn wait_for_count(&mut self, text: &str, n: usize) -> Value {
        let matches = |line: &Value| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(text))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(line) = self.logs.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(line.clone());
                if matches(&line) && self.seen.iter().filter(|l| matches(l)).count() >= n {
                    return line;
                }
            }
        }
        panic!("no log line {n} with {text:?}; saw {:?}", self.seen);
    }

    /// Waits (at most 20 s) for the process to exit.
    fn exit(&mut self) -> std::process::ExitStatus {
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|scope| {
            let child = &mut self.child;
            scope.spawn(move || {
                let _ = tx.send(child.wait());
            });
            rx.recv_timeout(Duration::from_secs(20))
                .expect("the process exits")
                .unwrap()
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_cleanly() {
    // Request events at debug level, so that the test sees the request in flight.
    let mut server = Running::start(&["--log", "info,ort=warn,tower_http=debug"]);
    let addr = server.ready_at();

    let image = fixture("d3b_Image_1.jpg");
    let in_flight = start_upload(addr, "/predict", "image/jpeg", &image, 200).await;
    server.wait_for("started processing request");
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    server.wait_for("SIGTERM");

    let (status, body) = finish_upload(in_flight, &image[200..]).await;
    assert_eq!(status, 200, "the in-flight request completes: {body}");
    let exit = server.exit();
    assert!(exit.success(), "{exit:?}");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer accepting"
    );

    // JSON logs: the request was logged in a span with its request id, and nothing logged
    // carries image bytes.
    while let Ok(line) = server.logs.try_recv() {
        server.seen.push(line);
    }
    let request_line = server
        .seen
        .iter()
        .find(|l| l["span"]["path"] == "/predict")
        .unwrap_or_else(|| panic!("no /predict span in {:?}", server.seen));
    assert_eq!(
        request_line["span"]["request_id"].as_str().unwrap().len(),
        36
    );
    let all_logs: String = server.seen.iter().map(|l| l.to_string()).collect();
    assert!(
        all_logs.len() < 20_000,
        "logs are short: {} bytes",
        all_logs.len()
    );
    assert!(!all_logs.contains("JFIF"), "no image bytes in logs");
}

#[tokio::test]
async fn dicom_patient_attributes_never_reach_the_logs_even_at_trace_level() {
    let mut server = Running::start(&["--log", "trace,ort=warn,h2=warn,hyper=warn"]);
    let addr = server.ready_at();
    let client = reqwest::Client::new();
    for name in [
        "mg_rle.dcm",
        "ct_not_mammography.dcm",
        "sr_no_pixel_data.dcm",
    ] {
        let response = client
            .post(format!("http://{addr}/predict"))
            .header("content-type", "application/dicom")
            .body(fixture(&format!("dicom/{name}")))
            .send()
            .await
            .unwrap();
        assert!(response.status().as_u16() < 500, "{name}");
    }
    server.wait_for_count("finished processing request", 3);
    while let Ok(line) = server.logs.try_recv() {
        server.seen.push(line);
    }
    let all_logs: String = server.seen.iter().map(|l| l.to_string()).collect();
    for phi in ["Fixture^Synthetic", "FIXTURE-0001", "19700101"] {
        assert!(!all_logs.contains(phi), "{phi} logged");
    }
    assert!(
        !all_logs.contains("1.2.826.0.1.3680043.8.498.1001"),
        "no DICOM attribute is logged, not even the study UID"
    );
}

#[tokio::test]
async fn sighup_re_reads_the_api_keys_and_keys_are_never_logged() {
    let keys = temp_file("keys-sighup", &key_line("old", "old-key"));
    let mut server = Running::start(&["--api-keys-file", keys.to_str().unwrap()]);
    server.wait_for("ready");

    // Same length and the old modification time: only the signal can make the server look.
    let modified = std::fs::metadata(&keys).unwrap().modified().unwrap();
    std::fs::write(&keys, key_line("new", "new-key")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&keys)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let reread = server.wait_for("API keys re-read");
    assert_eq!(reread["fields"]["keys"], 1);

    while let Ok(line) = server.logs.try_recv() {
        server.seen.push(line);
    }
    let all_logs: String = server.seen.iter().map(|l| l.to_string()).collect();
    let text = std::fs::read_to_string(&keys).unwrap();
    let hash = text.trim().split_once(':').unwrap().1;
    assert!(!all_logs.contains(hash) && !all_logs.contains("new-key"));
}

#[tokio::test]
async fn a_decoder_panic_is_the_image_s_400_and_one_json_log_line() {
    let mut server = Running::start(&[]);
    let addr = server.ready_at();
    // A DICOM on which dicom-pixeldata's JPEG adapter panics (found by fuzzing).
    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/predict"))
        .header("content-type", "application/dicom")
        .body(fixture("fuzz/jpeg_decoder_panics.dcm"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let panicked = server.wait_for("a thread panicked");
    assert_eq!(panicked["level"], "ERROR", "{panicked}");
    // The server goes on serving.
    let live = reqwest::get(format!("http://{addr}/health/live"))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
}
