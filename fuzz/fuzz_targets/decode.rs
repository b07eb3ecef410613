//! Format sniffing and full-resolution decoding of any upload (JPEG, PNG, DICOM with each
//! transfer syntax and its grey mapping): an error or an image, never a panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mammo_serve::imaging;

mod common;

fuzz_target!(init: common::allow_caught_codec_panics(), |data: &[u8]| {
    let limits = common::limits();
    if let Ok(decoded) = imaging::decode(&Bytes::copy_from_slice(data), &limits) {
        let grey = &decoded.grey;
        assert_eq!(grey.pixels.len(), grey.width as usize * grey.height as usize);
        let outside = grey.pixels.iter().find(|v| !(0.0..=1.0).contains(*v));
        assert!(outside.is_none(), "grey {outside:?} outside [0, 1]");
    }
});
