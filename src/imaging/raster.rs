//! JPEG and PNG through the `image` crate, within the decode limits, to grey.

use super::{DecodeLimits, Grey, ImageError, ImageFormat};
use image::{ImageDecoder, ImageReader, Limits};
use std::io::Cursor;

/// Decodes a JPEG or PNG. The header's dimensions are checked against `limits` before
/// decoding, so a small file that claims a huge image is refused without allocating for it.
pub(super) fn decode(
    bytes: &[u8],
    format: ImageFormat,
    limits: &DecodeLimits,
) -> Result<Grey, ImageError> {
    let image_format = match format {
        ImageFormat::Png => image::ImageFormat::Png,
        _ => image::ImageFormat::Jpeg,
    };
    let corrupt = |e: image::ImageError| ImageError::Corrupt {
        format,
        reason: e.to_string(),
    };
    let reader = || ImageReader::with_format(Cursor::new(bytes), image_format);
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(ImageError::Corrupt {
            format,
            reason: "the data ends before the end-of-image marker (a truncated upload?)".into(),
        });
    }

    let (width, height) = reader().into_dimensions().map_err(corrupt)?;
    limits.check(width, height)?;

    let mut decoder_limits = Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    decoder_limits.max_alloc = Some(limits.max_alloc);
    let mut reader = reader();
    reader.limits(decoder_limits);
    let too_big = |detail: String| {
        ImageError::Unusable(format!(
            "the {format} image ({width}×{height} px) needs more memory to decode than the \
             {} MiB limit allows: {detail}",
            limits.max_alloc >> 20
        ))
    };
    let failed = |e: image::ImageError| match e {
        image::ImageError::Limits(limit) => too_big(limit.to_string()),
        other => corrupt(other),
    };
    let decoder = reader.into_decoder().map_err(failed)?;
    let (color, total) = (decoder.color_type(), decoder.total_bytes());
    if total > limits.max_alloc {
        return Err(too_big(format!("{total} bytes of samples")));
    }
    let mut samples = zero_filled(total as usize);
    decoder.read_image(&mut samples).map_err(failed)?;
    Grey::from_samples(width, height, color, &samples).ok_or_else(|| {
        ImageError::Unusable(format!(
            "{format} images of {color:?} samples are not supported"
        ))
    })
}

/// A buffer of `len` zeros, filled by writing rather than allocated zeroed: the allocator hands
/// out a zeroed buffer of a decoded image's size as fresh pages, faulted in on every request,
/// where a written one reuses freed memory (docs/benchmarks.md).
#[expect(
    clippy::slow_vector_initialization,
    reason = "vec![0; len] is the zeroed allocation this avoids"
)]
fn zero_filled(len: usize) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(len);
    buffer.resize(len, 0);
    buffer
}

/// Whether a JPEG's last scan is followed by its end-of-image marker (FF D9). The JPEG decoder
/// fills whatever a cut-off file lacks with grey and reports success, and a model reading that
/// fill answers with confidence; so a file whose data stops inside a scan is refused. Inside
/// entropy-coded data an FF byte is always followed by 00 or a restart marker, so an FF D9
/// there is the real end; an embedded thumbnail's markers come before the main image's scans.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    const SOS: [u8; 2] = [0xFF, 0xDA];
    const EOI: [u8; 2] = [0xFF, 0xD9];
    match bytes.windows(2).rposition(|w| w == EOI) {
        Some(end) => !bytes[end..].windows(2).any(|w| w == SOS),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn a_jpeg_cut_anywhere_after_its_first_scan_starts_is_refused() {
        let whole = fixture("d3b_Image_1.jpg");
        assert!(jpeg_is_complete(&whole));
        let scan = whole.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        for cut in (scan + 2..whole.len()).step_by(97).chain([whole.len() - 1]) {
            let refused = decode(&whole[..cut], ImageFormat::Jpeg, &DecodeLimits::default());
            assert!(
                matches!(&refused, Err(ImageError::Corrupt { reason, .. }) if reason.contains("truncated")),
                "cut at {cut} of {}: {refused:?}",
                whole.len()
            );
        }
    }

    #[test]
    fn bytes_after_the_end_marker_do_not_make_a_jpeg_incomplete() {
        let mut padded = fixture("d1b_Image_2.jpg");
        padded.extend_from_slice(&[0u8; 64]);
        assert!(decode(&padded, ImageFormat::Jpeg, &DecodeLimits::default()).is_ok());
    }

    #[test]
    fn an_image_whose_samples_exceed_the_allocation_limit_is_refused() {
        let jpeg = fixture("d3b_Image_1.jpg"); // 224 × 224, three 8-bit channels: 150,528 bytes
        let tight = DecodeLimits {
            max_alloc: 100_000,
            ..DecodeLimits::default()
        };
        let refused = decode(&jpeg, ImageFormat::Jpeg, &tight);
        assert!(
            matches!(&refused, Err(ImageError::Unusable(why)) if why.contains("needs more memory")),
            "{refused:?}"
        );
        let grey = decode(&jpeg, ImageFormat::Jpeg, &DecodeLimits::default()).unwrap();
        assert_eq!((grey.width, grey.height), (224, 224));
    }
}
