//! STOW-RS intake (issue #17): `POST /dicomweb/studies[/{study}]` answers the Store Instances
//! Response, refuses what it cannot take per instance or per request as PS3.18 says, and keeps
//! what it took until the study's SR is in the outbox, across a restart.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

const STUDY: &str = "1.2.826.0.1.3680043.8.498.1001";

fn dicom(name: &str) -> Vec<u8> {
    fixture(&format!("dicom/{name}"))
}

async fn stow(server: &TestServer, path: &str, parts: &[(&str, Vec<u8>)]) -> reqwest::Response {
    let (content_type, body) = related(parts);
    server
        .client
        .post(server.url(path))
        .header("content-type", content_type)
        .header("accept", "application/dicom+json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The SOP Instance UIDs of a Store Instances Response sequence (`00081199` or `00081198`).
fn instances(answer: &Value, sequence: &str) -> Vec<String> {
    answer[sequence]["Value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["00081155"]["Value"][0].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn sop_instance_uid(bytes: &[u8]) -> String {
    let object = dicom_object::from_reader(&bytes[128..]).unwrap();
    let uid = object
        .element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
        .unwrap();
    uid.to_str().unwrap().trim_end_matches('\0').to_string()
}

fn outbox_srs(outbox: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(outbox.join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect()
}

#[tokio::test]
async fn instances_taken_and_refused_are_listed_and_the_study_gets_one_sr() {
    let outbox = scratch("stow-mixed");
    let server = start_results(&outbox, "0.2", &[]).await;
    let taken = ["mg_explicit_le.dcm", "mg_left_mlo.dcm", "mg_right_cc.dcm"];
    let mut parts: Vec<(&str, Vec<u8>)> = taken
        .iter()
        .map(|n| ("application/dicom", dicom(n)))
        .collect();
    parts.push(("application/dicom", dicom("ct_not_mammography.dcm")));
    parts.push(("application/dicom", dicom("unsupported_jpeg_ls.dcm")));
    let response = stow(&server, "/dicomweb/studies", &parts).await;
    assert_eq!(response.status(), 202, "some stored, some not");
    assert_eq!(response.headers()["content-type"], "application/dicom+json");
    let answer: Value = response.json().await.unwrap();
    let expected: Vec<String> = taken.iter().map(|n| sop_instance_uid(&dicom(n))).collect();
    assert_eq!(instances(&answer, "00081199"), expected);
    assert_eq!(
        instances(&answer, "00081198"),
        vec![
            sop_instance_uid(&dicom("ct_not_mammography.dcm")),
            sop_instance_uid(&dicom("unsupported_jpeg_ls.dcm"))
        ]
    );
    let reasons: Vec<u64> = answer["00081198"]["Value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["00081197"]["Value"][0].as_u64().unwrap())
        .collect();
    assert_eq!(
        reasons,
        vec![0x0122, 0xC122],
        "not MG; transfer syntax not supported"
    );
    assert_eq!(
        answer["00081199"]["Value"][0]["00081150"]["Value"][0],
        "1.2.840.10008.5.1.4.1.1.1.2"
    );

    // Once the study is quiet, one SR covering the three instances waits in the outbox.
    let sr = eventually("the study's SR in the outbox", || async {
        let files = outbox_srs(&outbox);
        (files.len() == 1).then(|| std::fs::read(&files[0]).unwrap())
    })
    .await;
    let sr = dicom_object::from_reader(&sr[128..]).unwrap();
    let evidence = &sr
        .element(dicom_dictionary_std::tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0];
    assert_eq!(
        evidence
            .element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0'),
        STUDY
    );
    assert!(
        std::fs::read_dir(outbox.join("pending"))
            .unwrap()
            .next()
            .is_none(),
        "nothing left pending"
    );
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("mammo_results_outbox_depth 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn every_instance_taken_is_200_none_is_409_and_another_study_is_refused() {
    let outbox = scratch("stow-status");
    let server = start_results(&outbox, "60", &[]).await;
    let response = stow(
        &server,
        "/dicomweb/studies",
        &[("application/dicom", dicom("mg_rle.dcm"))],
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer.get("00081198").is_none(),
        "no Failed SOP Sequence when nothing failed"
    );

    let response = stow(
        &server,
        "/dicomweb/studies/1.2.3.4",
        &[("application/dicom", dicom("mg_rle.dcm"))],
    )
    .await;
    assert_eq!(
        response.status(),
        409,
        "the only instance belongs to another study"
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["00081198"]["Value"][0]["00081197"]["Value"][0],
        0x0110
    );
    assert_eq!(instances(&answer, "00081199"), Vec::<String>::new());

    let response = stow(
        &server,
        &format!("/dicomweb/studies/{STUDY}"),
        &[("application/dicom", dicom("mg_rle.dcm"))],
    )
    .await;
    assert_eq!(response.status(), 200, "the study named in the path");
}

#[tokio::test]
async fn malformed_requests_get_a_problem_naming_what_is_wrong() {
    let outbox = scratch("stow-bad");
    let server = start_results(&outbox, "60", &[]).await;
    // Not multipart/related.
    let response = server
        .post_bytes(
            "/dicomweb/studies",
            dicom("mg_rle.dcm"),
            "application/dicom",
        )
        .await;
    let problem = expect_problem(response, 415).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("multipart/related"));
    // Parts of another type than DICOM.
    let (content_type, body) = related(&[("application/dicom+json", b"{}".to_vec())]);
    let content_type = content_type.replace(
        "type=\"application/dicom\"",
        "type=\"application/dicom+json\"",
    );
    let response = server
        .post_bytes("/dicomweb/studies", body, &content_type)
        .await;
    expect_problem(response, 415).await;
    // A part that says DICOM but is not.
    let response = stow(
        &server,
        "/dicomweb/studies",
        &[
            ("application/dicom", dicom("mg_rle.dcm")),
            ("application/dicom", fixture("d3b_Image_1.jpg")),
        ],
    )
    .await;
    let problem = expect_problem(response, 400).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("part 1"),
        "{problem}"
    );
    // A part of another declared type.
    let response = stow(
        &server,
        "/dicomweb/studies",
        &[("image/jpeg", fixture("d3b_Image_1.jpg"))],
    )
    .await;
    let problem = expect_problem(response, 415).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("part 0"),
        "{problem}"
    );
    // No boundary.
    let response = server
        .post_bytes(
            "/dicomweb/studies",
            b"x".to_vec(),
            "multipart/related; type=\"application/dicom\"",
        )
        .await;
    let problem = expect_problem(response, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("boundary"));
    // Nothing was kept from any of them.
    assert!(std::fs::read_dir(outbox.join("pending"))
        .unwrap()
        .next()
        .is_none());
}

#[tokio::test]
async fn without_a_results_folder_the_intake_is_off() {
    let server = start(config(&[])).await;
    let response = stow(
        &server,
        "/dicomweb/studies",
        &[("application/dicom", dicom("mg_rle.dcm"))],
    )
    .await;
    let problem = expect_problem(response, 404).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("--results-outbox"));
}

#[tokio::test]
async fn a_study_received_before_a_restart_gets_its_sr_after_it() {
    let outbox = scratch("stow-restart");
    let mut first = start_results(&outbox, "3600", &[]).await;
    let response = stow(
        &first,
        "/dicomweb/studies",
        &[("application/dicom", dicom("mg_left_mlo.dcm"))],
    )
    .await;
    assert_eq!(response.status(), 200);
    first.begin_shutdown();
    assert!(first.stopped(PATIENCE).await, "the first server stops");
    assert!(
        outbox_srs(&outbox).is_empty(),
        "no SR before the study settled"
    );

    let _second = start_results(&outbox, "0.1", &[]).await;
    eventually(
        "the SR of the study received before the restart",
        || async { (outbox_srs(&outbox).len() == 1).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn the_intake_needs_an_api_key_like_every_other_route() {
    let outbox = scratch("stow-keys");
    let keys = temp_file("stow-keys", &key_line("pacs", "pacs-key"));
    let server = start_results(&outbox, "5", &["--api-keys-file", keys.to_str().unwrap()]).await;
    let parts = [("application/dicom", dicom("mg_rle.dcm"))];
    expect_problem(stow(&server, "/dicomweb/studies", &parts).await, 401).await;
    let (content_type, body) = related(&parts);
    let response = server
        .client
        .post(server.url("/dicomweb/studies"))
        .bearer_auth("pacs-key")
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_full_results_folder_refuses_more_studies_with_503() {
    let outbox = scratch("stow-full");
    let server = start_results(&outbox, "3600", &["--results-outbox-max-bytes", "1"]).await;
    let parts = [("application/dicom", dicom("mg_rle.dcm"))];
    assert_eq!(
        stow(&server, "/dicomweb/studies", &parts).await.status(),
        200
    );
    let response = stow(&server, "/dicomweb/studies", &parts).await;
    assert_eq!(response.headers()["retry-after"], "1");
    let problem = expect_problem(response, 503).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("--results-outbox-max-bytes"));
}

#[tokio::test]
async fn a_full_queue_refuses_a_study_before_its_body_is_read() {
    use mammo_serve::engine::gate::Gate;
    let outbox = scratch("stow-queue");
    let gate = Gate::closed();
    let mut flags = ONE_WORKER_TWO_WAITING.to_vec();
    flags.extend(["--results-outbox", outbox.to_str().unwrap()]);
    let server = start_gated(config(&flags), &gate).await;
    let image = || fixture("d3b_Image_1.jpg");
    // One image held by the only worker at the gate; only then two more, which fill the queue
    // (sent together with the first, two could be queued before the worker took one).
    let first = server.post_image(image(), "image/jpeg");
    let (first, (queued, (status, body))) = tokio::join!(first, async {
        assert!(gate.waiting(1, PATIENCE).await);
        let queued = futures_util::future::join_all(
            (0..2).map(|_| server.post_image(image(), "image/jpeg")),
        );
        let refused = async {
            eventually("a full queue", || async {
                (queue_depth(&server).await == 2.0).then_some(())
            })
            .await;
            // Only the first bytes of a large study are sent: the answer comes without the rest.
            let (content_type, body) = related(&[("application/dicom", vec![0u8; 8 << 20])]);
            let upload =
                start_upload(server.addr, "/dicomweb/studies", &content_type, &body, 64).await;
            let answer = finish_upload(upload, &[]).await;
            gate.open();
            answer
        };
        tokio::join!(queued, refused)
    });
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("queue is full"), "{body}");
    assert_eq!(first.status(), 200);
    assert!(queued.iter().all(|r| r.status() == 200));
}
