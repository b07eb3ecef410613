//! Decode + preprocess time of one (full-field) DICOM mammogram, as the server spends it per
//! image (`imaging::prepare`, which decodes 16-bit RLE on two threads), and its stages: the
//! header parse, the pixels decoded (RLE row by row) into k×k block means of the stored values
//! and mapped to grey, then the breast box, orientation, resize to 224×224 and padding of that
//! reduced image. Wall time per call, and for `prepare` also the CPU time of the process per
//! call (both threads; Linux `/proc`). dicom-rs's own parse + decompress (one thread) is timed
//! beside it for comparison, and so is one inference of the shipped model on the prepared
//! tensor, through the server's engine with its default settings: the yardstick of issue #6,
//! measured in the same minute (this VM's speed drifts).
//!
//! `cargo run --release --example bench_dicom -- FILE.dcm [RUNS] [PICTURE.png]`
//! (the preprocessing is the shipped model's, `models/mammo.onnx`)
//! (scripts/bench_dicom.sh makes a 2600×4700 16-bit RLE image and runs this.) With PICTURE,
//! also draws the image as decoded (the breast box in red) beside what the model sees.

use clap::Parser;
use dicom_object::file::ReadPreamble;
use dicom_object::OpenFileOptions;
use dicom_pixeldata::PixelDecoder;
use image::{Rgb, RgbImage};
use mammo_serve::config::{Config, DEFAULT_MODEL};
use mammo_serve::engine::{onnx, Unobserved};
use mammo_serve::imaging::preprocess::{breast_box, model_plane, Region};
use mammo_serve::imaging::reduce::reduction;
use mammo_serve::imaging::{self, dicom, Grey};
use mammo_serve::pipeline;
use std::time::{Duration, Instant};

