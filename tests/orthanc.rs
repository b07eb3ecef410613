//! End to end against a real PACS (issue #17): Orthanc (Debian `orthanc` and
//! `orthanc-dicomweb`, `scripts/dicom_tools.sh` installs them) pushes a study to our
//! `/dicomweb/studies` with its STOW-RS client; our server sends the SR back to Orthanc's
//! DICOMweb root; the test finds it by QIDO-RS and reads it. A second test stops Orthanc before
//! the SR can be sent and starts it again: the SR arrives once.
//!
//! Orthanc runs from a temporary configuration: storage in a scratch folder, its DICOM (DIMSE)
//! server off (this test speaks only DICOMweb, and Orthanc 1.10 cannot bind that port to
//! loopback), HTTP on a free port with remote access refused, the DICOMweb plugin on, our
//! server declared under `DicomWeb.Servers`.

mod common;

use common::*;
use dicom_dictionary_std::tags;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const STUDY: &str = "1.2.826.0.1.3680043.8.498.1001";
const PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";
/// Three views of the fixture study: left CC, left MLO, right CC.
const VIEWS: [&str; 3] = ["mg_explicit_le.dcm", "mg_left_mlo.dcm", "mg_right_cc.dcm"];

/// A real Orthanc, killed when dropped.
struct Orthanc {
    child: Option<Child>,
    config: PathBuf,
    port: u16,
    client: reqwest::Client,
    /// The user every request presents, when Orthanc requires one.
    user: Option<(&'static str, &'static str)>,
}

impl Orthanc {
    /// Starts Orthanc in `dir` on HTTP `port` with our server at `ours` as DICOMweb server
    /// `mammo`.
    async fn start(dir: &Path, port: u16, ours: &str) -> Orthanc {
        Orthanc::start_with_user(dir, port, ours, None).await
    }

