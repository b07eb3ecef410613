//! The audit trail: one JSON line per image the service answered or refused, so that a site can
//! say who asked what and what the model answered. It holds identifiers and answers, never
//! image bytes or patient attributes: the only DICOM identifier is the SOP Instance UID, which
//! names the image, not the patient. It is written apart from the logs (its own file, flushed
//! line by line) so that no log level or filter can switch it off.

use crate::model::assessment::Status;
use crate::pipeline::Reading;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// An append-only JSON-lines file.
pub struct AuditLog {
    file: Mutex<File>,
}

/// Who asked, through which route, for which model.
pub struct Request<'a> {
    pub request_id: &'a str,
    /// The name of the API key the request was let in with (none when the server is open).
    pub key: Option<&'a str>,
    pub route: &'a str,
    pub model_version: &'a str,
}

/// One line: what one image was answered.
#[derive(Debug, Serialize)]
struct Entry<'a> {
    time: String,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    route: &'a str,
    /// The item's id in a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sop_instance_uid: Option<&'a str>,
    model_version: &'a str,
    /// `assessed`, `not_assessable`, or `refused` (the image could not be read).
    status: &'a str,
    /// The HTTP status of a refused image's problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem_status: Option<u16>,
    /// The labels the answer gave (none for a declined image unless the caller asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<Labels>,
}

#[derive(Debug, Serialize)]
struct Labels {
    class: String,
    density: &'static str,
    malignancy: &'static str,
    malignancy_probability: f32,
}

impl AuditLog {
    /// Opens (or creates) `path` for appending; fails at start-up rather than at the first
    /// answer.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AuditLog {
            file: Mutex::new(file),
        })
    }

    /// Records an image that was read; `labels_given` says whether the answer carried labels.
    pub fn answered(
        &self,
        request: &Request,
        item: Option<&str>,
        reading: &Reading,
        labels_given: bool,
    ) {
        let prediction = &reading.prediction;
        let status = prediction.assessment.status;
        self.write(Entry {
            sop_instance_uid: reading.dicom.as_ref().map(|d| d.sop_instance_uid.as_str()),
            labels: (labels_given || status == Status::Assessed).then(|| Labels {
                class: prediction.class.to_string(),
                density: prediction.density.code(),
                malignancy: prediction.malignancy.call().name(),
                malignancy_probability: prediction.malignancy.probability,
            }),
            ..Entry::new(request, item, status.name())
        });
    }

    /// Records an image that was refused with an HTTP status.
    pub fn refused(&self, request: &Request, item: Option<&str>, problem_status: u16) {
        self.write(Entry {
            problem_status: Some(problem_status),
            ..Entry::new(request, item, "refused")
        });
    }

    fn write(&self, entry: Entry) {
        let mut line = serde_json::to_vec(&entry).expect("an audit entry serialises");
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = file.write_all(&line) {
            tracing::error!(%error, "could not write the audit trail");
        }
    }
}

impl<'a> Entry<'a> {
    /// The line for one image with `status`, before what only some lines carry.
    fn new(request: &Request<'a>, item: Option<&'a str>, status: &'a str) -> Entry<'a> {
        Entry {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            request_id: request.request_id,
            key: request.key,
            route: request.route,
            item,
            sop_instance_uid: None,
            model_version: request.model_version,
            status,
            problem_status: None,
            labels: None,
        }
    }
}
