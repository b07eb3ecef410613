//! The raw engine's ceiling: preprocessed tensors of a real JPEG straight into an ONNX Runtime
//! session (the server's settings: `GraphOptimizationLevel::All`, one intra-op thread per
//! core), no queue, no HTTP, at batch sizes 1..=32; plus decode + preprocess time per image.
//!
//! `cargo run --release --example bench_engine -- [MODEL] [IMAGE] [SECONDS_PER_SIZE]`
//! The last line is `best_images_per_s=<N> batch=<B>` for scripts (scripts/benchmark.sh).

use mammo_serve::config::{Config, DEFAULT_MODEL};
use mammo_serve::{engine, imaging};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).cloned().unwrap_or_else(|| DEFAULT_MODEL.into());
    let image = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "tests/fixtures/d3b_Image_1.jpg".into());
    let seconds: f64 = args.get(3).map_or(Ok(4.0), |s| s.parse())?;
    let config = cpu_config(&model)?;
    let env = engine::environment(&config.ort_lib)?;
    let builder_failed = |e: ort::Error<_>| anyhow::anyhow!("session options: {e}");
    let mut session = Session::builder(&env)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(builder_failed)?
        .with_intra_threads(0)
        .map_err(builder_failed)?
        .commit_from_file(&model)?;
    let input_name = session.inputs()[0].name().to_string();

    // The preprocessing contract comes from the model, as in the server.
    let engine = engine::Engine::load(&env, &config.engine(), Default::default())?;
    let prep = engine.info().metadata.preprocessing.clone();
    drop(engine);
    let bytes = std::fs::read(&image)?;
    let limits = config.decode_limits();
    let mut decode = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        std::hint::black_box(imaging::to_tensor(&bytes, &limits, &prep)?);
        decode.push(t.elapsed());
    }
    decode.sort();
    let tensor = imaging::to_tensor(&bytes, &limits, &prep)?;
    println!(
        "model {model}; image {image}; {} cores; decode + preprocess p50 {:.2} ms",
        std::thread::available_parallelism()?,
        decode[decode.len() / 2].as_secs_f64() * 1e3
    );

    let (h, w) = (prep.height as usize, prep.width as usize);
    let mut best = (0.0, 0);
    println!("{:>6} {:>12} {:>14}", "batch", "images/s", "ms per run");
    for batch in [1usize, 2, 4, 8, 16, 32] {
        let input: Vec<f32> = (0..batch).flat_map(|_| tensor.iter().copied()).collect();
        let mut run = || -> anyhow::Result<()> {
            let value = TensorRef::from_array_view(([batch, 3, h, w], input.as_slice()))?;
            session.run(ort::inputs![input_name.as_str() => value])?;
            Ok(())
        };
        run()?; // first run at a new shape allocates
        let (started, mut runs) = (Instant::now(), 0u32);
        while started.elapsed() < Duration::from_secs_f64(seconds) {
            run()?;
            runs += 1;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let rate = f64::from(runs) * batch as f64 / elapsed;
        println!(
            "{batch:>6} {rate:>12.1} {:>14.2}",
            elapsed * 1e3 / f64::from(runs)
        );
        if rate > best.0 {
            best = (rate, batch);
        }
    }
    println!("best_images_per_s={:.1} batch={}", best.0, best.1);
    Ok(())
}

/// The server's defaults with this model, on the CPU (no flags or environment needed).
fn cpu_config(model: &str) -> anyhow::Result<Config> {
    use clap::Parser;
    let args = [
        "bench_engine",
        "--device",
        "cpu",
        "--warmup-runs",
        "0",
        "--model",
        model,
    ];
    Ok(Config::try_parse_from(args)?)
}
