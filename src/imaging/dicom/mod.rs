//! DICOM Part 10 mammograms (dicom-rs) to a [`Grey`] image and the identifiers a caller needs
//! to match results. No patient attribute is read, kept or logged.
//!
//! Transfer syntaxes (dicom-pixeldata, pure Rust): implicit and explicit VR little endian,
//! deflated explicit VR little endian, RLE lossless, JPEG baseline (8-bit), JPEG extended and
//! lossless (processes 2/4 and 14, SV1 included), JPEG 2000 (lossless and lossy) through
//! OpenJPEG (C, built from the `openjpeg-sys` crate's sources). The `openjp2` Rust port was
//! dropped: fuzzing showed it freeing a null pointer on every JPEG 2000 image.
//! Declared value lengths are checked before dicom-rs reads a file ([`lengths`]).
//!
//! A large image is first reduced (`reduce::reduction`): the mean of each k×k block of
//! stored values, rounded to the nearest stored value, so the grey mapping and every later step
//! read an image k² times smaller ([`stored`]); RLE Lossless is decoded row by row straight into
//! the block sums ([`rle`]). Grey mapping ([`grey_map`]), per stored value of the reduced image
//! (one lookup table over every value `Bits Stored` allows):
//! 1. Modality LUT: `Rescale Slope × stored + Rescale Intercept` (1 and 0 when absent).
//! 2. VOI: the first item of the VOI LUT Sequence when present; else the first Window
//!    Center/Width with the VOI LUT Function (LINEAR, LINEAR_EXACT or SIGMOID; PS3.3
//!    C.11.2.1.2); else the range the (reduced) image's values span, min to max.
//! 3. MONOCHROME1 is inverted so that dense tissue is bright, as in training.

mod grey_map;
mod lengths;
pub mod rle;
mod stored;

use super::preprocess::{self, Preprocessing};
use super::reduce::reduction;
use super::{DecodeLimits, Grey, ImageError, ImageFormat, Laterality, ViewPosition};
use bytes::Bytes;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, FileMetaTable, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use grey_map::GreyMap;
use stored::Pixels;
pub use stored::StoredImage;

/// What identifies a DICOM image to the caller; never a patient attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomInfo {
    /// SOP Instance UID (0008,0018).
    pub sop_instance_uid: String,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// Image Laterality (0020,0062), else Laterality (0020,0060); `None` when neither names
    /// one breast.
    pub laterality: Option<Laterality>,
    /// View Position (0018,5101); `None` when not given.
    pub view_position: Option<ViewPosition>,
    /// Transfer syntax UID the object arrived in.
    pub transfer_syntax: String,
    /// Manufacturer (0008,0070) of the equipment that made the image, when given: evaluation
    /// reports per manufacturer, because models fail by vendor.
    pub manufacturer: Option<String>,
}

/// A parsed DICOM mammogram: its identifiers and its stored pixels with their grey mapping.
pub struct DicomImage {
    pub info: DicomInfo,
    pub stored: StoredImage,
}

impl DicomImage {
    /// The whole image as grey, at full resolution.
    pub fn grey(&self) -> Result<Grey, ImageError> {
        self.stored.grey(1)
    }

    /// The plane the model sees: the image reduced on its stored values ([`reduction`]) and
    /// mapped to grey, then [`preprocess::model_plane`].
    pub fn model_plane(&self, p: &Preprocessing) -> Result<Vec<f32>, ImageError> {
        let k = reduction(self.stored.width, self.stored.height, p);
        let grey = self.stored.grey(k)?;
        Ok(preprocess::model_plane(&grey, self.info.laterality, p))
    }
}

/// Whether `bytes` look like DICOM Part 10: `DICM` after the 128-byte preamble, or at the start
/// when a sender left the preamble out.
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM") || bytes.starts_with(b"DICM")
}

fn corrupt(reason: impl std::fmt::Display) -> ImageError {
    ImageError::Corrupt {
        format: ImageFormat::Dicom,
        reason: reason.to_string(),
    }
}

/// An error and its sources, `: `-separated (dicom-rs puts the useful part in the sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// The Part 10 stream from `DICM` on (the 128-byte preamble, when sent, skipped), its declared
/// lengths checked against `max_alloc` before dicom-rs reads it.
fn part10(bytes: &[u8], max_alloc: u64) -> Result<&[u8], ImageError> {
    let body = if bytes.starts_with(b"DICM") {
        bytes
    } else {
        bytes
            .get(128..)
            .filter(|b| b.starts_with(b"DICM"))
            .ok_or(ImageError::UnknownFormat)?
    };
    lengths::check(body, max_alloc)?;
    Ok(body)
}

/// The data set of a DICOM Part 10 object up to its Pixel Data, with its file meta: what a
/// writer of results about it (a DICOM SR) copies and references. Nothing is decoded.
pub fn header(bytes: &[u8], limits: &DecodeLimits) -> Result<DefaultDicomObject, ImageError> {
    parse(part10(bytes, limits.max_alloc)?, Some(tags::PIXEL_DATA))
}