fn percentiles(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let ms = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    (ms(0.5), ms(0.9))
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    let times = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    percentiles(times)
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`.
fn cpu_time() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap_or(0) + 2..]
        .split(' ')
        .collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // The kernel reports in USER_HZ, 100 a second on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: bench_dicom FILE.dcm [RUNS]"))?;
    let runs: usize = args.get(2).map_or(Ok(20), |s| s.parse())?;
    let bytes = bytes::Bytes::from(std::fs::read(path)?);
    let config =
        Config::try_parse_from(["bench_dicom", "--device", "cpu", "--model", DEFAULT_MODEL])?;
    let limits = config.decode_limits();
    let env = onnx::environment(&config.ort_lib)?;
    let (engine, model) =
        pipeline::load_onnx(&env, &config.onnx(), std::sync::Arc::new(Unobserved))?;
    let prep = model.metadata.preprocessing.clone();
    let runtime = tokio::runtime::Runtime::new()?;

    let image = dicom::read(&bytes, &limits)?;
    let info = image.info.clone();
    let (width, height) = (image.stored.width, image.stored.height);
    let k = reduction(width, height, &prep);
    let reduced = image.stored.grey(k)?;
    let region = breast_box(&reduced);
    println!(
        "{path}: {:.1} MB, {width}×{height} px, transfer syntax {}, laterality {:?}, reduced \
         by {k} to {}×{}, breast box there {region:?}",
        bytes.len() as f64 / 1e6,
        info.transfer_syntax,
        info.laterality,
        reduced.width,
        reduced.height,
    );

    let dicom_rs = time(runs, || {
        let object = OpenFileOptions::new()
            .read_preamble(ReadPreamble::Never)
            .from_reader(&bytes[128..])
            .expect("parses");
        object.decode_pixel_data().expect("decodes").rows()
    });
    let stages = [
        ("dicom-rs alone: parse + decompress", dicom_rs),
        (
            "header parsed, pixel data located",
            time(runs, || dicom::read(&bytes, &limits).expect("parses").info),
        ),
        (
            "decoded, reduced, mapped to grey",
            time(runs, || image.stored.grey(k).expect("decodes")),
        ),
        (
            "breast box, orient, resize, pad",
            time(runs, || model_plane(&reduced, info.laterality, &prep)),
        ),
        (
            "prepare (all of it)",
            time(runs, || {
                imaging::prepare(&bytes, &limits, &prep).expect("prepares")
            }),
        ),
    ];
    let tensor = imaging::prepare(&bytes, &limits, &prep)?.tensor;
    let inference = time(runs, || {
        runtime
            .block_on(engine.infer(vec![tensor.clone()], None))
            .expect("infers")
    });
    let calls = runs.max(100);
    let (cpu, wall) = (cpu_time()?, Instant::now());
    for _ in 0..calls {
        std::hint::black_box(imaging::prepare(&bytes, &limits, &prep)?);
    }
    let cpu_ms = (cpu_time()? - cpu).as_secs_f64() * 1e3 / calls as f64;
    let mean_ms = wall.elapsed().as_secs_f64() * 1e3 / calls as f64;
    println!("{runs} runs, wall p50 / p90 ms:");
    for (stage, (p50, p90)) in stages {
        println!("  {stage:<40} {p50:8.1} {p90:8.1}");
    }
    let total = stages[stages.len() - 1].1;
    println!("prepare over {calls} more calls: {mean_ms:.1} ms wall, {cpu_ms:.1} ms CPU a call");
    println!(
        "one inference of {DEFAULT_MODEL} (server defaults, CPU), p50 / p90 ms: {:.1} / {:.1}",
        inference.0, inference.1
    );
    println!("decode_preprocess_p50_ms={:.1}", total.0);
    if let Some(out) = args.get(3) {
        let full = region.map(|r| Region {
            left: r.left * k,
            top: r.top * k,
            width: r.width * k,
            height: r.height * k,
        });
        picture(
            &image.grey()?,
            full,
            &model_plane(&reduced, info.laterality, &prep),
        )
        .save(out)?;
        println!("wrote {out}");
    }
    Ok(())
}

/// The decoded image scaled to 448 px tall with the breast box (found on the reduced image,
/// drawn in full-resolution pixels) in red, then the 224×224 model input at twice its size,
/// on one canvas.
fn picture(grey: &Grey, region: Option<Region>, plane: &[f32]) -> RgbImage {
    const SIDE: u32 = 448;
    let scale = SIDE as f32 / grey.height as f32;
    let width = (grey.width as f32 * scale).round() as u32;
    let mut canvas = RgbImage::from_pixel(width + 16 + SIDE, SIDE, Rgb([255, 255, 255]));
    let level = |v: f32| (v.clamp(0.0, 1.0) * 255.0) as u8;
    for y in 0..SIDE {
        for x in 0..width {
            let (sx, sy) = ((x as f32 / scale) as u32, (y as f32 / scale) as u32);
            let v = level(grey.row(sy.min(grey.height - 1))[sx.min(grey.width - 1) as usize]);
            canvas.put_pixel(x, y, Rgb([v, v, v]));
        }
    }
    if let Some(r) = region {
        let (x0, y0) = (
            (r.left as f32 * scale) as u32,
            (r.top as f32 * scale) as u32,
        );
        let x1 = (((r.left + r.width) as f32 * scale) as u32).min(width - 1);
        let y1 = (((r.top + r.height) as f32 * scale) as u32).min(SIDE - 1);
        for t in 0..3 {
            for x in x0..=x1 {
                canvas.put_pixel(x, (y0 + t).min(SIDE - 1), Rgb([230, 30, 30]));
                canvas.put_pixel(x, y1.saturating_sub(t), Rgb([230, 30, 30]));
            }
            for y in y0..=y1 {
                canvas.put_pixel((x0 + t).min(width - 1), y, Rgb([230, 30, 30]));
                canvas.put_pixel(x1.saturating_sub(t), y, Rgb([230, 30, 30]));
            }
        }
    }
    for y in 0..SIDE {
        for x in 0..SIDE {
            let v = level(plane[(y / 2 * 224 + x / 2) as usize]);
            canvas.put_pixel(width + 16 + x, y, Rgb([v, v, v]));
        }
    }
    canvas
}
