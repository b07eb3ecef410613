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

/// Reads one keep-alive response (headers, then as many body bytes as Content-Length says):
/// its status line and body.
async fn one_response(stream: &mut TcpStream) -> (String, String) {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed before a response");
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while raw.len() < head_end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed inside a response");
        raw.extend_from_slice(&chunk[..n]);
    }
    let status = head.lines().next().unwrap_or_default().to_string();
    (
        status,
        String::from_utf8_lossy(&raw[head_end..head_end + length]).to_string(),
    )
}

#[tokio::test]
async fn an_answer_given_before_the_body_is_read_reaches_a_client_still_sending_it() {
    let keys = temp_file("keys-drain", &key_line("viewer", "v-key"));
    let server = start(config(&["--api-keys-file", keys.to_str().unwrap()])).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // 16 MB: more than the socket buffers hold, so the whole body is sent only if the server
    // reads it after refusing the request unread (no key: 401).
    let body = vec![0u8; 16_000_000];
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: mammo\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(&body)
        .await
        .expect("the body is read after the early answer");
    let (status, problem) = one_response(&mut stream).await;
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    assert!(problem.contains("API key"), "{problem}");
    // The connection stays usable.
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: mammo\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = one_response(&mut stream).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
}
