//! The budget on request bodies held at once (`--max-inflight-bytes`): a request the budget
//! cannot take is answered 429 before its body is read, a chunked one is charged its route's
//! limit, and the budget recovers when a held request ends, even one its client abandoned.

mod common;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The bytes the server says it holds for requests now.
async fn bytes_held(server: &TestServer) -> u64 {
    let text = server.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("mammo_request_body_bytes_held "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("the gauge is rendered") as u64
}

/// Sends a request's head alone, declaring `length` body bytes, and reads the answer: the
/// server must answer without the body.
async fn head_only(server: &TestServer, length: usize) -> (u16, String) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: mammo\r\nContent-Type: image/jpeg\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    read_response(&mut stream).await
}

/// Sends `body` as one chunk of a chunked request (no Content-Length) and reads the answer.
async fn chunked(server: &TestServer, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /predict HTTP/1.1\r\nHost: mammo\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(format!("{:x}\r\n", body.len()).as_bytes())
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();
    stream.write_all(b"\r\n0\r\n\r\n").await.unwrap();
    read_response(&mut stream).await
}

#[tokio::test]
async fn bodies_past_the_budget_are_429_before_they_are_read_and_the_budget_recovers() {
    let server = start(config(&[
        "--max-body-bytes",
        "100000",
        "--max-batch-body-bytes",
        "100000",
        "--max-inflight-bytes",
        "150000",
    ]))
    .await;
    let image = fixture("d3b_Image_1.jpg");
    assert_eq!(bytes_held(&server).await, 0);

    // An upload that declares 100,000 bytes and sends ten holds its charge while it lasts.
    let held = start_upload(server.addr, "/predict", "image/jpeg", &[0; 100_000], 10).await;
    // (the scrape itself is not charged: only /predict and /batch are)
    while bytes_held(&server).await < 100_000 {
        tokio::task::yield_now().await;
    }

    // Another 100,000 do not fit: refused at once, from the declared length alone.
    let (status, body) = head_only(&server, 100_000).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("--max-inflight-bytes"), "{body}");
    // Without a declared length a request is charged the route's limit: it does not fit either.
    let (status, body) = chunked(&server, &image).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("no Content-Length"), "{body}");
    // An image that fits beside the held upload is answered.
    assert_eq!(
        server
            .post_image(image.clone(), "image/jpeg")
            .await
            .status(),
        200
    );

    // The client gives up: its charge comes back and the refused requests now pass.
    drop(held);
    while bytes_held(&server).await > 0 {
        tokio::task::yield_now().await;
    }
    let (status, body) = chunked(&server, &image).await;
    assert_eq!(status, 200, "{body}");
    let zeros = vec![0; 100_000];
    let upload = start_upload(server.addr, "/predict", "image/jpeg", &zeros, 0).await;
    let (status, body) = finish_upload(upload, &zeros).await;
    assert_eq!(status, 400, "admitted and read: {body}");
}
