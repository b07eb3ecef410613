//! The results folder (`--results-outbox`): what waits on disk, so that a restart or a PACS
//! outage loses nothing.
//! - `pending/STUDY/SOP.dcm` and `SOP.json`: a received instance's source attributes (a
//!   header-only Part 10 object) and its reading ([`Record`]); the JSON is written last, so an
//!   instance counts once its JSON exists. A study settles when its newest JSON is older than
//!   `--study-settle`.
//! - `outbox/MILLIS-SOP.dcm`: SRs waiting for the PACS, oldest first by name.
//! - `refused/`: SRs the PACS refused (4xx), kept for an operator.
//!
//! Every file is written under a temporary name and renamed into place: a crash leaves a
//! whole file or none. UIDs become path components only after [`is_uid`] has passed them.

use super::record::Record;
use crate::imaging::DecodeLimits;
use crate::pipeline::Reading;
use crate::sr::{Document, Source};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whether `uid` is a DICOM UID (PS3.5 9.1: digits and dots, at most 64 characters): the
/// only strings used as file names here.
pub fn is_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && uid.split('.').all(|c| !c.is_empty())
}

pub struct Store {
    pending: PathBuf,
    outbox: PathBuf,
    refused: PathBuf,
}

impl Store {
    /// The folders under `root`, made when missing.
    pub fn open(root: &Path) -> io::Result<Store> {
        let store = Store {
            pending: root.join("pending"),
            outbox: root.join("outbox"),
            refused: root.join("refused"),
        };
        for dir in [&store.pending, &store.outbox, &store.refused] {
            fs::create_dir_all(dir)?;
        }
        Ok(store)
    }

    /// Keeps a received instance until its study settles. Its UIDs must pass [`is_uid`].
    pub fn add(&self, source: &Source, record: &Record) -> io::Result<()> {
        let study = self.pending.join(&record.study_instance_uid);
        fs::create_dir_all(&study)?;
        let sop = &record.sop_instance_uid;
        let part10 = source.to_part10().map_err(io::Error::other)?;
        write_atomically(&study.join(format!("{sop}.dcm")), &part10)?;
        let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        write_atomically(&study.join(format!("{sop}.json")), &json)
    }

    /// Studies whose newest instance arrived at least `quiet` ago, oldest first.
    pub fn settled(&self, quiet: Duration) -> io::Result<Vec<String>> {
        let now = SystemTime::now();
        let mut due = Vec::new();
        for study in fs::read_dir(&self.pending)? {
            let study = study?;
            let newest = json_files(&study.path())?
                .iter()
                .filter_map(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
                .max();
            if let Some(newest) = newest {
                if now.duration_since(newest).unwrap_or_default() >= quiet {
                    due.push((newest, study.file_name().to_string_lossy().into_owned()));
                }
            }
        }
        due.sort();
        Ok(due.into_iter().map(|(_, study)| study).collect())
    }

    /// A pending study's instances with their readings. An instance whose files cannot be
    /// read back is logged (by UID) and left out.
    pub fn instances(
        &self,
        study: &str,
        limits: &DecodeLimits,
    ) -> io::Result<Vec<(Source, Reading)>> {
        let mut instances = Vec::new();
        for json in json_files(&self.pending.join(study))? {
            let read = || -> Result<(Source, Reading), String> {
                let record: Record =
                    serde_json::from_slice(&fs::read(&json).map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?;
                let reading = record.reading().ok_or("a label that is not ours")?;
                let source = fs::read(json.with_extension("dcm")).map_err(|e| e.to_string())?;
                let source = Source::read(&source, limits).map_err(|e| e.to_string())?;
                Ok((source, reading))
            };
            match read() {
                Ok(instance) => instances.push(instance),
                Err(e) => {
                    tracing::error!(file = %json.display(), "a pending instance cannot be read back: {e}")
                }
            }
        }
        Ok(instances)
    }

    /// Forgets a study once its SR is in the outbox.
    pub fn remove(&self, study: &str) -> io::Result<()> {
        fs::remove_dir_all(self.pending.join(study))
    }

    /// Studies waiting to settle.
    pub fn pending_studies(&self) -> usize {
        fs::read_dir(&self.pending).map_or(0, |d| d.count())
    }

    /// Puts an SR in the outbox.
    pub fn put(&self, document: &Document) -> io::Result<PathBuf> {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let path = self
            .outbox
            .join(format!("{millis:013}-{}.dcm", document.sop_instance_uid));
        write_atomically(&path, &document.bytes)?;
        Ok(path)
    }

    /// SRs waiting for the PACS, oldest first.
    pub fn waiting(&self) -> io::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.outbox)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Moves an SR the PACS refused out of the outbox, for an operator.
    pub fn refuse(&self, path: &Path) -> io::Result<()> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other("no file name"))?;
        fs::rename(path, self.refused.join(name))
    }

    /// Bytes held in the pending studies and the outbox (the refused SRs are the operator's).
    pub fn bytes_held(&self) -> u64 {
        let size = |dir: &Path| -> u64 {
            walk(dir)
                .iter()
                .filter_map(|p| fs::metadata(p).ok())
                .map(|m| m.len())
                .sum()
        };
        size(&self.pending) + size(&self.outbox)
    }
}

/// The `.json` files of a folder.
fn json_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// Every file under `dir`, one level of folders down.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .flat_map(|p| if p.is_dir() { walk(&p) } else { vec![p] })
        .collect()
}

/// Writes `bytes` to `path` through a temporary file in the same folder.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    fs::write(&partial, bytes)?;
    fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uids_become_file_names() {
        assert!(is_uid("1.2.826.0.1.3680043.8.498.1001"));
        for bad in [
            "",
            "..",
            "1..2",
            ".1",
            "1.",
            "../etc",
            "1.2/3",
            &"1".repeat(65),
        ] {
            assert!(!is_uid(bad), "{bad:?}");
        }
    }
}
