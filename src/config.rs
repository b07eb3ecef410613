//! Every knob in one validated struct. Each field is a `--flag` and a `MAMMO_*` environment
//! variable (`ORT_DYLIB_PATH` for the library, as ort names it).

use crate::connections::ConnectionLimits;
use crate::engine::onnx::{Device, GpuOptions, SessionOptions, DEFAULT_ORT_LIB};
use crate::engine::EngineOptions;
use crate::imaging::DecodeLimits;
use crate::model::Precision;
use crate::pipeline::OnnxOptions;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Default model: the trained model shipped in `models/`.
pub const DEFAULT_MODEL: &str = "models/mammo.onnx";

const MIB: usize = 1 << 20;

/// Most bytes a decoder may allocate for one image (a 10000×10000 16-bit grey image needs 191 MiB).
const MAX_DECODE_ALLOC: u64 = 512 << 20;

/// Server configuration.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mammo-serve",
    version,
    args_override_self = true,
    about = "HTTP inference service for mammogram breast density and malignancy (decision support, not a diagnosis)"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "MAMMO_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "MAMMO_PORT", default_value_t = 8080)]
    pub port: u16,
    /// ONNX model file that follows the model contract.
    #[arg(long, env = "MAMMO_MODEL", default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Serve the model in this precision: int8 picks the sibling `NAME-int8.onnx` of --model
    /// (the shipped INT8 model, faster on a CPU); fp32 serves --model. Either way, start-up
    /// stops if the file's `mammo.precision` says otherwise. Unset: --model as it is.
    #[arg(long, env = "MAMMO_PRECISION", value_parser = precision_parser())]
    pub precision: Option<Precision>,
    /// ONNX Runtime shared library (libonnxruntime.so 1.31); `make setup` puts it at the default.
    #[arg(long, env = "ORT_DYLIB_PATH", default_value = DEFAULT_ORT_LIB)]
    pub ort_lib: PathBuf,
    /// Execution provider: auto tries TensorRT, then CUDA, then CPU; an explicit GPU choice that cannot be had stops start-up.
    #[arg(long, env = "MAMMO_DEVICE", default_value = "auto", value_parser = device_parser())]
    pub device: Device,
    /// TensorRT FP16 kernels (with --device tensorrt or auto).
    #[arg(long, env = "MAMMO_FP16")]
    pub fp16: bool,
    /// Folder where TensorRT caches built engines and timing data between starts.
    #[arg(long, env = "MAMMO_TRT_CACHE_DIR", default_value = ".trt-cache")]
    pub trt_cache_dir: PathBuf,
    /// ONNX Runtime intra-op threads per engine worker; 0 = the cores shared out among the
    /// workers (at least one each).
    #[arg(long, env = "MAMMO_INTRA_THREADS", default_value_t = 0)]
    pub intra_threads: usize,
    /// Let idle ONNX Runtime intra-op threads spin for work instead of sleeping.
    #[arg(long, env = "MAMMO_INTRA_OP_SPINNING", default_value_t = true, action = clap::ArgAction::Set)]
    pub intra_op_spinning: bool,
    /// Warm-up inferences before the server reports ready.
    #[arg(long, env = "MAMMO_WARMUP_RUNS", default_value_t = 3)]
    pub warmup_runs: usize,
    /// Most images in one engine run: concurrent /predict and /batch images are batched up to it.
    #[arg(long, env = "MAMMO_MAX_BATCH_SIZE", default_value_t = 8)]
    pub max_batch_size: usize,
    /// Milliseconds the oldest waiting image may hold back a batch that is not full. 0 (the
    /// default, measured best on a CPU) still batches whatever queued while a worker was busy;
    /// a GPU, where batches are much cheaper per image, gains from a few milliseconds.
    #[arg(long, env = "MAMMO_MAX_QUEUE_DELAY_MS", default_value_t = 0.0)]
    pub max_queue_delay_ms: f64,
    /// Images that may wait for the engine; a request whose images do not fit gets 429.
    #[arg(long, env = "MAMMO_MAX_QUEUE_SIZE", default_value_t = 64)]
    pub max_queue_size: usize,
    /// Engine worker threads, each with its own ONNX Runtime session. Two single-threaded
    /// workers gave a 2-core CPU its best throughput (docs/benchmarks.md); one worker with
    /// every core gives the lowest single-request latency.
    #[arg(long, env = "MAMMO_ENGINE_WORKERS", default_value_t = 2)]
    pub engine_workers: usize,
    /// Largest /predict body in bytes (a 3000×4000 16-bit mammogram is 24 MB uncompressed).
    #[arg(long, env = "MAMMO_MAX_BODY_BYTES", default_value_t = 64 * MIB)]
    pub max_body_bytes: usize,
    /// Largest /batch body in bytes.
    #[arg(long, env = "MAMMO_MAX_BATCH_BODY_BYTES", default_value_t = 256 * MIB)]
    pub max_batch_body_bytes: usize,
    /// Most request body bytes held at once across /predict and /batch. A request is charged
    /// its Content-Length (or its route's body limit when it sends none) before its body is
    /// read; one the budget cannot take gets 429 at once. Bounds the memory bodies can take,
    /// whatever the number of clients.
    #[arg(long, env = "MAMMO_MAX_INFLIGHT_BYTES", default_value_t = 512 * MIB)]
    pub max_inflight_bytes: usize,
    /// Most items in one /batch request.
    #[arg(long, env = "MAMMO_MAX_BATCH_ITEMS", default_value_t = 64)]
    pub max_batch_items: usize,
    /// Largest image width or height accepted, checked before decoding.
    #[arg(long, env = "MAMMO_MAX_IMAGE_SIDE", default_value_t = 10_000)]
    pub max_image_side: u32,
    /// Accept DICOM objects whose Modality is not MG (otherwise they get 422). The model was
    /// trained on mammograms only; other modalities give meaningless answers.
    #[arg(long, env = "MAMMO_ALLOW_ANY_MODALITY")]
    pub allow_any_modality: bool,
    /// Seconds a /predict or /batch request may take, body upload included; then 503.
    #[arg(long, env = "MAMMO_REQUEST_TIMEOUT", default_value_t = 60.0)]
    pub request_timeout: f64,
    /// Seconds a connection may take to send a request's line and headers, and may stay idle
    /// between requests (keep-alive); then it is closed. Bounds the sockets a slow or idle
    /// client can hold.
    #[arg(long, env = "MAMMO_HEADER_READ_TIMEOUT", default_value_t = 10.0)]
    pub header_read_timeout: f64,
    /// Seconds between a shutdown signal and closing the listener: `/health/ready` answers 503
    /// at once while new requests are still served, so that a load balancer or Kubernetes takes
    /// the instance out of rotation before connections are refused.
    #[arg(long, env = "MAMMO_SHUTDOWN_DELAY", default_value_t = 0.0)]
    pub shutdown_delay: f64,
    /// Seconds requests in flight may take to finish once the listener is closed; connections
    /// still open then are dropped.
    #[arg(long, env = "MAMMO_SHUTDOWN_TIMEOUT", default_value_t = 30.0)]
    pub shutdown_timeout: f64,
    /// Most open client connections; one more is closed as soon as it is accepted.
    #[arg(long, env = "MAMMO_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// File of API keys, one `NAME:SHA256` a line (the lowercase hex SHA-256 of the key; `#`
    /// comments): every route but /health/live and /health/ready then needs
    /// `Authorization: Bearer KEY`. Re-read when it changes. Without it the API is open to
    /// whoever reaches the port (a start-up warning says so).
    #[arg(long, env = "MAMMO_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// PEM certificate chain (leaf first) for HTTPS on the API port; with --tls-key. Re-read
    /// when it changes. Without the pair the port speaks plain HTTP (TLS ends at an ingress).
    #[arg(long, env = "MAMMO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "MAMMO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve `/metrics` on this address instead of the API port, without API keys (e.g. an
    /// internal interface for Prometheus, `10.0.0.5:9100`).
    #[arg(long, env = "MAMMO_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Origins a browser application may call the API from (CORS), e.g.
    /// `https://viewer.example.org`; repeat the flag or separate with commas. Off when not given.
    #[arg(long, env = "MAMMO_CORS_ALLOW_ORIGIN", value_delimiter = ',')]
    pub cors_allow_origin: Vec<String>,
    /// Append one JSON line per image answered or refused to this file (request id, route,
    /// SOP Instance UID, model version, assessment, labels given; never image bytes or patient
    /// attributes). Off when not given.
    #[arg(long, env = "MAMMO_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Most /predict and /batch requests handled at once; more get 429 at once.
    #[arg(long, env = "MAMMO_MAX_CONCURRENCY", default_value_t = 64)]
    pub max_concurrency: usize,
    /// Folder for DICOMweb results: studies received over STOW-RS wait here for their SR, and
    /// each SR waits here until the PACS takes it (it survives restarts and PACS outages). Holds
    /// patient attributes: give it the protection the PACS's own storage has.
    /// `POST /dicomweb/studies` is served only with it.
    #[arg(long, env = "MAMMO_RESULTS_OUTBOX")]
    pub results_outbox: Option<PathBuf>,
    /// Most bytes the results folder may hold; past it, STOW-RS requests get 503 until the PACS
    /// has taken results.
    #[arg(long, env = "MAMMO_RESULTS_OUTBOX_MAX_BYTES", default_value_t = 1 << 30)]
    pub results_outbox_max_bytes: u64,
    /// A PACS's DICOMweb root (e.g. `http://pacs:8042/dicom-web`): each SR is sent to
    /// `URL/studies` by STOW-RS. Without it SRs stay in the results folder.
    #[arg(long, env = "MAMMO_RESULTS_STOW_URL", requires = "results_outbox")]
    pub results_stow_url: Option<String>,
    /// File holding the `Authorization` header value for --results-stow-url (`Bearer TOKEN`
    /// or `Basic BASE64`), read at start-up.
    #[arg(
        long,
        env = "MAMMO_RESULTS_STOW_AUTH_FILE",
        requires = "results_stow_url"
    )]
    pub results_stow_auth_file: Option<PathBuf>,
    /// Seconds a study must be quiet (no instance received) before its SR is made: a study
    /// pushed instance by instance gets one SR covering all of them.
    #[arg(long, env = "MAMMO_STUDY_SETTLE", default_value_t = 5.0)]
    pub study_settle: f64,
}