    /// As [`Orthanc::start`], requiring HTTP basic authentication as `user` when given.
    async fn start_with_user(
        dir: &Path,
        port: u16,
        ours: &str,
        user: Option<(&'static str, &'static str)>,
    ) -> Orthanc {
        let config = dir.join("orthanc.json");
        let mut settings = json!({
            "Name": "mammo-test",
            "StorageDirectory": dir.join("storage"),
            "IndexDirectory": dir.join("storage"),
            "HttpPort": port,
            "DicomServerEnabled": false,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "Plugins": [PLUGIN],
            "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "Servers": {"mammo": [format!("{ours}/dicomweb/")]}},
        });
        if let Some((name, password)) = user {
            settings["AuthenticationEnabled"] = json!(true);
            settings["RegisteredUsers"] = json!({ name: password });
        }
        std::fs::write(&config, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
        let mut orthanc = Orthanc {
            child: None,
            config,
            port,
            client: reqwest::Client::new(),
            user,
        };
        orthanc.resume().await;
        orthanc
    }

    /// (Re)starts the process on the same storage and port; returns once it answers.
    async fn resume(&mut self) {
        let binary = ["/usr/sbin/Orthanc", "/usr/bin/Orthanc"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("Orthanc is installed: run scripts/dicom_tools.sh");
        assert!(
            Path::new(PLUGIN).is_file(),
            "orthanc-dicomweb is installed: run scripts/dicom_tools.sh"
        );
        let log = std::fs::File::create(self.config.with_file_name("orthanc.log")).unwrap();
        self.child = Some(
            Command::new(binary)
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        eventually("Orthanc to answer", || async {
            self.request(reqwest::Method::GET, "/system")
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        })
        .await;
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A request to Orthanc, with its user when it has one.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match self.user {
            Some((name, password)) => request.basic_auth(name, Some(password)),
            None => request,
        }
    }

    /// The JSON answer of a request that must succeed.
    async fn json(&self, request: reqwest::RequestBuilder, path: &str) -> Value {
        let response = request.send().await.unwrap();
        let status = response.status();
        assert!(status.is_success(), "{path}: {status}");
        response.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> Value {
        let request = self.request(reqwest::Method::POST, path).body(body);
        self.json(request, path).await
    }

    async fn get(&self, path: &str) -> Value {
        self.json(self.request(reqwest::Method::GET, path), path)
            .await
    }

    /// Stores the fixture views and pushes their study to our server with Orthanc's STOW-RS
    /// client, which fails unless our answer lists every instance.
    async fn push_study(&self) {
        let mut study = String::new();
        for view in VIEWS {
            let stored = self
                .post("/instances", fixture(&format!("dicom/{view}")))
                .await;
            study = stored["ParentStudy"].as_str().unwrap().to_string();
        }
        let body = json!({"Resources": [study], "Synchronous": true}).to_string();
        let pushed = self
            .post("/dicom-web/servers/mammo/stow", body.into_bytes())
            .await;
        assert_eq!(pushed["InstancesCount"], "3", "{pushed}");
    }

    /// The SR instances of the study, by QIDO-RS.
    async fn srs(&self) -> Vec<String> {
        let series = self
            .get(&format!("/dicom-web/studies/{STUDY}/series?Modality=SR"))
            .await;
        let mut uids = Vec::new();
        for s in series.as_array().unwrap() {
            let series_uid = s["0020000E"]["Value"][0].as_str().unwrap();
            let instances = self
                .get(&format!(
                    "/dicom-web/studies/{STUDY}/series/{series_uid}/instances"
                ))
                .await;
            for i in instances.as_array().unwrap() {
                uids.push(i["00080018"]["Value"][0].as_str().unwrap().to_string());
            }
        }
        uids
    }

    /// An instance's Part 10 bytes, found by its SOP Instance UID.
    async fn file(&self, sop_instance_uid: &str) -> Vec<u8> {
        let found = self
            .post("/tools/lookup", sop_instance_uid.as_bytes().to_vec())
            .await;
        let id = found[0]["ID"].as_str().unwrap();
        let path = format!("/instances/{id}/file");
        let response = self
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
        response.bytes().await.unwrap().to_vec()
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Our server, sending SRs to the Orthanc that will listen on `pacs_port`, a study settling
/// after `settle` seconds.
async fn start_ours(outbox: &Path, pacs_port: u16, settle: &str, extra: &[&str]) -> TestServer {
    let url = format!("http://127.0.0.1:{pacs_port}/dicom-web");
    let mut args = vec!["--results-stow-url", url.as_str()];
    args.extend_from_slice(extra);
    start_results(outbox, settle, &args).await
}

/// The count of `mammo_results_total{outcome=...}` in our metrics.
async fn results(server: &TestServer, outcome: &str) -> f64 {
    let text = server.get("/metrics").await.text().await.unwrap();
    series(
        &text,
        &format!("mammo_results_total{{outcome=\"{outcome}\"}}"),
    )
}

fn evidence(sr: &[u8]) -> Vec<String> {
    let sr = dicom_object::from_reader(&sr[128..]).unwrap();
    let study = &sr
        .element(tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0];
    let mut uids = Vec::new();
    for series in study
        .element(tags::REFERENCED_SERIES_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()
    {
        for sop in series
            .element(tags::REFERENCED_SOP_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()
        {
            let uid = sop
                .element(tags::REFERENCED_SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap();
            uids.push(uid.trim_end_matches('\0').to_string());
        }
    }
    uids.sort();
    uids
}

fn view_uids() -> Vec<String> {
    let mut uids: Vec<String> = VIEWS
        .iter()
        .map(|v| {
            let object = dicom_object::from_reader(&fixture(&format!("dicom/{v}"))[128..]).unwrap();
            object
                .element(tags::SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0')
                .to_string()
        })
        .collect();
    uids.sort();
    uids
}

#[tokio::test]
async fn orthanc_pushes_a_study_and_stores_the_sr_we_send_back() {
    let dir = scratch("orthanc-roundtrip");
    let pacs_port = free_port();
    let ours = start_ours(&dir.join("outbox"), pacs_port, "0.3", &[]).await;
    let orthanc = Orthanc::start(&dir, pacs_port, &format!("http://{}", ours.addr)).await;
    orthanc.push_study().await;
    let srs = eventually("the SR in Orthanc", || async {
        let srs = orthanc.srs().await;
        (!srs.is_empty()).then_some(srs)
    })
    .await;
    assert_eq!(srs.len(), 1);
    let sr = orthanc.file(&srs[0]).await;
    assert_eq!(
        evidence(&sr),
        view_uids(),
        "the SR references every view pushed"
    );
    let object = dicom_object::from_reader(&sr[128..]).unwrap();
    let patient = object
        .element(tags::PATIENT_NAME)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(patient.starts_with("Fixture^Synthetic"), "{patient}");
    assert_eq!(results(&ours, "sent").await, 1.0);
    assert_eq!(results(&ours, "refused").await, 0.0);
}

#[tokio::test]
async fn an_sr_made_while_orthanc_is_down_arrives_once_it_is_back() {
    let dir = scratch("orthanc-outage");
    let outbox = dir.join("outbox");
    let pacs_port = free_port();
    // The study settles only after a restart of ours, so that Orthanc is surely down by then.
    let mut first = start_ours(&outbox, pacs_port, "3600", &[]).await;
    let mut orthanc = Orthanc::start(&dir, pacs_port, &format!("http://{}", first.addr)).await;
    orthanc.push_study().await;
    orthanc.stop();
    first.begin_shutdown();
    assert!(first.stopped(PATIENCE).await);
    // Restarted on the same folder, ours makes the SR, finds no PACS and keeps it.
    let ours = start_ours(&outbox, pacs_port, "0.1", &[]).await;
    eventually("a failed attempt to send the SR", || async {
        (results(&ours, "retried").await > 0.0).then_some(())
    })
    .await;
    assert_eq!(results(&ours, "sent").await, 0.0);
    orthanc.resume().await;
    let srs = eventually("the SR in Orthanc after the outage", || async {
        let srs = orthanc.srs().await;
        (!srs.is_empty()).then_some(srs)
    })
    .await;
    eventually("the SR counted as sent", || async {
        (results(&ours, "sent").await == 1.0).then_some(())
    })
    .await;
    assert_eq!(orthanc.srs().await, srs, "one SR, once");
    assert_eq!(srs.len(), 1);
    assert_eq!(evidence(&orthanc.file(&srs[0]).await), view_uids());
}

#[tokio::test]
async fn an_sr_the_pacs_refuses_is_kept_for_an_operator_not_retried() {
    let dir = scratch("orthanc-refused");
    let outbox = dir.join("outbox");
    let pacs_port = free_port();
    // A DICOMweb root Orthanc does not have: its STOW-RS answers 404.
    let url = format!("http://127.0.0.1:{pacs_port}/no-such-root");
    let ours = start_results(&outbox, "0.1", &["--results-stow-url", &url]).await;
    let _orthanc = Orthanc::start(&dir, pacs_port, &format!("http://{}", ours.addr)).await;
    let (content_type, body) = related(&[("application/dicom", fixture("dicom/mg_rle.dcm"))]);
    let response = ours
        .post_bytes("/dicomweb/studies", body, &content_type)
        .await;
    assert_eq!(response.status(), 200);
    eventually("the refusal", || async {
        (results(&ours, "refused").await == 1.0).then_some(())
    })
    .await;
    let refused: Vec<_> = std::fs::read_dir(outbox.join("refused")).unwrap().collect();
    assert_eq!(refused.len(), 1, "the SR is kept for an operator");
    assert!(std::fs::read_dir(outbox.join("outbox"))
        .unwrap()
        .next()
        .is_none());
    assert_eq!(results(&ours, "retried").await, 0.0, "a 4xx is not retried");
}

#[tokio::test]
async fn srs_reach_a_pacs_that_requires_basic_authentication() {
    let dir = scratch("orthanc-auth");
    let pacs_port = free_port();
    // base64("mammo:s3cret")
    let auth = temp_file("orthanc-auth", "Basic bWFtbW86czNjcmV0\n");
    let outbox = dir.join("outbox");
    let auth_file = ["--results-stow-auth-file", auth.to_str().unwrap()];
    let ours = start_ours(&outbox, pacs_port, "0.1", &auth_file).await;
    let orthanc = Orthanc::start_with_user(
        &dir,
        pacs_port,
        &format!("http://{}", ours.addr),
        Some(("mammo", "s3cret")),
    )
    .await;
    let (content_type, body) = related(&[("application/dicom", fixture("dicom/mg_rle.dcm"))]);
    assert_eq!(
        ours.post_bytes("/dicomweb/studies", body, &content_type)
            .await
            .status(),
        200
    );
    eventually("the SR in the authenticating Orthanc", || async {
        (orthanc.srs().await.len() == 1).then_some(())
    })
    .await;
    assert_eq!(results(&ours, "sent").await, 1.0);
}
