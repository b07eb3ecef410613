//! Single-image latency, one request at a time: the engine alone against the whole server.
//!
//! cargo run --release --example latency -- [MODEL.onnx] [ROUNDS]
//!
//! Prints p50/p90/p99 for (1) decode + preprocess of a fixture JPEG, (2) the engine alone
//! (`Engine::infer` on a ready tensor: queue hop + `Session::run`), (3) `POST /predict` through
//! a real server on 127.0.0.1 (HTTP, decode, preprocess, engine, JSON); then the engine's
//! throughput at batch 16 on ready tensors (the ceiling for `mammo-eval`).

use clap::Parser;
use mammo_serve::{engine, imaging, Config, Server};
use std::time::{Duration, Instant};

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "{name:<34} p50 {:>7.2} ms   p90 {:>7.2} ms   p99 {:>7.2} ms   (n={})",
        at(0.5),
        at(0.9),
        at(0.99),
        samples.len()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| mammo_serve::config::DEFAULT_MODEL.to_string());
    let rounds: usize = args.get(2).map_or(Ok(300), |s| s.parse())?;
    let config = Config::try_parse_from([
        "latency", "--port", "0", "--device", "cpu", "--model", &model,
    ])?;
    let image = std::fs::read("tests/fixtures/d3b_Image_1.jpg")?;
    println!(
        "model {model}, {} cores, {rounds} rounds each, one request at a time",
        std::thread::available_parallelism()?
    );

    let env = engine::environment(&config.ort_lib)?;
    let engine = engine::Engine::load(&env, &config.engine())?;
    let prep = engine.info().metadata.preprocessing.clone();
    let limits = config.decode_limits();
    let tensor = imaging::to_tensor(&image, &limits, &prep)?;

    let mut decode = Vec::with_capacity(rounds);
    let mut infer = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        std::hint::black_box(imaging::to_tensor(&image, &limits, &prep)?);
        decode.push(t.elapsed());
        let t = Instant::now();
        engine.infer(tensor.clone(), 1).await?;
        infer.push(t.elapsed());
    }
    // Engine throughput on ready tensors at the batch size mammo-eval uses (16).
    let batch: Vec<f32> = (0..16).flat_map(|_| tensor.iter().copied()).collect();
    let started = Instant::now();
    let mut images = 0;
    while started.elapsed() < Duration::from_secs(5) {
        engine.infer(batch.clone(), 16).await?;
        images += 16;
    }
    let throughput = images as f64 / started.elapsed().as_secs_f64();
    drop(engine);

    let server = Server::bind(config).await?;
    let url = format!("http://{}/predict", server.local_addr());
    server.loader().load().await?;
    tokio::spawn(server.serve(std::future::pending()));
    let client = reqwest::Client::new();
    let mut http = Vec::with_capacity(rounds);
    for i in 0..rounds + 10 {
        let t = Instant::now();
        let response = client
            .post(&url)
            .header("content-type", "image/jpeg")
            .body(image.clone())
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "status {}", response.status());
        response.bytes().await?;
        if i >= 10 {
            http.push(t.elapsed());
        }
    }
    percentiles("decode + preprocess (224 JPEG)", decode);
    percentiles("engine alone (batch 1)", infer);
    percentiles("server POST /predict (end to end)", http);
    println!("engine throughput, batch 16 (ready tensors): {throughput:.1} images/s");
    Ok(())
}
