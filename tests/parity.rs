//! Training's Python preprocessing (training/mammo_train/preprocess.py) must produce the
//! tensors the server's `imaging` produces. PNG (lossless): within 1e-3. JPEG: two decoders may
//! differ by a grey level, so the difference is bounded and reported together with the largest
//! change in any class probability it causes through the real engine.

mod common;

use common::*;
use mammo_serve::engine::{onnx, Unobserved};
use mammo_serve::imaging::{self, DecodeLimits, Preprocessing, ResizeFilter};
use mammo_serve::model::postprocess::canonical_probabilities;
use mammo_serve::pipeline;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const MEAN: [f32; 3] = [0.498, 0.498, 0.498];
const STD: [f32; 3] = [0.502, 0.502, 0.502];

fn python_tensor(image: &Path, steps: &str, size: u32) -> Vec<f32> {
    let out = std::env::temp_dir().join(format!(
        "mammo-parity-{}-{}.f32",
        std::process::id(),
        image.file_name().unwrap().to_string_lossy()
    ));
    let python = repo().join(".ort/venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `make setup`",
        python.display()
    );
    let status = Command::new(python)
        .current_dir(repo().join("training"))
        .args(["-m", "mammo_train.preprocess"])
        .arg(image)
        .arg(&out)
        .args([
            "--size",
            &size.to_string(),
            "--mean",
            "0.498,0.498,0.498",
            "--std",
            "0.502,0.502,0.502",
            "--steps",
            steps,
        ])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "python preprocessing failed for {}",
        image.display()
    );
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).ok();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[tokio::test]
async fn python_and_rust_preprocess_alike() {
    let prep = Preprocessing {
        height: 224,
        width: 224,
        mean: MEAN,
        std: STD,
        resize: ResizeFilter::Bilinear,
        steps: Default::default(),
    };
    let limits = DecodeLimits::default();
    let fixtures = repo().join("tests/fixtures");

    // Without full-field steps, and with every one of them (crop, orientation, padding).
    for steps in ["", "crop_breast,orient_left,pad_square"] {
        let prep = Preprocessing {
            steps: steps.parse().unwrap(),
            ..prep.clone()
        };
        for name in [
            "variant_grey8.png",
            "variant_grey16.png",
            "variant_rgb8.png",
            "variant_rgba8.png",
            "variant_la8.png",
            "variant_palette.png",
            "variant_grey16_448x560.png",
            "variant_grey8_300x260.png",
        ] {
            let rust = imaging::prepare(&fixture(name).into(), &limits, &prep)
                .unwrap()
                .tensor;
            let python = python_tensor(&fixtures.join(name), steps, 224);
            let diff = max_abs_diff(&rust, &python);
            println!("PNG  {name:<28} steps [{steps}] max |Δ| = {diff:.2e} (normalised units)");
            assert!(diff < 1e-3, "{name} [{steps}]: {diff}");
        }
    }

    // A 64-pixel input makes the larger fixtures reduced first (448×560 by k = 3, 300×260 by
    // k = 2: block means), as full-field images are for 224.
    for steps in ["", "crop_breast,orient_left,pad_square"] {
        let prep = Preprocessing {
            height: 64,
            width: 64,
            steps: steps.parse().unwrap(),
            ..prep.clone()
        };
        for name in ["variant_grey16_448x560.png", "variant_grey8_300x260.png"] {
            let rust = imaging::prepare(&fixture(name).into(), &limits, &prep)
                .unwrap()
                .tensor;
            let python = python_tensor(&fixtures.join(name), steps, 64);
            let diff = max_abs_diff(&rust, &python);
            println!("PNG  {name:<28} 64 px, steps [{steps}] max |Δ| = {diff:.2e}");
            assert!(diff < 1e-3, "{name} at 64 px [{steps}]: {diff}");
        }
    }

    // The shipped model when it is there (its probabilities are the ones users see), else the
    // untrained test model.
    let shipped = shipped_model();
    let model = if shipped.is_file() {
        shipped
    } else {
        test_model()
    };
    let config = config(&["--model", &model.display().to_string()]);
    println!("model for the probability check: {}", model.display());
    let env = onnx::environment(&config.ort_lib).unwrap();
    let (engine, model) = pipeline::load_onnx(&env, &config.onnx(), Arc::new(Unobserved)).unwrap();
    let metadata = model.metadata.clone();
    let model_prep = metadata.preprocessing.clone();
    // The model's own full-field steps, as users get them.
    let steps = model_prep.steps.names().join(",");
    let prep = Preprocessing {
        steps: model_prep.steps,
        ..prep
    };
    for name in CLASS_FIXTURES {
        let rust = imaging::prepare(&fixture(name).into(), &limits, &prep)
            .unwrap()
            .tensor;
        let python = python_tensor(&fixtures.join(name), &steps, 224);
        let diff = max_abs_diff(&rust, &python);
        // One grey level is 1/255 before normalisation.
        let bound = 2.0 / 255.0 / STD[0];
        assert!(diff <= bound, "{name}: {diff} > {bound}");

        // The class probabilities each tensor gives (re-normalised for the engine's model).
        let renorm = |t: &[f32]| -> Vec<f32> {
            t.iter()
                .enumerate()
                .map(|(i, v)| {
                    let c = i / (224 * 224);
                    (v * STD[c] + MEAN[c] - model_prep.mean[c]) / model_prep.std[c]
                })
                .collect()
        };
        let run = |t: Vec<f32>| {
            let engine = engine.clone();
            async move {
                engine
                    .infer(vec![t], None)
                    .await
                    .unwrap()
                    .outputs
                    .remove(0)
                    .logits
            }
        };
        let (a, b) = (run(renorm(&rust)).await, run(renorm(&python)).await);
        let (pa, pb) = (
            canonical_probabilities(&a, &metadata).unwrap(),
            canonical_probabilities(&b, &metadata).unwrap(),
        );
        let dp = pa
            .iter()
            .zip(&pb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        println!("JPEG {name:<28} steps [{steps}] max |Δ| = {diff:.2e}, largest class-probability change {dp:.2e}");
        assert!(dp < 0.01, "{name}: probabilities moved by {dp}");
    }
}