/// Parses and checks one single-frame greyscale DICOM image. RLE Lossless pixel data stays in
/// `bytes` (shared, not copied) and is decoded as it is read; other transfer syntaxes are
/// decoded by dicom-pixeldata here.
pub fn read(bytes: &Bytes, limits: &DecodeLimits) -> Result<DicomImage, ImageError> {
    let body = part10(bytes, limits.max_alloc)?;
    let syntax = check_transfer_syntax(body)?;
    if syntax == RLE_LOSSLESS {
        let header = parse(body, Some(tags::PIXEL_DATA))?;
        // A pixel data element inside the icon sequence could be taken for the image's own.
        if header
            .element_opt(tags::ICON_IMAGE_SEQUENCE)
            .ok()
            .flatten()
            .is_none()
        {
            if let Some(frame) = encapsulated_frame(body)? {
                check_object(&header, true, limits)?;
                let map = GreyMap::read(&header)?;
                // Values stored below the high bits (rare) take dicom-pixeldata's path.
                if map.shift == 0 {
                    let (width, height) = dimensions(&header);
                    let per_sample = int(&header, tags::BITS_ALLOCATED).unwrap_or(16) as usize / 8;
                    let size = (width as usize, height as usize);
                    let frame = rle::Frame::parse(bytes.slice_ref(frame), size, per_sample)
                        .map_err(corrupt)?;
                    return Ok(DicomImage {
                        info: identify(&header),
                        stored: StoredImage::new((width, height), Pixels::Rle(frame), map, &header),
                    });
                }
            }
        }
    }
    let object = parse(body, None)?;
    let has_pixels = object
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .is_some();
    check_object(&object, has_pixels, limits)?;
    Ok(DicomImage {
        info: identify(&object),
        stored: stored::decode_pixels(&object)?,
    })
}

/// The data set, up to (not including) `until` when given.
fn parse(body: &[u8], until: Option<dicom_core::Tag>) -> Result<DefaultDicomObject, ImageError> {
    let options = OpenFileOptions::new().read_preamble(ReadPreamble::Never);
    match until {
        Some(tag) => options.read_until(tag),
        None => options,
    }
    .from_reader(body)
    .map_err(corrupt)
}

/// (Columns, Rows).
fn dimensions(object: &InMemDicomObject) -> (u32, u32) {
    (
        int(object, tags::COLUMNS).unwrap_or(0) as u32,
        int(object, tags::ROWS).unwrap_or(0) as u32,
    )
}

/// The image's encapsulated Pixel Data (7FE0,0010) as one frame, borrowed when it is one
/// fragment: the first such element in `body` (its header, OB or OW of undefined length, then
/// the Basic Offset Table item), read item by item to the sequence delimiter. `None` when the
/// file has no encapsulated pixel data.
fn encapsulated_frame(body: &[u8]) -> Result<Option<&[u8]>, ImageError> {
    const ITEM: [u8; 4] = [0xFE, 0xFF, 0x00, 0xE0];
    const END: [u8; 4] = [0xFE, 0xFF, 0xDD, 0xE0];
    let is_header = |w: &[u8]| {
        w[..4] == [0xE0, 0x7F, 0x10, 0x00]
            && matches!(&w[4..6], b"OB" | b"OW")
            && w[6..12] == [0, 0, 0xFF, 0xFF, 0xFF, 0xFF]
            && w[12..] == ITEM
    };
    let Some(start) = body.windows(16).position(is_header) else {
        return Ok(None);
    };
    let mut rest = &body[start + 12..];
    let mut items = Vec::new();
    loop {
        let header = rest
            .get(..8)
            .ok_or_else(|| corrupt("the encapsulated pixel data ends without its delimiter"))?;
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if header[..4] == END {
            break;
        }
        if header[..4] != ITEM {
            return Err(corrupt(
                "the encapsulated pixel data holds something other than items",
            ));
        }
        let item = rest
            .get(8..8 + len)
            .ok_or_else(|| corrupt("a pixel data fragment is cut short"))?;
        items.push(item);
        rest = &rest[8 + len..];
    }
    // The first item is the Basic Offset Table; the rest are the frame's fragments.
    match items.get(1..) {
        Some([one]) => Ok(Some(one)),
        Some([]) | None => Err(corrupt("the encapsulated pixel data holds no fragment")),
        // PS3.5 A.4.2 puts an RLE frame in one fragment; dicom-pixeldata joins any others.
        Some(_) => Ok(None),
    }
}

/// RLE Lossless, which [`rle`] decodes row by row from the request's bytes.
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Digital Mammography and Digital X-Ray "For Processing" SOP Class UIDs.
const FOR_PROCESSING: [&str; 2] = [
    "1.2.840.10008.5.1.4.1.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.1.1.1",
];

/// Transfer syntaxes this build decodes, for error messages.
const SUPPORTED: &str = "implicit or explicit VR little endian, deflated, RLE lossless, JPEG \
     baseline, JPEG lossless and JPEG 2000";

