//! DICOM MG input: transfer syntaxes, grey mapping, laterality, refusals, the `dicom` object,
//! and the exam-level summary of `/batch`. Fixtures: tests/fixtures/dicom (pydicom, made by
//! tests/fixtures/make_dicom_fixtures.py from the committed JPEG fixtures).

mod common;

use bytes::Bytes;
use common::*;
use mammo_serve::imaging::preprocess::{breast_box, model_plane, preprocess};
use mammo_serve::imaging::{self, decode, DecodeLimits, Grey, ImageError, Laterality};
use serde_json::Value;

fn dicom(name: &str) -> Vec<u8> {
    fixture(&format!("dicom/{name}"))
}

fn grey(name: &str) -> (Grey, imaging::DicomInfo) {
    let decoded = decode(&dicom(name).into(), &DecodeLimits::default()).unwrap();
    (
        decoded.grey,
        decoded.dicom.expect("DICOM input has DICOM info"),
    )
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The stored value of the 64×64 ramp fixtures at pixel i.
fn ramp(i: usize) -> f64 {
    (i % 4096) as f64
}

#[test]
fn every_transfer_syntax_decodes_to_the_same_pixels() {
    let (reference, original) = grey("mg_explicit_le.dcm");
    assert_eq!((reference.width, reference.height), (256, 320));
    assert_eq!(original.transfer_syntax, "1.2.840.10008.1.2.1");
    for (name, syntax) in [
        ("mg_implicit_le.dcm", "1.2.840.10008.1.2"),
        ("mg_deflated.dcm", "1.2.840.10008.1.2.1.99"),
        ("mg_rle.dcm", "1.2.840.10008.1.2.5"),
        ("mg_jpeg_lossless.dcm", "1.2.840.10008.1.2.4.70"),
        ("mg_jpeg2000.dcm", "1.2.840.10008.1.2.4.90"),
    ] {
        let (decoded, info) = grey(name);
        assert_eq!(info.transfer_syntax, syntax, "{name}");
        assert_eq!(info.sop_instance_uid, original.sop_instance_uid, "{name}");
        assert_eq!(
            max_abs_diff(&decoded.pixels, &reference.pixels),
            0.0,
            "{name} is lossless"
        );
    }
    // JPEG baseline is 8-bit and lossy: the same picture within a few grey levels.
    let (baseline, info) = grey("mg_jpeg_baseline.dcm");
    assert_eq!(info.transfer_syntax, "1.2.840.10008.1.2.4.50");
    let mean = baseline
        .pixels
        .iter()
        .zip(&reference.pixels)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / reference.pixels.len() as f32;
    assert!(mean < 0.01, "mean |Δ| {mean}");
}

#[test]
fn rescale_and_window_are_applied() {
    // Rescale 2·s − 1000, then LINEAR window centre 1000, width 2001 (PS3.3 C.11.2.1.2.1).
    let (g, _) = grey("voi_window_rescale.dcm");
    for (i, &v) in g.pixels.iter().enumerate() {
        let x = 2.0 * ramp(i) - 1000.0;
        let want = ((x - 999.5) / 2000.0 + 0.5).clamp(0.0, 1.0);
        assert!((v as f64 - want).abs() < 1e-6, "pixel {i}: {v} vs {want}");
    }
    assert!(
        g.pixels.contains(&0.0) && g.pixels.contains(&1.0),
        "both clamps reached"
    );
}

#[test]
fn a_voi_lut_table_wins_and_without_any_voi_the_stored_range_is_used() {
    let (table, _) = grey("voi_lut_table.dcm");
    for (i, &v) in table.pixels.iter().enumerate() {
        let want = (65535.0 * (ramp(i) / 4095.0).sqrt()).floor() / 65535.0;
        assert!((v as f64 - want).abs() < 1e-6, "pixel {i}");
    }
    // 12, 14 and 16 bits stored (the ramp × 1, × 4, × 16): the image's own range.
    for name in [
        "voi_stored_range.dcm",
        "voi_stored_range_14bit.dcm",
        "voi_stored_range_16bit.dcm",
    ] {
        let (plain, _) = grey(name);
        for (i, &v) in plain.pixels.iter().enumerate() {
            assert!(
                (v as f64 - ramp(i) / 4095.0).abs() < 1e-6,
                "{name} pixel {i}"
            );
        }
    }
}

#[test]
fn monochrome1_is_inverted_to_the_same_grey() {
    let (mono2, _) = grey("mg_explicit_le.dcm");
    let (mono1, _) = grey("mg_mono1.dcm");
    assert!(max_abs_diff(&mono1.pixels, &mono2.pixels) < 1e-6);
}

#[test]
fn the_crop_leaves_out_the_marker_and_the_right_breast_is_flipped_to_the_left() {
    let (left, info) = grey("mg_explicit_le.dcm");
    assert_eq!(info.laterality, Some(Laterality::Left));
    assert_eq!(info.view_position.as_ref().map(|v| v.code()), Some("CC"));
    let region = breast_box(&left).unwrap();
    // The breast sits at rows 48..272, columns 0..224; the marker at rows 10..22, columns 234..252.
    assert!(
        region.top >= 48 && region.top + region.height <= 272,
        "{region:?}"
    );
    assert!(region.left + region.width <= 224, "{region:?}");

    let (right, info) = grey("mg_right_cc.dcm");
    assert_eq!(info.laterality, Some(Laterality::Right));
    let a = model_plane(&left, Some(Laterality::Left), &full_field());
    let b = model_plane(&right, Some(Laterality::Right), &full_field());
    assert!(max_abs_diff(&a, &b) < 1e-6, "mirror images read alike");
    // Without orientation they differ: the flip is what made them equal.
    let mut no_orient = full_field();
    no_orient.steps.orient_left = false;
    let c = model_plane(&right, Some(Laterality::Right), &no_orient);
    assert!(max_abs_diff(&a, &c) > 0.1);
}

#[test]
fn prepare_gives_the_tensor_of_the_whole_grey_image_when_no_reduction_is_due() {
    // imaging::prepare maps a DICOM image's stored values to grey itself (RLE decoded straight
    // into block sums); at 224 these 256×320 fixtures need no reduction (k = 1), so it must
    // equal the reference: the whole image mapped to grey, then preprocessed.
    let limits = DecodeLimits::default();
    let mut no_steps = full_field();
    no_steps.steps = Default::default();
    let mut by_tissue = full_field();
    by_tissue.steps.pad_square = false;
    for name in [
        "mg_explicit_le.dcm",
        "mg_rle.dcm",
        "mg_jpeg2000.dcm",
        "mg_right_cc.dcm",
        "mg_left_mlo.dcm",
        "mg_mono1.dcm",
        "voi_lut_table.dcm",
        "voi_stored_range.dcm",
        "voi_stored_range_14bit.dcm",
        "voi_stored_range_16bit.dcm",
        "voi_window_rescale.dcm",
    ] {
        let bytes = Bytes::from(dicom(name));
        let (whole, info) = grey(name);
        for (steps, p) in [("all", full_field()), ("none", no_steps.clone())] {
            let prepared = imaging::prepare(&bytes, &limits, &p).unwrap();
            let reference = preprocess(&whole, info.laterality, &p);
            assert_eq!(prepared.tensor, reference, "{name}, steps {steps}");
        }
        // Orientation from the tissue itself when the object names no laterality.
        let mut image = imaging::dicom::read(&bytes, &limits).unwrap();
        image.info.laterality = None;
        assert_eq!(
            image.model_plane(&by_tissue).unwrap(),
            model_plane(&whole, None, &by_tissue),
            "{name} without laterality"
        );
    }
}

#[test]
fn large_images_are_reduced_on_their_stored_values_before_the_grey_mapping() {
    let limits = DecodeLimits::default();
    // The 64×64 ramp, reduced by 2: each block's mean stored value 128·Y + 2·X + 32.5 is
    // rounded half away from zero, then rescaled (2·s − 1000) and windowed (centre 1000,
    // width 2001), clamps included.
    let bytes = Bytes::from(dicom("voi_window_rescale.dcm"));
    let image = imaging::dicom::read(&bytes, &limits).unwrap();
    let reduced = image.stored.grey(2).unwrap();
    assert_eq!((reduced.width, reduced.height), (32, 32));
    for (b, &v) in reduced.pixels.iter().enumerate() {
        let (x, y) = ((b % 32) as f64, (b / 32) as f64);
        let stored = 128.0 * y + 2.0 * x + 33.0;
        let want = ((2.0 * stored - 1000.0 - 999.5) / 2000.0 + 0.5).clamp(0.0, 1.0);
        assert!((v as f64 - want).abs() < 1e-6, "block {b}: {v} vs {want}");
    }
    assert!(reduced.pixels.contains(&0.0) && reduced.pixels.contains(&1.0));
    // Without a VOI, the range of the reduced image's own values: 33 to 128·31 + 2·31 + 33.
    let bytes = Bytes::from(dicom("voi_stored_range.dcm"));
    let image = imaging::dicom::read(&bytes, &limits).unwrap();
    let reduced = image.stored.grey(2).unwrap();
    for (b, &v) in reduced.pixels.iter().enumerate() {
        let (x, y) = ((b % 32) as f64, (b / 32) as f64);
        let want = (128.0 * y + 2.0 * x + 33.0 - 33.0) / (4063.0 - 33.0);
        assert!((v as f64 - want).abs() < 1e-6, "block {b}: {v} vs {want}");
    }

    // Every lossless transfer syntax reduces to the same grey (RLE by its own block sums,
    // the others from decoded pixels); so does the whole of `prepare` at a 64-pixel input
    // (k = 256 / 128 = 2), which reads the reduced image.
    let mut small = full_field();
    (small.width, small.height) = (64, 64);
    let reduce = |name: &str| {
        let bytes = Bytes::from(dicom(name));
        let image = imaging::dicom::read(&bytes, &limits).unwrap();
        let tensor = imaging::prepare(&bytes, &limits, &small).unwrap().tensor;
        (image.stored.grey(2).unwrap(), tensor)
    };
    let (reference, tensor) = reduce("mg_explicit_le.dcm");
    assert_eq!((reference.width, reference.height), (128, 160));
    for name in [
        "mg_implicit_le.dcm",
        "mg_deflated.dcm",
        "mg_rle.dcm",
        "mg_jpeg_lossless.dcm",
        "mg_jpeg2000.dcm",
    ] {
        let (grey, t) = reduce(name);
        assert_eq!(grey, reference, "{name}");
        assert_eq!(t, tensor, "{name}");
    }
    // MONOCHROME1 stores the inverted values: the same grey up to the rounding of a mean.
    let (mono1, _) = reduce("mg_mono1.dcm");
    assert!(max_abs_diff(&mono1.pixels, &reference.pixels) < 1e-3);
}

#[test]
fn objects_that_are_not_one_mammogram_are_refused_with_reasons() {
    let limits = DecodeLimits::default();
    let refused = |name: &str| match decode(&dicom(name).into(), &limits) {
        Err(ImageError::Unusable(why)) => why,
        other => panic!("{name}: expected Unusable, got {other:?}"),
    };
    assert_eq!(
        decode(&dicom("ct_not_mammography.dcm").into(), &limits).unwrap_err(),
        ImageError::NotMammography("CT".into())
    );
    assert!(refused("sr_no_pixel_data.dcm").contains("no pixel data"));
    assert!(refused("mg_two_frames.dcm").contains("2 frames"));
    assert!(refused("mg_for_processing.dcm").contains("FOR PRESENTATION"));
    // Found by fuzzing: High Bit 2055 in an 8-bit image overflowed a shift.
    let high_bit = Bytes::from(fixture("fuzz/high_bit_2055.dcm"));
    for result in [
        imaging::prepare(&high_bit, &limits, &full_field()).map(|_| ()),
        decode(&high_bit, &limits).map(|_| ()),
    ] {
        match result {
            Err(ImageError::Unusable(why)) => assert!(why.contains("High Bit 2055"), "{why}"),
            other => panic!("High Bit 2055: expected Unusable, got {other:?}"),
        }
    }
    let any = DecodeLimits {
        any_modality: true,
        ..limits
    };
    assert!(decode(&dicom("ct_not_mammography.dcm").into(), &any).is_ok());

    match decode(&dicom("unsupported_jpeg_ls.dcm").into(), &limits) {
        Err(ImageError::Unsupported(why)) => {
            assert!(why.contains("1.2.840.10008.1.2.4.80"), "{why}")
        }
        other => panic!("JPEG-LS: expected Unsupported, got {other:?}"),
    }
    match decode(&dicom("unsupported_jpeg_12bit.dcm").into(), &limits) {
        Err(ImageError::Corrupt { reason, .. }) => {
            assert!(reason.contains("1.2.840.10008.1.2.4.51"), "{reason}")
        }
        other => panic!("12-bit JPEG: expected Corrupt, got {other:?}"),
    }

    let mut cut = dicom("mg_explicit_le.dcm");
    cut.truncate(4000);
    match decode(&cut.into(), &limits) {
        Err(ImageError::Corrupt { reason, .. }) => assert!(
            reason.contains("the pixel data (7FE0,0010) declares 163840 bytes"),
            "{reason}"
        ),
        other => panic!("cut short: expected Corrupt, got {other:?}"),
    }

    // Found by fuzzing (fuzz/, scripts/fuzz.sh): deflated files of a few kilobytes whose data
    // set declares values of gigabytes, which dicom-rs allocated and zero-filled before
    // reading (docs/benchmarks.md, "Fuzzing"; the third's meta group length puts the data set
    // where only dicom-rs looked). Refused from the declared lengths.
    for name in [
        "deflated_declares_4gb.dcm",
        "deflated_declares_huge_value.dcm",
        "deflated_meta_group_length.dcm",
    ] {
        let bytes = Bytes::from(fixture(&format!("fuzz/{name}")));
        for result in [
            imaging::prepare(&bytes, &limits, &full_field()).map(|_| ()),
            decode(&bytes, &limits).map(|_| ()),
        ] {
            match result {
                Err(ImageError::Corrupt { reason, .. }) => {
                    assert!(reason.contains("declares"), "{name}: {reason}")
                }
                other => panic!("{name}: expected Corrupt, got {other:?}"),
            }
        }
    }

    // RLE, read in place: cut short, and with its second segment pointing 10 bytes before the
    // fragment's end.
    let rle = dicom("mg_rle.dcm");
    let header = [
        0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ];
    let at = rle.windows(12).position(|w| w == header).unwrap() + 12;
    let offset_table = u32::from_le_bytes(rle[at + 4..at + 8].try_into().unwrap()) as usize;
    let fragment = at + 8 + offset_table + 8;
    let length = u32::from_le_bytes(rle[fragment - 4..fragment].try_into().unwrap());
    let mut short_segment = rle.clone();
    short_segment[fragment + 8..fragment + 12].copy_from_slice(&(length - 10).to_le_bytes());
    for (what, bytes) in [
        ("cut short", rle[..rle.len() * 3 / 5].to_vec()),
        ("short segment", short_segment),
    ] {
        let bytes = Bytes::from(bytes);
        for result in [
            imaging::prepare(&bytes, &limits, &full_field()).map(|_| ()),
            decode(&bytes, &limits).map(|_| ()),
        ] {
            match result {
                Err(ImageError::Corrupt { reason, .. }) => assert!(
                    reason.contains("pixel data") || reason.contains("RLE segment 1"),
                    "{what}: {reason}"
                ),
                other => panic!("{what}: expected Corrupt, got {other:?}"),
            }
        }
    }
}

#[test]
fn a_jpeg_the_dicom_decoder_panics_on_is_that_image_s_error() {
    // Found by fuzzing: mg_jpeg_baseline.dcm with its JPEG stream altered, on which
    // dicom-pixeldata's JPEG adapter indexes past its buffer.
    let bytes = Bytes::from(fixture("fuzz/jpeg_decoder_panics.dcm"));
    for result in [
        imaging::prepare(&bytes, &DecodeLimits::default(), &full_field()).map(|_| ()),
        decode(&bytes, &DecodeLimits::default()).map(|_| ()),
    ] {
        match result {
            Err(ImageError::Corrupt { reason, .. }) => {
                assert!(reason.contains("the decoder failed"), "{reason}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

const PHI: [&str; 3] = ["Fixture^Synthetic", "FIXTURE-0001", "19700101"];

#[tokio::test]
async fn predict_reads_dicom_and_answers_with_identifiers_but_no_patient_data() {
    let server = start(config(&[])).await;
    let response = server
        .post_image(dicom("mg_rle.dcm"), "application/dicom")
        .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for value in PHI {
        assert!(!text.contains(value), "the answer leaks {value}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    let d = &body["dicom"];
    assert_eq!(d["study_instance_uid"], "1.2.826.0.1.3680043.8.498.1001");
    assert!(d["sop_instance_uid"]
        .as_str()
        .unwrap()
        .starts_with("1.2.826.0.1.3680043.8.498."));
    assert_eq!(d["laterality"], "L");
    assert_eq!(d["view_position"], "CC");
    assert_eq!(d["transfer_syntax"], "1.2.840.10008.1.2.5");
    assert!(body["notice"].as_str().unwrap().contains("not a diagnosis"));

    // MONOCHROME1 of the same image and the mirrored right breast give the same prediction.
    for other in ["mg_mono1.dcm", "mg_right_cc.dcm"] {
        let alt = server.predict_json(dicom(other), "application/dicom").await;
        for ((k, a), (_, b)) in probabilities(&body["class"]["probabilities"])
            .into_iter()
            .zip(probabilities(&alt["class"]["probabilities"]))
        {
            assert!((a - b).abs() < 1e-5, "{other} {k}: {a} vs {b}");
        }
    }
    // JPEG/PNG answers carry no dicom object.
    let jpeg = server
        .predict_json(fixture("d3b_Image_1.jpg"), "image/jpeg")
        .await;
    assert!(jpeg.get("dicom").is_none());
}

#[tokio::test]
async fn predict_refuses_non_mammography_unless_allowed() {
    let server = start(config(&[])).await;
    let response = server
        .post_image(dicom("ct_not_mammography.dcm"), "application/dicom")
        .await;
    let problem = expect_problem(response, 422).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("--allow-any-modality"));
    for name in ["sr_no_pixel_data.dcm", "mg_two_frames.dcm"] {
        let response = server.post_image(dicom(name), "application/dicom").await;
        expect_problem(response, 422).await;
    }
    let response = server
        .post_image(b"not a dicom file at all".to_vec(), "application/dicom")
        .await;
    let problem = expect_problem(response, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("DICOM"));

    let response = server
        .post_image(dicom("unsupported_jpeg_ls.dcm"), "application/dicom")
        .await;
    expect_problem(response, 415).await;

    let allowing = start(config(&["--allow-any-modality"])).await;
    let response = allowing
        .post_image(dicom("ct_not_mammography.dcm"), "application/dicom")
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn batch_of_dicom_views_returns_the_exam_by_breast() {
    let server = start(config(&[])).await;
    let names = [
        "mg_explicit_le.dcm",
        "mg_right_cc.dcm",
        "mg_left_mlo.dcm",
        "ct_not_mammography.dcm",
    ];
    let form = files_form(names.map(|name| (name, dicom(name))));
    let response = server.post_multipart("/batch", form).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[3]["ok"], false, "the CT item alone fails");
    assert_eq!(results[3]["error"]["status"], 422);

    let exams = body["exams"].as_array().unwrap();
    assert_eq!(exams.len(), 1);
    let exam = &exams[0];
    assert_eq!(exam["study_instance_uid"], "1.2.826.0.1.3680043.8.498.1001");
    let breasts = exam["breasts"].as_array().unwrap();
    assert_eq!(breasts.len(), 2);
    assert_eq!(breasts[0]["laterality"], "L");
    assert_eq!(
        ids(&breasts[0]["views"]),
        ["mg_explicit_le.dcm", "mg_left_mlo.dcm"]
    );
    assert_eq!(breasts[1]["laterality"], "R");

    // The left breast's malignancy is its higher view; the exam's is its higher breast.
    let p = |i: usize| {
        results[i]["prediction"]["malignancy"]["probability"]
            .as_f64()
            .unwrap()
    };
    let left = breasts[0]["malignancy"]["probability"].as_f64().unwrap();
    assert!((left - p(0).max(p(2))).abs() < 1e-6);
    let highest = p(0).max(p(1)).max(p(2));
    assert!((exam["malignancy"]["probability"].as_f64().unwrap() - highest).abs() < 1e-6);
    // The left density is the argmax of the two views' mean density probabilities.
    let mean = |k: &str| {
        (results[0]["prediction"]["density"]["probabilities"][k]
            .as_f64()
            .unwrap()
            + results[2]["prediction"]["density"]["probabilities"][k]
                .as_f64()
                .unwrap())
            / 2.0
    };
    let best = ["D1", "D2", "D3", "D4"]
        .into_iter()
        .max_by(|a, b| mean(a).total_cmp(&mean(b)))
        .unwrap();
    assert_eq!(breasts[0]["density"]["label"], best);
    let denser = [&breasts[0], &breasts[1]]
        .iter()
        .map(|b| b["density"]["label"].as_str().unwrap().to_string())
        .max()
        .unwrap();
    assert_eq!(exam["density"]["label"], denser.as_str());

    // JPEG-only batches have no exam summary.
    let form = files_form([("a.jpg", fixture("d1b_Image_2.jpg"))]);
    let body = server.batch_json(form).await;
    assert!(body.get("exams").is_none());
}
