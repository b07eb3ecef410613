//! Cross-origin access: off unless `--cors-allow-origin` names the browser applications that
//! may call the API; then their preflights are answered and their answers readable.

mod common;

use common::*;

const VIEWER: &str = "https://viewer.example.org";

async fn preflight(server: &TestServer, origin: &str) -> reqwest::Response {
    server
        .client
        .request(reqwest::Method::OPTIONS, server.url("/predict"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap()
}

fn allowed_origin(response: &reqwest::Response) -> Option<&str> {
    response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_named_origin_is_allowed_and_others_are_not() {
    let server = start(config(&["--cors-allow-origin", VIEWER])).await;
    let answer = preflight(&server, VIEWER).await;
    assert!(answer.status().is_success(), "{}", answer.status());
    assert_eq!(allowed_origin(&answer), Some(VIEWER));
    let methods = answer.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(methods.contains("POST"), "{methods}");

    let stranger = preflight(&server, "https://elsewhere.example.com").await;
    assert_eq!(allowed_origin(&stranger), None);

    // The answer itself carries the header, and the page may read the timing headers.
    let response = server
        .client
        .post(server.url("/predict"))
        .header("origin", VIEWER)
        .header("content-type", "image/jpeg")
        .body(fixture("d1b_Image_2.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(allowed_origin(&response), Some(VIEWER));
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("x-total-time"), "{exposed}");
}

#[tokio::test]
async fn without_the_flag_no_origin_is_allowed() {
    let server = start(config(&[])).await;
    let answer = preflight(&server, VIEWER).await;
    assert_eq!(
        answer.status(),
        405,
        "a preflight is an OPTIONS the API does not serve"
    );
    assert_eq!(allowed_origin(&answer), None);
}

#[test]
fn an_origin_that_is_not_one_is_refused_at_start_up() {
    let error = config(&["--cors-allow-origin", "viewer.example.org"])
        .validate()
        .unwrap_err();
    assert!(error.to_string().contains("--cors-allow-origin"), "{error}");
}