/// The transfer syntax UID; refuses (415) one the registry does not know or cannot decode
/// pixels of.
fn check_transfer_syntax(body: &[u8]) -> Result<String, ImageError> {
    let meta = FileMetaTable::from_reader(body).map_err(corrupt)?;
    let uid = meta.transfer_syntax().trim_end_matches('\0');
    match TransferSyntaxRegistry.get(uid) {
        Some(ts) if ts.can_decode_all() => Ok(uid.to_string()),
        known => Err(ImageError::Unsupported(format!(
            "the DICOM transfer syntax {uid}{} is not supported; send {SUPPORTED}",
            known.map_or(String::new(), |ts| format!(" ({})", ts.name()))
        ))),
    }
}

fn text(object: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    let element = object.element_opt(tag).ok()??;
    let value = element.to_str().ok()?;
    let value = value.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!value.is_empty()).then(|| value.to_string())
}

fn int(object: &InMemDicomObject, tag: dicom_core::Tag) -> Option<i64> {
    object.element_opt(tag).ok()??.to_int::<i64>().ok()
}

fn floats(object: &InMemDicomObject, tag: dicom_core::Tag) -> Option<Vec<f64>> {
    object.element_opt(tag).ok()??.to_multi_float64().ok()
}

/// Refuses, before any pixel is decoded, what is not one greyscale mammogram of a usable size.
fn check_object(
    object: &DefaultDicomObject,
    has_pixels: bool,
    limits: &DecodeLimits,
) -> Result<(), ImageError> {
    let sop_class = text(object, tags::SOP_CLASS_UID)
        .unwrap_or_else(|| object.meta().media_storage_sop_class_uid().to_string());
    let sop_class = sop_class.trim_end_matches('\0');
    if !has_pixels {
        return Err(ImageError::Unusable(format!(
            "the DICOM object has no pixel data (SOP Class UID {sop_class}): it is not an image"
        )));
    }
    let modality = text(object, tags::MODALITY).unwrap_or_default();
    if modality != "MG" && !limits.any_modality {
        return Err(ImageError::NotMammography(modality));
    }
    let intent = text(object, tags::PRESENTATION_INTENT_TYPE).unwrap_or_default();
    if FOR_PROCESSING.contains(&sop_class) || intent == "FOR PROCESSING" {
        return Err(ImageError::Unusable(
            "the DICOM object is a FOR PROCESSING mammogram (raw detector data); the model reads \
             FOR PRESENTATION images, as a radiologist sees them: send that object instead"
                .into(),
        ));
    }
    let frames = int(object, tags::NUMBER_OF_FRAMES).unwrap_or(1);
    if frames > 1 {
        return Err(ImageError::Unusable(format!(
            "the DICOM object holds {frames} frames; send one view per object \
             (multi-frame objects such as tomosynthesis are not supported)"
        )));
    }
    let samples = int(object, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let photometric = text(object, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
    if samples != 1 || !matches!(photometric.as_str(), "MONOCHROME1" | "MONOCHROME2") {
        return Err(ImageError::Unusable(format!(
            "the DICOM image is {photometric:?} with {samples} samples per pixel; a mammogram \
             is MONOCHROME1 or MONOCHROME2 with 1"
        )));
    }
    let bits = int(object, tags::BITS_ALLOCATED).unwrap_or(0);
    if !matches!(bits, 8 | 16) {
        return Err(ImageError::Unusable(format!(
            "the DICOM image has {bits} bits allocated per pixel; 8 or 16 are supported"
        )));
    }
    let (cols, rows) = dimensions(object);
    limits.check(cols, rows)?;
    let needed = (rows as u64 * cols as u64) * (bits as u64 / 8 + 4);
    if needed > limits.max_alloc {
        return Err(ImageError::Unusable(format!(
            "the DICOM image ({cols}×{rows} px) needs more memory to decode than the {} MiB \
             limit allows",
            limits.max_alloc >> 20
        )));
    }
    Ok(())
}

fn identify(object: &DefaultDicomObject) -> DicomInfo {
    let laterality = text(object, tags::IMAGE_LATERALITY)
        .and_then(|c| Laterality::from_code(&c))
        .or_else(|| text(object, tags::LATERALITY).and_then(|c| Laterality::from_code(&c)));
    DicomInfo {
        sop_instance_uid: text(object, tags::SOP_INSTANCE_UID).unwrap_or_default(),
        study_instance_uid: text(object, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
        series_instance_uid: text(object, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        laterality,
        view_position: text(object, tags::VIEW_POSITION).map(|c| ViewPosition::from_code(&c)),
        transfer_syntax: object
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string(),
        manufacturer: text(object, tags::MANUFACTURER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part10_is_recognised_with_or_without_preamble() {
        let mut with = vec![0u8; 128];
        with.extend_from_slice(b"DICM\x02\x00");
        assert!(is_dicom(&with));
        assert!(is_dicom(b"DICM\x02\x00\x00\x00"));
        assert!(!is_dicom(b"\x89PNG\r\n\x1a\n"));
        assert!(!is_dicom(&[0u8; 200]));
    }
}
