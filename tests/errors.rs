//! Every error status with a real bad input, as a client sees it.

mod common;

use common::*;

#[tokio::test]
async fn undecodable_bodies_are_400() {
    let server = start(config(&[])).await;
    for (what, bytes, content_type) in [
        ("empty body", Vec::new(), "image/jpeg"),
        (
            "text posing as an image",
            b"hello, I am not an image".to_vec(),
            "image/png",
        ),
        ("corrupt JPEG", corrupt_jpeg(), "image/jpeg"),
        (
            "truncated PNG",
            fixture("variant_grey8.png")[..40].to_vec(),
            "image/png",
        ),
    ] {
        let problem = expect_problem(server.post_image(bytes, content_type).await, 400).await;
        println!("{what}: {}", problem["detail"]);
    }
    // A cut-off upload is refused, not read as the decoder's grey fill of the missing part.
    for (name, content_type) in [
        ("d3b_Image_1.jpg", "image/jpeg"),
        ("variant_grey8.png", "image/png"),
    ] {
        let whole = fixture(name);
        // Cut inside the pixel data: half-way, and just before the last scan's end marker
        // (JPEG) or the last data chunk's checksum (PNG: its 12-byte IEND chunk follows).
        for cut in [whole.len() / 2, whole.len() - 16] {
            let response = server.post_image(whole[..cut].to_vec(), content_type).await;
            let problem = expect_problem(response, 400).await;
            let detail = problem["detail"].as_str().unwrap();
            assert!(
                detail.contains("could not be decoded"),
                "{name} cut at {cut}: {detail}"
            );
        }
    }
    let form = form(vec![("image", fixture("d1b_Image_2.jpg"))]);
    let response = server.post_multipart("/predict", form).await;
    let problem = expect_problem(response, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("`file`"));
}

#[tokio::test]
async fn unsupported_content_types_are_415() {
    let server = start(config(&[])).await;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "image/gif",
    ] {
        let problem = expect_problem(
            server
                .post_image(fixture("d1b_Image_2.jpg"), content_type)
                .await,
            415,
        )
        .await;
        println!("{content_type}: {}", problem["detail"]);
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let server = start(config(&[
        "--max-body-bytes",
        "4000",
        "--max-batch-body-bytes",
        "4000",
    ]))
    .await;
    let image = fixture("d2b_Image_60.jpg"); // 11 kB
    let problem = expect_problem(server.post_image(image.clone(), "image/jpeg").await, 413).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("--max-body-bytes"));
    let response = server
        .post_multipart("/predict", form(vec![("file", image.clone())]))
        .await;
    expect_problem(response, 413).await;
    let response = server
        .post_multipart("/batch", form(vec![("files", image)]))
        .await;
    let problem = expect_problem(response, 413).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("--max-batch-body-bytes"));
    // A small image still passes.
    assert_eq!(
        server
            .post_image(fixture("d4b_Image_8.jpg"), "image/jpeg")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn decodable_but_unusable_images_are_422() {
    let server = start(config(&["--max-image-side", "500"])).await;
    let bomb = fixture("bad_huge_dimensions.png");
    assert!(
        bomb.len() < 100,
        "the file is tiny but claims 100000×100000 px"
    );
    let problem = expect_problem(server.post_image(bomb, "image/png").await, 422).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("100000×100000"));
    let problem = expect_problem(
        server
            .post_image(fixture("variant_grey16_448x560.png"), "image/png")
            .await,
        422,
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("limit is 500"));
    let problem = expect_problem(
        server
            .post_image(fixture("bad_tiny_8x8.png"), "image/png")
            .await,
        422,
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("8×8"));
}

#[tokio::test]
async fn concurrency_over_the_limit_is_429_then_recovers() {
    let server = start(config(&["--max-concurrency", "1"])).await;
    let image = fixture("d3b_Image_1.jpg");
    // Hold the only slot with a request whose body is still uploading.
    let held = start_upload(server.addr, "/predict", "image/jpeg", &image, 100).await;
    // In flight: the held request and the scrape that counts it.
    while !server
        .get("/metrics")
        .await
        .text()
        .await
        .unwrap()
        .contains("mammo_http_requests_in_flight 2\n")
    {
        tokio::task::yield_now().await;
    }
    let response = server.post_image(image.clone(), "image/jpeg").await;
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    expect_problem(response, 429).await;
    // Health stays answerable while inference is saturated.
    assert_eq!(server.get("/health/live").await.status(), 200);
    // The held request is not lost: it completes once its body arrives.
    let (status, body) = finish_upload(held, &image[100..]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.post_image(image, "image/jpeg").await.status(), 200);
}

#[tokio::test]
async fn a_stalled_request_times_out_with_503() {
    let server = start(config(&["--request-timeout", "0.5"])).await;
    let image = fixture("d3b_Image_1.jpg");
    let stalled = start_upload(server.addr, "/predict", "image/jpeg", &image, 100).await;
    let (status, body) = finish_upload(stalled, &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("did not complete within 0.5 s"), "{body}");
    assert_eq!(server.post_image(image, "image/jpeg").await.status(), 200);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let server = start(config(&[])).await;
    let response = server.get("/v2/everything").await;
    expect_problem(response, 404).await;
    let problem = expect_problem(server.get("/predict").await, 405).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("GET is not allowed on /predict"));
}
