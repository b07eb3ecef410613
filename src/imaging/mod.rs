//! Bytes to model input: sniff the format, decode within limits, preprocess to a CHW tensor.
//!
//! This is the only place where images become tensors; the server and `mammo-eval` both call
//! [`prepare`] (or [`to_tensor`]), and training's Python preprocessing is held to it by a
//! parity test.

use bytes::Bytes;

mod decode;
pub mod dicom;
mod grey;
mod helper;
mod preprocess;
mod rle;

pub use decode::{decode, sniff, DecodeLimits, ImageFormat};
pub use dicom::DicomInfo;
pub use grey::{Grey, Laterality};
pub use preprocess::{
    breast_box, model_plane, preprocess, reduce, reduction, FullField, Preprocessing, Region,
    ResizeFilter,
};

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
    /// A known format in an encoding this build does not decode (a DICOM transfer syntax).
    #[error("{0}")]
    Unsupported(String),
}

/// A decoded image: grey pixels, and the DICOM identifiers when it came as DICOM.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub grey: Grey,
    pub dicom: Option<DicomInfo>,
}

/// Decodes any supported format to grey in [0, 1].
pub fn decode_grey(bytes: &Bytes, limits: &DecodeLimits) -> Result<Decoded, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    match sniff(bytes).ok_or(ImageError::UnknownFormat)? {
        ImageFormat::Dicom => {
            let image = dicom::decode(bytes, limits)?;
            Ok(Decoded {
                grey: image.grey()?,
                dicom: Some(image.info),
            })
        }
        raster => Ok(Decoded {
            grey: Grey::from_image(&decode::decode_raster(bytes, raster, limits)?),
            dicom: None,
        }),
    }
}

/// An image ready for the engine.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// CHW, `3*H*W` floats.
    pub tensor: Vec<f32>,
    /// Identifiers of a DICOM input.
    pub dicom: Option<DicomInfo>,
}

/// Decodes `bytes` and preprocesses them into the model's input tensor: [`preprocess`] of
/// [`decode_grey`]'s image, except that a DICOM image goes through
/// [`dicom::DicomImage::model_plane`], which reduces it on its stored values, before the grey
/// mapping, without a full-resolution grey image (the same tensor when it needs no reduction).
pub fn prepare(
    bytes: &Bytes,
    limits: &DecodeLimits,
    preprocessing: &Preprocessing,
) -> Result<Prepared, ImageError> {
    if sniff(bytes) != Some(ImageFormat::Dicom) {
        let decoded = decode_grey(bytes, limits)?;
        return Ok(Prepared {
            tensor: preprocess(&decoded.grey, None, preprocessing),
            dicom: None,
        });
    }
    let image = dicom::decode(bytes, limits)?;
    Ok(Prepared {
        tensor: preprocess::normalise(&image.model_plane(preprocessing)?, preprocessing),
        dicom: Some(image.info),
    })
}

/// [`prepare`]'s tensor alone (CHW, `3*H*W` floats).
pub fn to_tensor(
    bytes: &Bytes,
    limits: &DecodeLimits,
    preprocessing: &Preprocessing,
) -> Result<Vec<f32>, ImageError> {
    prepare(bytes, limits, preprocessing).map(|p| p.tensor)
}
