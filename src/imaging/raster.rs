//! JPEG and PNG through the `image` crate, within the decode limits, to grey.

use super::{DecodeLimits, Grey, ImageError, ImageFormat};
use image::{ImageReader, Limits};
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

    let (width, height) = reader().into_dimensions().map_err(corrupt)?;
    limits.check(width, height)?;

    let mut decoder_limits = Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    decoder_limits.max_alloc = Some(limits.max_alloc);
    let mut reader = reader();
    reader.limits(decoder_limits);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(limit) => ImageError::Unusable(format!(
            "the {format} image ({width}×{height} px) needs more memory to decode than the \
             {} MiB limit allows: {limit}",
            limits.max_alloc >> 20
        )),
        other => corrupt(other),
    })?;
    Ok(Grey::from_image(&image))
}