/// `--device`: one of [`Device::ALL`]'s names, listed in `--help`.
pub fn device_parser() -> impl clap::builder::TypedValueParser<Value = Device> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Device::ALL.map(|(_, name)| name))
        .map(|name| name.parse::<Device>().expect("a listed device name"))
}

pub fn precision_parser() -> impl clap::builder::TypedValueParser<Value = Precision> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["fp32", "int8"])
        .map(|name| name.parse::<Precision>().expect("a listed precision"))
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Checks the values clap cannot check one by one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("--max-batch-size", self.max_batch_size),
            ("--max-queue-size", self.max_queue_size),
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-batch-body-bytes", self.max_batch_body_bytes),
            ("--max-inflight-bytes", self.max_inflight_bytes),
            ("--max-batch-items", self.max_batch_items),
            ("--max-concurrency", self.max_concurrency),
            ("--max-connections", self.max_connections),
            ("--engine-workers", self.engine_workers),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError(format!("{flag} must be at least 1")));
        }
        if self.fp16 && matches!(self.device, Device::Cpu | Device::Cuda) {
            return Err(ConfigError(
                "--fp16 applies to TensorRT: use it with --device tensorrt or auto".into(),
            ));
        }
        for (flag, limit) in [
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-batch-body-bytes", self.max_batch_body_bytes),
        ] {
            if limit > self.max_inflight_bytes {
                return Err(ConfigError(format!(
                    "{flag} ({limit}) must not exceed --max-inflight-bytes ({}): a body that large could never be admitted",
                    self.max_inflight_bytes
                )));
            }
        }
        if self.max_batch_items > self.max_queue_size {
            return Err(ConfigError(format!(
                "--max-batch-items ({}) must not exceed --max-queue-size ({}): a full batch could never be queued",
                self.max_batch_items, self.max_queue_size
            )));
        }
        if !(self.max_queue_delay_ms.is_finite() && self.max_queue_delay_ms >= 0.0) {
            return Err(ConfigError(
                "--max-queue-delay-ms must be zero or a positive number".into(),
            ));
        }
        if !(self.shutdown_delay.is_finite() && self.shutdown_delay >= 0.0) {
            return Err(ConfigError(
                "--shutdown-delay must be zero or a positive number of seconds".into(),
            ));
        }
        for (flag, seconds) in [
            ("--request-timeout", self.request_timeout),
            ("--header-read-timeout", self.header_read_timeout),
            ("--shutdown-timeout", self.shutdown_timeout),
            ("--study-settle", self.study_settle),
        ] {
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err(ConfigError(format!(
                    "{flag} must be a positive number of seconds"
                )));
            }
        }
        if let Some(bad) = self
            .cors_allow_origin
            .iter()
            .find(|o| axum::http::HeaderValue::from_str(o).is_err() || !o.contains("://"))
        {
            return Err(ConfigError(format!(
                "--cors-allow-origin {bad:?} is not an origin such as https://viewer.example.org"
            )));
        }
        if self.max_image_side < DecodeLimits::default().min_side {
            return Err(ConfigError(format!(
                "--max-image-side must be at least {}",
                DecodeLimits::default().min_side
            )));
        }
        Ok(())
    }

    /// The model file to serve: `--model`, or for `--precision int8` its `-int8` sibling
    /// (`models/mammo.onnx` → `models/mammo-int8.onnx`; a path already ending so is kept).
    pub fn model_file(&self) -> PathBuf {
        let stem = self.model.file_stem().unwrap_or_default().to_string_lossy();
        match self.precision {
            Some(Precision::Int8) if !stem.ends_with("-int8") => {
                self.model.with_file_name(format!(
                    "{stem}-int8.{}",
                    self.model.extension().unwrap_or_default().to_string_lossy()
                ))
            }
            _ => self.model.clone(),
        }
    }

    /// How to load the model and run its engine.
    pub fn onnx(&self) -> OnnxOptions {
        OnnxOptions {
            session: SessionOptions {
                model: self.model_file(),
                device: self.device,
                gpu: GpuOptions {
                    fp16: self.fp16,
                    trt_cache_dir: self.trt_cache_dir.clone(),
                },
                intra_threads: self.intra_threads_per_worker(),
                intra_op_spinning: self.intra_op_spinning,
            },
            precision: self.precision,
            workers: self.engine_workers,
            warmup_runs: self.warmup_runs,
            engine: self.engine(),
        }
    }

    /// How the engine queues and batches.
    pub fn engine(&self) -> EngineOptions {
        EngineOptions {
            max_queue_size: self.max_queue_size,
            max_batch_size: self.max_batch_size,
            max_queue_delay: Duration::from_secs_f64(self.max_queue_delay_ms / 1e3),
        }
    }

    /// `--intra-threads`, or the cores shared out among the workers when it is 0.
    pub fn intra_threads_per_worker(&self) -> usize {
        if self.intra_threads > 0 {
            return self.intra_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / self.engine_workers.max(1)).max(1)
    }

    /// Decoding bounds for uploaded images.
    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_side: self.max_image_side,
            max_alloc: MAX_DECODE_ALLOC,
            any_modality: self.allow_any_modality,
            ..DecodeLimits::default()
        }
    }

    /// The request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout)
    }

    /// What the listener allows each connection.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs_f64(self.header_read_timeout),
            max_connections: self.max_connections,
            drain_timeout: Duration::from_secs_f64(self.shutdown_timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("mammo-serve").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&[]);
        c.validate().unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.model, PathBuf::from(DEFAULT_MODEL));
        assert_eq!(c.device, Device::Auto);
        assert_eq!(c.model_file(), PathBuf::from(DEFAULT_MODEL));
    }

    #[test]
    fn int8_precision_serves_the_sibling_file() {
        let file = |args: &[&str]| parse(args).model_file();
        let int8 = PathBuf::from("models/mammo-int8.onnx");
        assert_eq!(file(&["--precision", "int8"]), int8);
        assert_eq!(
            file(&["--precision", "int8", "--model", "models/mammo-int8.onnx"]),
            int8
        );
        assert_eq!(
            file(&["--precision", "fp32", "--model", "/m/site.onnx"]),
            PathBuf::from("/m/site.onnx")
        );
        assert_eq!(
            file(&["--precision", "int8", "--model", "/m/site.onnx"]),
            PathBuf::from("/m/site-int8.onnx")
        );
        assert!(Config::try_parse_from(["mammo-serve", "--precision", "fp16"]).is_err());
    }

    #[test]
    fn cores_are_shared_among_workers() {
        let cores = std::thread::available_parallelism().unwrap().get();
        let one = parse(&["--engine-workers", "1"]);
        assert_eq!(one.intra_threads_per_worker(), cores);
        let many = parse(&["--engine-workers", &(cores * 2).to_string()]);
        assert_eq!(many.intra_threads_per_worker(), 1);
        let set = parse(&["--engine-workers", "1", "--intra-threads", "3"]);
        assert_eq!(set.intra_threads_per_worker(), 3);
    }

    #[test]
    fn contradictions_are_refused() {
        assert!(parse(&["--device", "cpu", "--fp16"])
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--fp16"));
        assert!(parse(&["--max-batch-items", "0"]).validate().is_err());
        assert!(parse(&["--request-timeout", "0"]).validate().is_err());
        for bad in [["--header-read-timeout", "0"], ["--max-connections", "0"]] {
            let error = parse(&bad).validate().unwrap_err().to_string();
            assert!(error.contains(bad[0]), "{error}");
        }
        assert!(parse(&["--max-queue-delay-ms=-1"]).validate().is_err());
        let error = parse(&["--max-inflight-bytes", "1000000"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(error.contains("--max-body-bytes"), "{error}");
        assert!(
            parse(&["--max-batch-items", "65", "--max-queue-size", "64"])
                .validate()
                .is_err()
        );
        parse(&["--device", "tensorrt", "--fp16"])
            .validate()
            .unwrap();
    }
}
