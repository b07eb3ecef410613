//! Format sniffing and bounded decoding of JPEG, PNG and DICOM.

use super::ImageError;
use bytes::Bytes;
use image::{DynamicImage, ImageReader, Limits};
use std::fmt;
use std::io::Cursor;

/// The image formats the service decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    /// DICOM Part 10 (`DICM` magic).
    Dicom,
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::Png => "PNG",
            ImageFormat::Dicom => "DICOM",
        })
    }
}

/// Bounds checked before any pixel buffer is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest width or height accepted, in pixels.
    pub max_side: u32,
    /// Smallest width or height accepted, in pixels.
    pub min_side: u32,
    /// Most bytes the decoder may allocate for one image.
    pub max_alloc: u64,
    /// DICOM: accept a Modality other than MG (`--allow-any-modality`).
    pub any_modality: bool,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_side: 10_000,
            min_side: 32,
            max_alloc: 1 << 30,
            any_modality: false,
        }
    }
}

/// Recognises the format from the first bytes, whatever the declared content type says.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if super::dicom::is_dicom(bytes) {
        Some(ImageFormat::Dicom)
    } else {
        None
    }
}

/// Decodes a JPEG, PNG or DICOM image (DICOM as 16-bit grey after its grey mapping). The
/// header's dimensions are checked against `limits` before decoding, so a small file that
/// claims a huge image is refused without allocating for it.
pub fn decode(bytes: &Bytes, limits: &DecodeLimits) -> Result<DynamicImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    match sniff(bytes).ok_or(ImageError::UnknownFormat)? {
        ImageFormat::Dicom => Ok(super::dicom::decode(bytes, limits)?.grey()?.to_image()),
        raster => decode_raster(bytes, raster, limits),
    }
}

/// JPEG or PNG through the `image` crate, within `limits`.
pub(super) fn decode_raster(
    bytes: &[u8],
    format: ImageFormat,
    limits: &DecodeLimits,
) -> Result<DynamicImage, ImageError> {
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
    check_dimensions(width, height, limits)?;

    let mut decoder_limits = Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    decoder_limits.max_alloc = Some(limits.max_alloc);
    let mut reader = reader();
    reader.limits(decoder_limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(limit) => ImageError::Unusable(format!(
            "the {format} image ({width}×{height} px) needs more memory to decode than the \
             {} MiB limit allows: {limit}",
            limits.max_alloc >> 20
        )),
        other => corrupt(other),
    })
}

pub(super) fn check_dimensions(
    width: u32,
    height: u32,
    limits: &DecodeLimits,
) -> Result<(), ImageError> {
    if width > limits.max_side || height > limits.max_side {
        return Err(ImageError::Unusable(format!(
            "the image is {width}×{height} px; the limit is {} px a side",
            limits.max_side
        )));
    }
    if width < limits.min_side || height < limits.min_side {
        return Err(ImageError::Unusable(format!(
            "the image is {width}×{height} px; a mammogram needs at least {} px a side",
            limits.min_side
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_signature() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageFormat::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(ImageFormat::Png));
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn empty_unknown_and_corrupt_bytes_are_told_apart() {
        let limits = DecodeLimits::default();
        assert_eq!(
            decode(&Bytes::new(), &limits).unwrap_err(),
            ImageError::Empty
        );
        assert_eq!(
            decode(&Bytes::from_static(b"hello"), &limits).unwrap_err(),
            ImageError::UnknownFormat
        );
        let broken = b"\x89PNG\r\n\x1a\nthis is not a png";
        assert!(matches!(
            decode(&Bytes::from_static(broken), &limits).unwrap_err(),
            ImageError::Corrupt {
                format: ImageFormat::Png,
                ..
            }
        ));
    }

    #[test]
    fn dimensions_outside_the_limits_are_unusable() {
        let limits = DecodeLimits {
            max_side: 100,
            min_side: 10,
            max_alloc: 1 << 20,
            any_modality: false,
        };
        assert!(check_dimensions(100, 10, &limits).is_ok());
        assert!(
            matches!(check_dimensions(101, 50, &limits), Err(ImageError::Unusable(m)) if m.contains("101×50"))
        );
        assert!(
            matches!(check_dimensions(50, 9, &limits), Err(ImageError::Unusable(m)) if m.contains("at least 10"))
        );
    }
}
