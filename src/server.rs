//! Start-up and shutdown: check the library and model, bind, load the model in the
//! background (ready only after warm-up), serve until SIGTERM/SIGINT, drain in-flight requests.

use crate::api::auth::KeyStore;
use crate::api::{self, AppState};
use crate::audit::AuditLog;
use crate::config::Config;
use crate::connections;
use crate::engine::{onnx, Engine, Observer};
use crate::pipeline::{self, Admission, ModelInfo, Pipeline};
use crate::reload;
use crate::results::Results;
use crate::tls::Certificates;
use anyhow::{bail, Context};
use ort::environment::Environment;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::Signal;
use tokio::sync::watch;

/// A bound server whose model is not loaded yet.
pub struct Server {
    config: Config,
    listener: TcpListener,
    /// The separate listener for `/metrics` (`--metrics-addr`).
    metrics_listener: Option<TcpListener>,
    /// The certificate served with `--tls-cert`.
    certificates: Option<Arc<Certificates>>,
    /// Files re-read on change and on SIGHUP, each with its SIGHUP stream, registered at bind
    /// so that a SIGHUP never ends the process.
    reloading: Vec<Reloading>,
    state: AppState,
    environment: Environment,
}

impl Server {
    /// Validates the configuration, loads the ONNX Runtime library, checks that the model file
    /// exists and binds the listener. Fails fast, with a message naming the fix, on any of them.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        config.validate()?;
        let environment = onnx::environment(&config.ort_lib)?;
        let model = config.model_file();
        if !model.is_file() {
            bail!(
                "model file {} not found: pass --model (or MAMMO_MODEL) with an ONNX file that follows the model contract",
                model.display()
            );
        }
        let address = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("could not listen on {address}"))?;
        let metrics_listener = match config.metrics_addr {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("could not listen for metrics on {address}"))?,
            ),
            None => None,
        };
        let audit =
            match &config.audit_log {
                Some(path) => Some(AuditLog::open(path).with_context(|| {
                    format!("could not open the audit trail {}", path.display())
                })?),
                None => None,
            };
        let keys = match &config.api_keys_file {
            Some(path) => {
                let keys = KeyStore::open(path).map_err(anyhow::Error::msg)?;
                tracing::info!("API keys required on every route but the health probes");
                Some(keys)
            }
            None => {
                tracing::warn!("no --api-keys-file: every client that reaches the port is served");
                None
            }
        };
        let certificates = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                Some(Certificates::open(cert, key).map_err(anyhow::Error::msg)?)
            }
            _ => None,
        };
        let mut reloading = Vec::new();
        if let Some(keys) = &keys {
            let keys = keys.clone();
            reloading.push(Reloading::new(vec![keys.path().to_path_buf()], move || {
                keys.reload()
            }));
        }
        if let Some(certificates) = &certificates {
            let certificates = Arc::clone(certificates);
            reloading.push(Reloading::new(certificates.paths(), move || {
                certificates.reload()
            }));
        }
        let results = Results::open(&config)?;
        let state = AppState::new(&config, audit, keys, results);
        Ok(Server {
            config,
            listener,
            metrics_listener,
            certificates,
            reloading,
            state,
            environment,
        })
    }

    /// The address the `/metrics` listener bound, with `--metrics-addr`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        let listener = self.metrics_listener.as_ref()?;
        Some(
            listener
                .local_addr()
                .expect("a bound listener has an address"),
        )
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves `model` on an engine the caller started (a test backend, say) instead of loading
    /// the configured file; the server is ready at once.
    pub fn install(&self, engine: Engine, model: ModelInfo) {
        self.state
            .set_pipeline(pipeline_for(&self.config, engine, model));
    }

    /// The metrics an engine started by the caller should report to.
    pub fn observer(&self) -> Arc<dyn Observer> {
        self.state.metrics()
    }

    /// A handle that loads and warms up the model, then marks the server ready.
    pub fn loader(&self) -> Loader {
        Loader {
            config: self.config.clone(),
            state: self.state.clone(),
            environment: self.environment.clone(),
        }
    }

    /// Serves HTTP until `shutdown` resolves, then stops accepting and waits for in-flight
    /// requests to finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        // Keys and certificates are re-read when their files change, while the server serves.
        let watching: Vec<_> = self.reloading.into_iter().map(Reloading::spawn).collect();
        // DICOMweb results settle and go to the PACS while the server serves.
        let delivering = self.state.results().map(|results| {
            let state = self.state.clone();
            tokio::spawn(Arc::clone(results).run(move || state.model(), self.state.metrics()))
        });
        let state = self.state.clone();
        let delay = Duration::from_secs_f64(self.config.shutdown_delay);
        // One signal, seen by every listener once the delay has passed.
        let (closing, closed) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            state.set_stopping();
            tracing::info!(
                delay_seconds = delay.as_secs_f64(),
                "stopping: readiness fails now, the listeners close after the delay"
            );
            tokio::time::sleep(delay).await;
            let _ = closing.send(true);
        });
        let until_closed = move || {
            let mut closed = closed.clone();
            async move {
                let _ = closed.wait_for(|c| *c).await;
            }
        };
        let limits = self.config.connection_limits();
        let metrics = self.metrics_listener.map(|listener| {
            let app = api::metrics_router(self.state.clone());
            tokio::spawn(connections::serve(
                listener,
                app,
                limits,
                None,
                until_closed(),
            ))
        });
        let app = api::router(self.state, &self.config);
        let tls = self.certificates.as_ref().map(Certificates::acceptor);
        connections::serve(self.listener, app, limits, tls, until_closed()).await;
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        for watching in watching {
            watching.abort();
        }
        if let Some(delivering) = delivering {
            delivering.abort();
        }
    }
}

