//! HTTPS on the API port (`--tls-cert`, `--tls-key`): a real TLS client that trusts a test CA
//! made here is served over HTTP/2 and HTTP/1.1, a client that does not trust it is refused,
//! a renewed certificate is served without a restart, and a broken pair stops start-up.

mod common;

use common::*;
use mammo_serve::Config;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use std::path::{Path, PathBuf};

/// A certificate authority made for one test, and leaf certificates it signs.
struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.clone().self_signed(&key).unwrap().pem();
        TestCa { params, key, pem }
    }

    /// A certificate for `localhost` and 127.0.0.1 and its key, as PEM.
    fn leaf(&self) -> (String, String) {
        let issuer = self.params.clone().self_signed(&self.key).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A client that trusts this CA and nothing else.
    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.pem.as_bytes()).unwrap())
            .build()
            .unwrap()
    }
}

fn pair(name: &str, (cert, key): &(String, String)) -> (PathBuf, PathBuf) {
    (
        temp_file(&format!("{name}-cert.pem"), cert),
        temp_file(&format!("{name}-key.pem"), key),
    )
}

fn tls_flags(cert: &Path, key: &Path) -> Config {
    config(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
}

#[tokio::test]
async fn a_client_trusting_the_ca_is_served_and_a_renewed_certificate_is_picked_up() {
    let first = TestCa::new("mammo test CA 1");
    let (cert, key) = pair("tls-renew", &first.leaf());
    let server = start(tls_flags(&cert, &key)).await;
    let https = |path: &str| format!("https://localhost:{}{path}", server.addr.port());

    let client = first.client();
    let answer = client
        .post(https("/predict"))
        .header("content-type", "image/jpeg")
        .body(fixture("d1b_Image_2.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(body["model"]["version"].is_string(), "{body}");
    let http1 = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(first.pem.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let live = http1.get(https("/health/live")).send().await.unwrap();
    assert_eq!(
        (live.version(), live.status().as_u16()),
        (reqwest::Version::HTTP_11, 200)
    );

    // Plain HTTP on the TLS port and a client that does not trust the CA get no answer.
    let plain = server.client.get(server.url("/health/live")).send().await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    let stranger = TestCa::new("some other CA").client();
    assert!(stranger.get(https("/health/live")).send().await.is_err());

    // The certificate is renewed under another CA: new handshakes present it, no restart.
    let second = TestCa::new("mammo test CA 2");
    let (new_cert, new_key) = second.leaf();
    std::fs::write(&key, new_key).unwrap();
    std::fs::write(&cert, new_cert).unwrap();
    let renewed = second.client();
    let deadline = std::time::Instant::now() + PATIENCE;
    while renewed.get(https("/health/live")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::task::yield_now().await;
    }
    assert!(first
        .client()
        .get(https("/health/live"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_stops_start_up() {
    let ca = TestCa::new("mammo test CA");
    let (cert, _) = pair("tls-mismatch-a", &ca.leaf());
    let (_, other_key) = pair("tls-mismatch-b", &ca.leaf());
    let refused = |cert: PathBuf, key: PathBuf| async move {
        match mammo_serve::Server::bind(tls_flags(&cert, &key)).await {
            Ok(_) => panic!("{} and {} were accepted", cert.display(), key.display()),
            Err(error) => error.to_string(),
        }
    };
    let error = refused(cert, other_key.clone()).await;
    assert!(error.contains("does not belong"), "{error}");
    let error = refused(temp_file("tls-not-pem", "not a certificate\n"), other_key).await;
    assert!(error.contains("tls-not-pem"), "{error}");
}
