//! Bytes to model input: sniff the format once, decode within limits, preprocess to a CHW
//! tensor. The only place where images become tensors; the server and `mammo-eval` both call
//! [`prepare`], and training reads planes written by [`model_plane`] (`mammo-eval prepare`).
//!
//! - [`raster`]: JPEG and PNG (the `image` crate);
//! - [`dicom`]: DICOM Part 10 mammograms, their grey mapping and identifiers;
//! - [`reduce`]: block-mean reduction of large images, shared by both;
//! - [`preprocess`]: the model's full-field steps, resize and normalisation.

use bytes::Bytes;
use std::fmt;

pub mod dicom;
mod grey;
pub mod preprocess;
mod raster;
pub mod reduce;
mod view;

pub use dicom::DicomInfo;
pub use grey::Grey;
pub use preprocess::{FullField, Preprocessing, ResizeFilter};
pub use view::{Laterality, ViewPosition};

/// Why an image could not become a tensor. Each kind maps to one HTTP status in `api::error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    /// The body or part held no bytes.
    #[error("the image is empty (0 bytes)")]
    Empty,
    /// The bytes are not a format we decode.
    #[error("the bytes are not a JPEG, PNG or DICOM Part 10 file (unrecognised signature)")]
    UnknownFormat,
    /// The signature is known but the data is broken.
    #[error("the {format} image could not be decoded: {reason}")]
    Corrupt { format: ImageFormat, reason: String },
    /// Decodable in principle, but not an image we can use (too large, too small, ...).
    #[error("{0}")]
    Unusable(String),
    /// A DICOM object of another modality, refused unless the limits allow any.
    #[error("the DICOM object's Modality is {0:?}, not MG (mammography)")]
    NotMammography(String),
    /// A known format in an encoding this build does not decode (a DICOM transfer syntax).
    #[error("{0}")]
    Unsupported(String),
}

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

/// Recognises the format from the first bytes, whatever the declared content type says.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if dicom::is_dicom(bytes) {
        Some(ImageFormat::Dicom)
    } else {
        None
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
    /// DICOM: accept a Modality other than MG.
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

impl DecodeLimits {
    /// Refuses an image whose sides lie outside the limits (read from its header).
    fn check(&self, width: u32, height: u32) -> Result<(), ImageError> {
        if width > self.max_side || height > self.max_side {
            return Err(ImageError::Unusable(format!(
                "the image is {width}×{height} px; the limit is {} px a side",
                self.max_side
            )));
        }
        if width < self.min_side || height < self.min_side {
            return Err(ImageError::Unusable(format!(
                "the image is {width}×{height} px; a mammogram needs at least {} px a side",
                self.min_side
            )));
        }
        Ok(())
    }
}

/// A decoded image: grey pixels at full resolution, and the DICOM identifiers when it came as
/// DICOM.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub grey: Grey,
    pub dicom: Option<DicomInfo>,
}

/// An image ready for the engine.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// CHW, `3*H*W` floats.
    pub tensor: Vec<f32>,
    /// Identifiers of a DICOM input.
    pub dicom: Option<DicomInfo>,
}

/// The format of `bytes`, or why they are none we read.
fn format_of(bytes: &[u8]) -> Result<ImageFormat, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    sniff(bytes).ok_or(ImageError::UnknownFormat)
}

/// Decodes any supported format to grey in [0, 1] at full resolution (thumbnails, audits).
pub fn decode(bytes: &Bytes, limits: &DecodeLimits) -> Result<Decoded, ImageError> {
    match format_of(bytes)? {
        ImageFormat::Dicom => {
            let image = dicom::read(bytes, limits)?;
            Ok(Decoded {
                grey: image.grey()?,
                dicom: Some(image.info),
            })
        }
        raster => Ok(Decoded {
            grey: raster::decode(bytes, raster, limits)?,
            dicom: None,
        }),
    }
}

/// Decodes `bytes` and preprocesses them into the model's input tensor. A large image is
/// reduced first ([`reduce`]); a DICOM image on its stored values, before the grey mapping,
/// without a full-resolution grey image.
pub fn prepare(
    bytes: &Bytes,
    limits: &DecodeLimits,
    preprocessing: &Preprocessing,
) -> Result<Prepared, ImageError> {
    let (plane, dicom) = model_plane(bytes, limits, preprocessing)?;
    Ok(Prepared {
        tensor: preprocess::normalise(&plane, preprocessing),
        dicom,
    })
}

/// Decodes `bytes` into the height × width grey plane in [0, 1] the model sees, before
/// normalisation: what [`prepare`] normalises, and what `mammo-eval prepare` writes for
/// training.
pub fn model_plane(
    bytes: &Bytes,
    limits: &DecodeLimits,
    preprocessing: &Preprocessing,
) -> Result<(Vec<f32>, Option<DicomInfo>), ImageError> {
    match format_of(bytes)? {
        ImageFormat::Dicom => {
            let image = dicom::read(bytes, limits)?;
            Ok((image.model_plane(preprocessing)?, Some(image.info)))
        }
        raster => {
            let grey = raster::decode(bytes, raster, limits)?;
            Ok((preprocess::plane(&grey, None, preprocessing), None))
        }
    }
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
        assert!(limits.check(100, 10).is_ok());
        assert!(
            matches!(limits.check(101, 50), Err(ImageError::Unusable(m)) if m.contains("101×50"))
        );
        assert!(
            matches!(limits.check(50, 9), Err(ImageError::Unusable(m)) if m.contains("at least 10"))
        );
    }
}
