//! Bytes to model input: sniff the format, decode within limits, preprocess to a CHW tensor.
//!
//! This is the only place where images become tensors; the server and `mammo-eval` both call
//! [`to_tensor`], and training's Python preprocessing is held to it by a parity test.

mod decode;
mod preprocess;

pub use decode::{decode, sniff, DecodeLimits, ImageFormat};
pub use preprocess::{preprocess, Preprocessing, ResizeFilter};

/// Why an image could not become a tensor. Each kind maps to one HTTP status in `api::error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    /// The body or part held no bytes.
    #[error("the image is empty (0 bytes)")]
    Empty,
    /// The bytes are not a format we decode.
    #[error("the bytes are not a JPEG or PNG image (unrecognised signature)")]
    UnknownFormat,
    /// The signature is known but the data is broken.
    #[error("the {format} image could not be decoded: {reason}")]
    Corrupt { format: ImageFormat, reason: String },
    /// Decodable in principle, but not an image we can use (too large, too small, ...).
    #[error("{0}")]
    Unusable(String),
}

/// Decodes `bytes` and preprocesses them into the model's input tensor (CHW, `3*H*W` floats).
pub fn to_tensor(
    bytes: &[u8],
    limits: &DecodeLimits,
    preprocessing: &Preprocessing,
) -> Result<Vec<f32>, ImageError> {
    let image = decode(bytes, limits)?;
    Ok(preprocess(&image, preprocessing))
}
