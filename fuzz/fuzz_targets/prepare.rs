//! The server's path from upload bytes to the model's input tensor: decoding, the DICOM
//! stored-value reduction (RLE decoded on the fly) and grey mapping, the full-field steps,
//! resizing and normalisation. Every success is a whole tensor of finite numbers.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mammo_serve::imaging::{self, FullField, Preprocessing, ResizeFilter};

mod common;

fuzz_target!(init: common::allow_caught_codec_panics(), |data: &[u8]| {
    let limits = common::limits();
    // The shipped model's preprocessing (models/mammo.onnx's metadata).
    let preprocessing = Preprocessing {
        height: 224,
        width: 224,
        mean: [0.498; 3],
        std: [0.502; 3],
        resize: ResizeFilter::Bilinear,
        steps: FullField {
            crop_breast: true,
            orient_left: true,
            pad_square: true,
        },
    };
    if let Ok(prepared) = imaging::prepare(&Bytes::copy_from_slice(data), &limits, &preprocessing)
    {
        assert_eq!(prepared.tensor.len(), preprocessing.tensor_len());
        assert!(prepared.tensor.iter().all(|v| v.is_finite()));
    }
});
