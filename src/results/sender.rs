//! Sends SRs to a PACS by STOW-RS (PS3.18 10.5): one `multipart/related;
//! type="application/dicom"` request per SR to `URL/studies`, and tells a delivered SR from
//! one to retry (the PACS unreachable, or 5xx) and one the PACS refused (4xx, or listed in its
//! Failed SOP Sequence), which no retry would change.

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use std::path::Path;
use std::time::Duration;

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Worth another try later; why.
    Retry(String),
    /// The PACS will not take it; why.
    Refused(String),
}

pub struct Sender {
    client: reqwest::Client,
    url: String,
    authorization: Option<HeaderValue>,
}

impl Sender {
    /// A sender to the DICOMweb root `base` (`…/studies` is added), with the `Authorization`
    /// value in `auth_file` when given.
    pub fn new(base: &str, auth_file: Option<&Path>) -> anyhow::Result<Sender> {
        let authorization = match auth_file {
            Some(path) => {
                let value = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read --results-stow-auth-file {}: {e}",
                        path.display()
                    )
                })?;
                let mut value = HeaderValue::from_str(value.trim()).map_err(|_| {
                    anyhow::anyhow!(
                        "--results-stow-auth-file {} is not one header value",
                        path.display()
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Sender {
            client,
            url: format!("{}/studies", base.trim_end_matches('/')),
            authorization,
        })
    }

    /// Sends one SR (Part 10 bytes) whose SOP Instance UID is `sop_instance_uid`.
    pub async fn send(&self, bytes: Vec<u8>, sop_instance_uid: &str) -> Delivery {
        let boundary = format!("mammo-serve-{}", uuid::Uuid::new_v4().simple());
        let mut body =
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut request = self
            .client
            .post(&self.url)
            .header(
                CONTENT_TYPE,
                format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
            )
            .header(ACCEPT, "application/dicom+json")
            .body(body);
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Delivery::Retry(format!("the PACS could not be reached: {e}")),
        };
        let status = response.status();
        if status.is_server_error() {
            return Delivery::Retry(format!("the PACS answered {status}"));
        }
        if !status.is_success() {
            return Delivery::Refused(format!("the PACS answered {status}"));
        }
        // A 200 or 202 may still list the instance as failed.
        let answer: serde_json::Value = match response.bytes().await {
            Ok(body) => serde_json::from_slice(&body).unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        match failure_reason(&answer, sop_instance_uid) {
            Some(reason) => Delivery::Refused(format!(
                "the PACS answered {status} listing the SR as failed (Failure Reason {reason})"
            )),
            None => Delivery::Sent,
        }
    }
}

/// The Failure Reason (0008,1197) the STOW-RS answer gives for `sop_instance_uid` in its
/// Failed SOP Sequence (0008,1198), if it lists it.
fn failure_reason(answer: &serde_json::Value, sop_instance_uid: &str) -> Option<String> {
    answer["00081198"]["Value"]
        .as_array()?
        .iter()
        .find(|item| item["00081155"]["Value"][0] == sop_instance_uid)
        .map(|item| item["00081197"]["Value"][0].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_sop_sequence_names_the_refused_instance() {
        let answer = serde_json::json!({
            "00081198": {"vr": "SQ", "Value": [
                {"00081150": {"vr": "UI", "Value": ["1.2"]}, "00081155": {"vr": "UI", "Value": ["2.25.7"]},
                 "00081197": {"vr": "US", "Value": [272]}}
            ]}
        });
        assert_eq!(failure_reason(&answer, "2.25.7").as_deref(), Some("272"));
        assert_eq!(failure_reason(&answer, "2.25.8"), None);
        assert_eq!(failure_reason(&serde_json::json!({}), "2.25.7"), None);
    }
}
