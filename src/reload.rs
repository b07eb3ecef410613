//! Files the server re-reads while it runs (API keys, TLS certificate and key): when one
//! changes, or on SIGHUP, so that keys are revoked and certificates renewed without a restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// How often watched files are checked for changes: a revoked key stops working within it.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// A SIGHUP stream, registered when the server binds (before it reports ready) so that a
/// SIGHUP can never meet the default action, which ends the process. `None` (logged) where
/// none can be registered: files are then re-read on change only.
pub fn hangups() -> Option<Signal> {
    signal(SignalKind::hangup())
        .map_err(|error| tracing::warn!(%error, "no SIGHUP handler: files re-read on change only"))
        .ok()
}

/// Calls `reload` whenever the modification time or length of one of `paths` changes
/// (checked every `every`) and on each SIGHUP from `hangups`. Runs until dropped.
pub async fn watch(
    paths: Vec<PathBuf>,
    every: Duration,
    mut hangups: Option<Signal>,
    mut reload: impl FnMut() + Send,
) {
    let stamps = || paths.iter().map(|p| stamp(p)).collect::<Vec<_>>();
    let mut seen = stamps();
    let mut ticks = tokio::time::interval(every);
    loop {
        let hangup = async {
            match hangups.as_mut() {
                Some(signals) => signals.recv().await,
                None => std::future::pending().await,
            }
        };
        let asked = tokio::select! {
            _ = ticks.tick() => false,
            _ = hangup => true,
        };
        let now = stamps();
        if now != seen || asked {
            seen = now;
            reload();
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
