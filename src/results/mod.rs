//! DICOMweb results (`--results-outbox`): instances received over STOW-RS wait, with their
//! readings, until their study has been quiet for `--study-settle`; then one SR covers them
//! all ([`crate::sr::report`]) and waits in the outbox until the PACS at `--results-stow-url`
//! takes it. A PACS that cannot be reached or answers 5xx is retried with backoff; one that
//! answers 4xx gets the SR moved aside for an operator, not retried for ever. Everything waits
//! on disk ([`store`]), so a restart resumes where it stopped.

mod record;
mod sender;
mod store;

pub use record::Record;
pub use store::is_uid;

use crate::config::Config;
use crate::imaging::DecodeLimits;
use crate::metrics::Metrics;
use crate::pipeline::{ModelInfo, Reading};
use crate::sr::{self, Analysed, Source};
use anyhow::Context;
use sender::{Delivery, Sender};
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Store;

/// How often pending studies and the outbox are looked at.
const TICK: Duration = Duration::from_millis(250);
/// The first wait before retrying an SR the PACS did not take; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub struct Results {
    store: Store,
    max_bytes: u64,
    settle: Duration,
    sender: Option<Sender>,
    limits: DecodeLimits,
}

impl Results {
    /// The results folder of `config`, when it names one.
    pub fn open(config: &Config) -> anyhow::Result<Option<Arc<Results>>> {
        let Some(root) = &config.results_outbox else {
            return Ok(None);
        };
        let store = Store::open(root)
            .with_context(|| format!("cannot use --results-outbox {}", root.display()))?;
        let sender = match &config.results_stow_url {
            Some(url) => Some(Sender::new(url, config.results_stow_auth_file.as_deref())?),
            None => {
                tracing::warn!("no --results-stow-url: SRs stay in the results folder");
                None
            }
        };
        Ok(Some(Arc::new(Results {
            store,
            max_bytes: config.results_outbox_max_bytes,
            settle: Duration::from_secs_f64(config.study_settle),
            sender,
            limits: config.decode_limits(),
        })))
    }

    /// Keeps a received DICOM instance and its reading until its study settles.
    pub fn accept(&self, source: &Source, reading: &Reading) -> io::Result<()> {
        let record = Record::of(reading).ok_or_else(|| io::Error::other("not a DICOM reading"))?;
        self.store.add(source, &record)
    }

    /// Whether the folder holds `--results-outbox-max-bytes` or more.
    pub fn is_full(&self) -> bool {
        self.store.bytes_held() >= self.max_bytes
    }

    /// (SRs waiting for the PACS, studies waiting to settle), for the metrics.
    pub fn gauges(&self) -> (usize, usize) {
        let waiting = self.store.waiting().map_or(0, |w| w.len());
        (waiting, self.store.pending_studies())
    }

    /// Settles studies and sends SRs until the task is dropped, each on its own loop: a PACS
    /// slow to answer does not hold back the SRs of studies that settle meanwhile. `model`
    /// gives the loaded model (none while loading: studies then wait).
    pub async fn run(
        self: Arc<Self>,
        model: impl Fn() -> Option<ModelInfo> + Send + 'static,
        metrics: Arc<Metrics>,
    ) {
        let settling = async {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                let Some(model) = model() else { continue };
                let results = Arc::clone(&self);
                let settled = tokio::task::spawn_blocking(move || results.settle(&model)).await;
                if let Err(e) = settled {
                    tracing::error!("settling studies failed: {e}");
                }
            }
        };
        let delivering = async {
            let mut retry = Backoff::default();
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                self.deliver(&mut retry, &metrics).await;
            }
        };
        tokio::join!(settling, delivering);
    }

    /// Makes the SR of every study quiet for `--study-settle` and puts it in the outbox.
    fn settle(&self, model: &ModelInfo) {
        let due = match self.store.settled(self.settle) {
            Ok(due) => due,
            Err(e) => return tracing::error!("cannot read the pending studies: {e}"),
        };
        for study in due {
            if let Err(e) = self.report(&study, model) {
                tracing::error!(study_instance_uid = %study, "no SR for the study: {e}");
            }
        }
    }

    fn report(&self, study: &str, model: &ModelInfo) -> anyhow::Result<()> {
        let instances = self.store.instances(study, &self.limits)?;
        if !instances.is_empty() {
            let analysed: Vec<Analysed> = instances
                .iter()
                .map(|(source, reading)| Analysed { source, reading })
                .collect();
            let document = sr::report(&analysed, model, chrono::Utc::now())?;
            self.store.put(&document)?;
            tracing::info!(
                sr_sop_instance_uid = %document.sop_instance_uid,
                instances = instances.len(),
                "SR made for a settled study"
            );
        }
        self.store.remove(study)?;
        Ok(())
    }

    /// Sends the waiting SRs, oldest first, stopping at the first the PACS did not take.
    async fn deliver(&self, retry: &mut Backoff, metrics: &Metrics) {
        let Some(sender) = &self.sender else { return };
        let waiting = match self.store.waiting() {
            Ok(waiting) => waiting,
            Err(e) => return tracing::error!("cannot read the outbox: {e}"),
        };
        for path in waiting {
            if !retry.due(&path) {
                return;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let sop = sop_instance_uid(&path);
            match sender.send(bytes, &sop).await {
                Delivery::Sent => {
                    metrics.result("sent");
                    retry.forget(&path);
                    if let Err(e) = std::fs::remove_file(&path) {
                        tracing::error!("a sent SR could not be removed from the outbox: {e}");
                    }
                    tracing::info!(sr_sop_instance_uid = %sop, "SR sent to the PACS");
                }
                Delivery::Retry(why) => {
                    metrics.result("retried");
                    let wait = retry.failed(&path);
                    tracing::warn!(sr_sop_instance_uid = %sop, retry_in_seconds = wait.as_secs_f64(), "SR not sent: {why}");
                    return;
                }
                Delivery::Refused(why) => {
                    metrics.result("refused");
                    retry.forget(&path);
                    tracing::error!(sr_sop_instance_uid = %sop, "the PACS refused an SR, kept in refused/ for an operator: {why}");
                    if let Err(e) = self.store.refuse(&path) {
                        tracing::error!("a refused SR could not be moved aside: {e}");
                    }
                }
            }
        }
    }
}

/// The SR's SOP Instance UID from its outbox file name (`MILLIS-UID.dcm`).
fn sop_instance_uid(path: &std::path::Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    stem.split_once('-')
        .map_or(stem.to_string(), |(_, uid)| uid.to_string())
}

/// When each SR that failed may be tried again.
#[derive(Default)]
struct Backoff {
    next: HashMap<PathBuf, (Instant, Duration)>,
}

impl Backoff {
    fn due(&self, path: &PathBuf) -> bool {
        self.next
            .get(path)
            .is_none_or(|(at, _)| Instant::now() >= *at)
    }

    /// Records a failure; the wait before the next try.
    fn failed(&mut self, path: &PathBuf) -> Duration {
        let wait = self
            .next
            .get(path)
            .map_or(FIRST_BACKOFF, |(_, last)| (*last * 2).min(MAX_BACKOFF));
        self.next
            .insert(path.clone(), (Instant::now() + wait, wait));
        wait
    }

    fn forget(&mut self, path: &PathBuf) {
        self.next.remove(path);
    }
}
