//! The RLE Lossless decoder (PS3.5 Annex G) on its own: a frame header and PackBits segments
//! of any content, for an image whose size, sample width and block size the first six bytes
//! choose. An error or whole bands of sums, never a panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mammo_serve::imaging::dicom::rle::{ByteRole, Frame};

fuzz_target!(|data: &[u8]| {
    let Some((head, frame)) = data.split_first_chunk::<6>() else {
        return;
    };
    let width = 1 + usize::from(u16::from_le_bytes([head[0], head[1]]) % 4096);
    let height = 1 + usize::from(u16::from_le_bytes([head[2], head[3]]) % 4096);
    let bytes_per_sample = 1 + usize::from(head[4] & 1);
    let k = 1 + usize::from(head[5] % 16);
    let Ok(frame) = Frame::parse(Bytes::copy_from_slice(frame), (width, height), bytes_per_sample)
    else {
        return;
    };
    let role = ByteRole {
        mask: 0xff,
        sign: head[5] & 0x80,
    };
    let roles = vec![role; frame.segment_count()];
    let mut bands = 0;
    let decoded = frame.band_sums(k, &roles, |high, low| {
        assert_eq!(low.sums.len(), width / k);
        assert_eq!(high.is_some(), bytes_per_sample == 2);
        bands += 1;
    });
    if decoded.is_ok() {
        assert_eq!(bands, height / k);
    }
});
