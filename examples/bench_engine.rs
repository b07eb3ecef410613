//! The raw engine's ceiling: preprocessed tensors of a real JPEG straight into ONNX Runtime
//! sessions (`GraphOptimizationLevel::All`, as the server), no queue, no HTTP, at batch sizes
//! 1..=32, with one session using every core and with one single-threaded session per core side
//! by side; plus decode + preprocess time per image.
//!
//! `cargo run --release --example bench_engine -- [MODEL] [IMAGE] [SECONDS_PER_SIZE]`
//! The last line is `best_images_per_s=<N> sessions=<S> batch=<B>` for scripts/benchmark.sh.

use mammo_serve::config::{Config, DEFAULT_MODEL};
use mammo_serve::engine::{onnx, Unobserved};
use mammo_serve::{imaging, pipeline};
use ort::environment::Environment;
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
    let env = onnx::environment(&config.ort_lib)?;

    // The preprocessing contract comes from the model, as in the server.
    let (engine, info) =
        pipeline::load_onnx(&env, &config.onnx(), std::sync::Arc::new(Unobserved))?;
    let prep = info.metadata.preprocessing.clone();
    drop(engine);
    let bytes = bytes::Bytes::from(std::fs::read(&image)?);
    let limits = config.decode_limits();
    let mut decode = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        std::hint::black_box(imaging::prepare(&bytes, &limits, &prep)?);
        decode.push(t.elapsed());
    }
    decode.sort();
    let tensor = imaging::prepare(&bytes, &limits, &prep)?.tensor;
    let cores = std::thread::available_parallelism()?.get();
    println!(
        "model {model}; image {image}; {cores} cores; decode + preprocess p50 {:.2} ms",
        decode[decode.len() / 2].as_secs_f64() * 1e3
    );

    // Both ways to spend the cores: one session using all of them, or one single-threaded
    // session per core running side by side (what --engine-workers does).
    let shape = [3, prep.height as usize, prep.width as usize];
    let mut best = (0.0, String::new());
    println!("{:>9} {:>6} {:>12}", "sessions", "batch", "images/s");
    for sessions in [1, cores] {
        for batch in [1usize, 2, 4, 8, 16, 32] {
            let rate = measure(
                &env,
                &model,
                sessions,
                cores / sessions,
                batch,
                &tensor,
                shape,
                seconds,
            )?;
            println!("{sessions:>9} {batch:>6} {rate:>12.1}");
            if rate > best.0 {
                best = (rate, format!("sessions={sessions} batch={batch}"));
            }
        }
    }
    println!("best_images_per_s={:.1} {}", best.0, best.1);
    Ok(())
}

/// Images per second of `sessions` sessions (`threads` intra-op threads each) running batches
/// of `batch` copies of `tensor` side by side for `seconds`.
#[allow(clippy::too_many_arguments)]
fn measure(
    env: &Environment,
    model: &str,
    sessions: usize,
    threads: usize,
    batch: usize,
    tensor: &[f32],
    [c, h, w]: [usize; 3],
    seconds: f64,
) -> anyhow::Result<f64> {
    let input: Vec<f32> = (0..batch).flat_map(|_| tensor.iter().copied()).collect();
    std::thread::scope(|scope| -> anyhow::Result<f64> {
        let handles: Vec<_> = (0..sessions)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<f64> {
                    let failed = |e: ort::Error<_>| anyhow::anyhow!("session options: {e}");
                    let mut session = Session::builder(env)?
                        .with_optimization_level(GraphOptimizationLevel::All)
                        .map_err(failed)?
                        .with_intra_threads(threads)
                        .map_err(failed)?
                        .commit_from_file(model)?;
                    let name = session.inputs()[0].name().to_string();
                    let mut run = || -> anyhow::Result<()> {
                        let value =
                            TensorRef::from_array_view(([batch, c, h, w], input.as_slice()))?;
                        session.run(ort::inputs![name.as_str() => value])?;
                        Ok(())
                    };
                    run()?; // the first run at a new shape allocates
                    let (started, mut done) = (Instant::now(), 0);
                    while started.elapsed() < Duration::from_secs_f64(seconds) {
                        run()?;
                        done += batch as u64;
                    }
                    Ok(done as f64 / started.elapsed().as_secs_f64())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))?
            })
            .sum()
    })
}

/// The server's defaults with this model, on the CPU (no flags or environment needed).
fn cpu_config(model: &str) -> anyhow::Result<Config> {
    use clap::Parser;
    // Loaded only to read the model's preprocessing: one session, warmed up on batch 1 only.
    let args = [
        "bench_engine",
        "--device",
        "cpu",
        "--warmup-runs",
        "0",
        "--engine-workers",
        "1",
        "--max-batch-size",
        "1",
        "--model",
        model,
    ];
    Ok(Config::try_parse_from(args)?)
}
