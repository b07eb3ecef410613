//! Shutdown as an orchestrator sees it: readiness fails first while requests are still
//! served (`--shutdown-delay`), then the listener closes, requests in flight are answered, and
//! the drain is bounded (`--shutdown-timeout`). The gate backend holds requests in flight for
//! as long as a test needs.

mod common;

use common::*;
use mammo_serve::engine::gate::Gate;
use serde_json::Value;

#[tokio::test]
async fn readiness_fails_first_and_a_request_in_flight_is_answered() {
    let gate = Gate::closed();
    let server = start_gated(
        config(&["--engine-workers", "1", "--shutdown-delay", "3600"]),
        &gate,
    )
    .await;
    assert_eq!(server.get("/health/ready").await.status(), 200);
    let in_flight = server.post_image(fixture("d1b_Image_2.jpg"), "image/jpeg");
    let (answer, ()) = tokio::join!(in_flight, async {
        assert!(gate.waiting(1, PATIENCE).await);
        server.begin_shutdown();
        // Until the delay ends new requests are still served, and readiness says stopping.
        let ready = async {
            loop {
                let response = server.get("/health/ready").await;
                if response.status() == 503 {
                    return response.json::<Value>().await.unwrap();
                }
                tokio::task::yield_now().await;
            }
        };
        let body = tokio::time::timeout(PATIENCE, ready)
            .await
            .expect("readiness never failed");
        assert_eq!(body["status"], "stopping");
        assert_eq!(server.get("/health/live").await.status(), 200);
        gate.open();
    });
    assert_eq!(answer.status(), 200, "the request in flight at the signal");
}

#[tokio::test]
async fn the_drain_ends_at_the_shutdown_timeout() {
    let gate = Gate::closed();
    let mut server = start_gated(
        // A request deadline far past the test's patience: only the drain's bound can end it.
        config(&[
            "--engine-workers",
            "1",
            "--shutdown-timeout",
            "1",
            "--request-timeout",
            "3600",
        ]),
        &gate,
    )
    .await;
    let request = server
        .client
        .post(server.url("/predict"))
        .header("content-type", "image/jpeg")
        .body(fixture("d1b_Image_2.jpg"));
    let stuck = tokio::spawn(async move {
        let _ = request.send().await;
    });
    assert!(gate.waiting(1, PATIENCE).await);
    server.begin_shutdown();
    // The gate is never opened: only the drain's bound can end serving.
    assert!(
        server.stopped(PATIENCE).await,
        "serving outlived --shutdown-timeout"
    );
    // New connections are refused once the listener has closed.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
    gate.open();
    stuck.abort();
}