/// Files to re-read when they change or on SIGHUP, and how.
struct Reloading {
    paths: Vec<PathBuf>,
    hangups: Option<Signal>,
    reload: Box<dyn FnMut() + Send>,
}

impl Reloading {
    fn new(paths: Vec<PathBuf>, reload: impl FnMut() + Send + 'static) -> Self {
        Reloading {
            paths,
            hangups: reload::hangups(),
            reload: Box::new(reload),
        }
    }

    fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(reload::watch(
            self.paths,
            reload::CHECK_INTERVAL,
            self.hangups,
            self.reload,
        ))
    }
}

/// Loads the model for a [`Server`].
pub struct Loader {
    config: Config,
    state: AppState,
    environment: Environment,
}

impl Loader {
    /// Loads and warms up the model on a blocking thread; the server is ready when this returns `Ok`.
    pub async fn load(self) -> anyhow::Result<()> {
        let Loader {
            config,
            state,
            environment,
        } = self;
        let options = config.onnx();
        let observer: Arc<dyn Observer> = state.metrics();
        let (engine, model) = tokio::task::spawn_blocking(move || {
            pipeline::load_onnx(&environment, &options, observer)
        })
        .await
        .context("model loading panicked")??;
        state.set_pipeline(pipeline_for(&config, engine, model));
        Ok(())
    }
}

/// The server's pipeline: one decode per core, requests refused when the queue is full.
fn pipeline_for(config: &Config, engine: Engine, model: ModelInfo) -> Pipeline {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Pipeline::new(
        engine,
        model,
        config.decode_limits(),
        cores,
        Admission::Refuse,
    )
}

/// Runs the server until SIGTERM or SIGINT. A model that fails to load stops the process.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let server = Server::bind(config).await?;
    let scheme = if server.certificates.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(address = %server.local_addr(), scheme, "listening; loading the model");
    let loader = server.loader();
    let serving = tokio::spawn(server.serve(shutdown_signal()));
    let serving_abort = serving.abort_handle();
    if let Err(e) = loader.load().await {
        serving_abort.abort();
        return Err(e);
    }
    tracing::info!("ready");
    serving.await.context("server task failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT: finishing in-flight requests"),
        _ = terminate.recv() => tracing::info!("SIGTERM: finishing in-flight requests"),
    }
}
