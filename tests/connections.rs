//! What a client can hold before any request reaches the API: slow and idle connections are
//! closed after the header-read timeout, and connections over the cap are closed at once,
//! while real requests keep being answered.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits until the server closes `stream` (end of file or a reset), failing after `bound`:
/// a guard against a server that never closes it, not a wait for anything.
async fn closed_by_server(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut sink = Vec::new();
    match tokio::time::timeout(bound, stream.read_to_end(&mut sink)).await {
        Ok(_) => true,
        Err(_elapsed) => false,
    }
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed_while_requests_are_answered() {
    let server = start(config(&["--header-read-timeout", "1"])).await;
    let mut trickling = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        // Half a request: the line and one header, never the blank line that ends them.
        stream
            .write_all(b"POST /predict HTTP/1.1\r\nHost: mammo\r\n")
            .await
            .unwrap();
        trickling.push(stream);
    }
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: mammo\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).await.unwrap();
    assert_eq!(
        &answer, b"HTTP/1.1 200",
        "the keep-alive connection's first answer"
    );

    // Real requests are answered while those sockets are open.
    let body: serde_json::Value = server
        .post_image(fixture("d1b_Image_2.jpg"), "image/jpeg")
        .await
        .json()
        .await
        .unwrap();
    assert!(body["model"]["version"].is_string());

    // Under hyper's own 30 s default, so that a timeout the flag does not reach is caught.
    let bound = Duration::from_secs(20);
    for (i, stream) in trickling.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream, bound).await,
            "connection {i} still open"
        );
    }
    assert!(
        closed_by_server(&mut idle, bound).await,
        "the idle keep-alive connection is still open"
    );
    assert_eq!(server.get("/health/live").await.status(), 200);
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    // A header-read timeout far beyond the test's guard, so that only the cap can close a
    // connection within it.
    let server = start(config(&[
        "--max-connections",
        "4",
        "--header-read-timeout",
        "3600",
    ]))
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: mammo\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
        held.push(stream);
    }
    let mut fifth = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_by_server(&mut fifth, Duration::from_secs(60)).await,
        "a fifth connection was kept open"
    );

    // A freed slot is taken again: once the server has seen a held connection close, a new
    // client is served (tried until then; each refused try is closed at once).
    drop(held.pop());
    let served = async {
        loop {
            let fresh = reqwest::Client::new();
            if let Ok(response) = fresh.get(server.url("/health/live")).send().await {
                return response.status();
            }
            tokio::task::yield_now().await;
        }
    };
    let status = tokio::time::timeout(Duration::from_secs(60), served)
        .await
        .expect("no connection was served after one closed");
    assert_eq!(status, 200);
}
