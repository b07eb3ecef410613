//! The listener's connection policy: how many clients may hold a socket, how long one may take
//! to send a request's headers or sit idle between requests, and the drain at shutdown.
//! Request-level limits (bodies, concurrency, deadlines) live in `api`; these bound what a
//! client can hold before any request reaches it.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// The pause after a failed accept before the next try.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What one client connection may hold.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From the moment a connection waits for a request (just opened, or idle after an
    /// answer) until its headers have all arrived; then it is closed.
    pub header_read_timeout: Duration,
    /// Open connections at most; one more is closed as soon as it is accepted, so that a
    /// flood of sockets cannot exhaust the process's file descriptors.
    pub max_connections: usize,
    /// How long requests in flight may take to finish once the listener has closed.
    pub drain_timeout: Duration,
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` resolves; then
/// stops accepting (new connections are refused), closes idle connections and waits for the
/// requests in flight to be answered, at most `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let draining = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors or a connection reset before accept: the listener
                    // itself is fine. A persistent error (descriptors exhausted) would make
                    // this loop spin a core and flood the log, so it backs off before the
                    // next accept; connections already open keep being served meanwhile.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "open connections at the limit: closing a new one"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: Arc::clone(&builder),
            app: app.clone(),
            watcher: draining.watcher(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.serve(stream).await,
                // The handshake counts against the header-read timeout: a client that opens
                // a socket and never finishes it holds a slot no longer than one that never
                // sends its headers.
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake not finished in time"),
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, draining.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = limits.drain_timeout.as_secs_f64(),
            "requests still in flight at the end of --shutdown-timeout: their connections are dropped"
        );
    }
}

/// What serving one accepted connection needs.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    /// Lets the drain at shutdown close the connection when idle and wait for it otherwise.
    watcher: Watcher,
}

impl Connection {
    /// Serves HTTP/1.1 or HTTP/2 (whichever the client speaks) on `stream` until it closes.
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.app);
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        if let Err(error) = self.watcher.watch(connection.into_owned()).await {
            tracing::debug!(%error, "connection ended with an error");
        }
    }
}
