//! DICOM Part 10 mammograms (dicom-rs) to a [`Grey`] image and the identifiers a caller needs
//! to match results. No patient attribute is read, kept or logged.
//!
//! Transfer syntaxes (dicom-pixeldata, pure Rust): implicit and explicit VR little endian,
//! deflated explicit VR little endian, RLE lossless, JPEG baseline (8-bit), JPEG extended and
//! lossless (processes 2/4 and 14, SV1 included), JPEG 2000 (lossless and lossy) through the
//! `openjp2` crate, a Rust port of OpenJPEG that builds offline.
//!
//! Grey mapping, per stored value (one lookup table over every value `Bits Stored` allows):
//! 1. Modality LUT: `Rescale Slope × stored + Rescale Intercept` (1 and 0 when absent).
//! 2. VOI: the first item of the VOI LUT Sequence when present; else the first Window
//!    Center/Width with the VOI LUT Function (LINEAR, LINEAR_EXACT or SIGMOID; PS3.3
//!    C.11.2.1.2); else the range the image's values actually span (min to max).
//! 3. MONOCHROME1 is inverted so that dense tissue is bright, as in training.

use super::grey::{Grey, Laterality};
use super::{DecodeLimits, ImageError, ImageFormat};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, FileMetaTable, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde::Serialize;
use utoipa::ToSchema;

/// What identifies a DICOM image to the caller; never a patient attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DicomInfo {
    /// SOP Instance UID (0008,0018).
    pub sop_instance_uid: String,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// `L` or `R`: Image Laterality (0020,0062), else Laterality (0020,0060); absent when
    /// neither names one breast.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub laterality: Option<Laterality>,
    /// View Position (0018,5101), e.g. `CC` or `MLO`; absent when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "MLO")]
    pub view_position: Option<String>,
    /// Transfer syntax UID the object arrived in.
    #[schema(example = "1.2.840.10008.1.2.5")]
    pub transfer_syntax: String,
}

/// A decoded DICOM mammogram.
#[derive(Debug, Clone)]
pub struct DicomImage {
    pub grey: Grey,
    pub info: DicomInfo,
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

/// Parses, checks and decodes one single-frame greyscale DICOM image.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<DicomImage, ImageError> {
    let body = if bytes.starts_with(b"DICM") {
        bytes
    } else {
        bytes
            .get(128..)
            .filter(|b| b.starts_with(b"DICM"))
            .ok_or(ImageError::UnknownFormat)?
    };
    check_transfer_syntax(body)?;
    let object = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .from_reader(body)
        .map_err(corrupt)?;
    check_object(&object, limits)?;
    let info = identify(&object);
    let grey = pixels(&object)?;
    Ok(DicomImage { grey, info })
}

/// Digital Mammography and Digital X-Ray "For Processing" SOP Class UIDs.
const FOR_PROCESSING: [&str; 2] = [
    "1.2.840.10008.5.1.4.1.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.1.1.1",
];

/// Transfer syntaxes this build decodes, for error messages.
const SUPPORTED: &str = "implicit or explicit VR little endian, deflated, RLE lossless, JPEG \
     baseline, JPEG lossless and JPEG 2000";

/// Refuses (415) a transfer syntax the registry does not know or cannot decode pixels of.
fn check_transfer_syntax(body: &[u8]) -> Result<(), ImageError> {
    let meta = FileMetaTable::from_reader(body).map_err(corrupt)?;
    let uid = meta.transfer_syntax().trim_end_matches('\0');
    match TransferSyntaxRegistry.get(uid) {
        Some(ts) if ts.can_decode_all() => Ok(()),
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
fn check_object(object: &DefaultDicomObject, limits: &DecodeLimits) -> Result<(), ImageError> {
    let sop_class = text(object, tags::SOP_CLASS_UID)
        .unwrap_or_else(|| object.meta().media_storage_sop_class_uid().to_string());
    let sop_class = sop_class.trim_end_matches('\0');
    if object
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .is_none()
    {
        return Err(ImageError::Unusable(format!(
            "the DICOM object has no pixel data (SOP Class UID {sop_class}): it is not an image"
        )));
    }
    let modality = text(object, tags::MODALITY).unwrap_or_default();
    if modality != "MG" && !limits.any_modality {
        return Err(ImageError::Unusable(format!(
            "the DICOM object's Modality is {:?}, not MG (mammography); the server accepts \
             other modalities only when started with --allow-any-modality",
            modality
        )));
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
    let rows = int(object, tags::ROWS).unwrap_or(0);
    let cols = int(object, tags::COLUMNS).unwrap_or(0);
    super::decode::check_dimensions(cols as u32, rows as u32, limits)?;
    let needed = (rows * cols) as u64 * (bits as u64 / 8 + 4);
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
        view_position: text(object, tags::VIEW_POSITION),
        transfer_syntax: object
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string(),
    }
}

/// How stored values become grey levels: the layout of a stored value and the mapping of
/// every possible one.
struct GreyMap {
    /// Right shift that brings the stored bits down to bit 0 (`High Bit + 1 - Bits Stored`).
    shift: u32,
    mask: u32,
    signed: bool,
    bits_stored: u32,
    slope: f64,
    intercept: f64,
    invert: bool,
}

impl GreyMap {
    fn read(object: &InMemDicomObject) -> Result<Self, ImageError> {
        let bits_allocated = int(object, tags::BITS_ALLOCATED).unwrap_or(16) as u32;
        let bits_stored = int(object, tags::BITS_STORED).unwrap_or(bits_allocated as i64) as u32;
        let high_bit = int(object, tags::HIGH_BIT).unwrap_or(bits_stored as i64 - 1) as u32;
        if bits_stored == 0 || bits_stored > bits_allocated || high_bit + 1 < bits_stored {
            return Err(ImageError::Unusable(format!(
                "inconsistent pixel layout: Bits Allocated {bits_allocated}, Bits Stored \
                 {bits_stored}, High Bit {high_bit}"
            )));
        }
        let first = |tag| floats(object, tag).and_then(|v| v.first().copied());
        Ok(GreyMap {
            shift: high_bit + 1 - bits_stored,
            mask: ((1u64 << bits_stored) - 1) as u32,
            signed: int(object, tags::PIXEL_REPRESENTATION) == Some(1),
            bits_stored,
            slope: first(tags::RESCALE_SLOPE).unwrap_or(1.0),
            intercept: first(tags::RESCALE_INTERCEPT).unwrap_or(0.0),
            invert: text(object, tags::PHOTOMETRIC_INTERPRETATION).as_deref()
                == Some("MONOCHROME1"),
        })
    }

    /// The lookup-table index of a raw sample.
    fn index(&self, raw: u32) -> usize {
        ((raw >> self.shift) & self.mask) as usize
    }

    /// The stored value a table index stands for (sign-extended when signed).
    fn stored(&self, index: usize) -> i64 {
        let v = index as i64;
        if self.signed && v >> (self.bits_stored - 1) & 1 == 1 {
            v - (1i64 << self.bits_stored)
        } else {
            v
        }
    }

    fn modality(&self, index: usize) -> f64 {
        self.rescale(self.stored(index))
    }

    fn rescale(&self, stored: i64) -> f64 {
        self.slope * stored as f64 + self.intercept
    }
}

/// The VOI transform from modality values to [0, 1].
enum Voi {
    Table {
        first: i64,
        data: Vec<u16>,
        max: f64,
    },
    Window {
        center: f64,
        width: f64,
        function: String,
    },
    Range {
        low: f64,
        high: f64,
    },
}

impl Voi {
    fn read(object: &InMemDicomObject) -> Option<Self> {
        if let Some(table) = Self::table(object) {
            return Some(table);
        }
        let center = floats(object, tags::WINDOW_CENTER)?.first().copied()?;
        let width = floats(object, tags::WINDOW_WIDTH)?.first().copied()?;
        (width > 0.0).then(|| Voi::Window {
            center,
            width,
            function: text(object, tags::VOILUT_FUNCTION).unwrap_or_else(|| "LINEAR".into()),
        })
    }

    fn table(object: &InMemDicomObject) -> Option<Self> {
        let sequence = object.element_opt(tags::VOILUT_SEQUENCE).ok()??;
        let item = sequence.items()?.first()?;
        let descriptor = item
            .element_opt(tags::LUT_DESCRIPTOR)
            .ok()??
            .to_multi_int::<i64>()
            .ok()?;
        let data = item
            .element_opt(tags::LUT_DATA)
            .ok()??
            .to_multi_int::<u16>()
            .ok()?;
        let (&first, &bits) = (descriptor.get(1)?, descriptor.get(2)?);
        (!data.is_empty() && (1..=16).contains(&bits)).then(|| Voi::Table {
            first,
            data,
            max: ((1u32 << bits) - 1) as f64,
        })
    }

    fn apply(&self, x: f64) -> f64 {
        match self {
            Voi::Table { first, data, max } => {
                let i = (x.round() as i64 - first).clamp(0, data.len() as i64 - 1);
                data[i as usize] as f64 / max
            }
            Voi::Window {
                center,
                width,
                function,
            } => match function.as_str() {
                "SIGMOID" => 1.0 / (1.0 + (-4.0 * (x - center) / width).exp()),
                "LINEAR_EXACT" => ((x - center) / width + 0.5).clamp(0.0, 1.0),
                _ if *width <= 1.0 => f64::from(u8::from(x >= center - 0.5)),
                _ => ((x - (center - 0.5)) / (width - 1.0) + 0.5).clamp(0.0, 1.0),
            },
            Voi::Range { low, high } if high > low => (x - low) / (high - low),
            Voi::Range { .. } => 0.0,
        }
    }
}

/// RLE Lossless, which [`super::rle`] decodes faster than dicom-pixeldata.
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Decodes the pixel data and maps every sample through the grey lookup table.
fn pixels(object: &DefaultDicomObject) -> Result<Grey, ImageError> {
    let map = GreyMap::read(object)?;
    let voi = Voi::read(object);
    if object.meta().transfer_syntax().trim_end_matches('\0') == RLE_LOSSLESS {
        let (width, height) = (
            int(object, tags::COLUMNS).unwrap_or(0) as u32,
            int(object, tags::ROWS).unwrap_or(0) as u32,
        );
        let n = width as usize * height as usize;
        let bytes = int(object, tags::BITS_ALLOCATED).unwrap_or(16) as usize / 8;
        let grey = match rle_planes(object, n, bytes)?.as_slice() {
            [low] => map_samples(low.iter().map(|&b| b as u32), n, &map, voi),
            [high, low] => {
                let samples = high
                    .iter()
                    .zip(low)
                    .map(|(&h, &l)| (h as u32) << 8 | l as u32);
                map_samples(samples, n, &map, voi)
            }
            _ => unreachable!("8 or 16 bits allocated, checked before"),
        }?;
        return Ok(Grey::new(width, height, grey).expect("width × height samples"));
    }
    let decoded = object.decode_pixel_data().map_err(|e| {
        corrupt(format!(
            "{} (transfer syntax {})",
            error_chain(&e),
            object.meta().transfer_syntax().trim_end_matches('\0')
        ))
    })?;
    let (width, height) = (decoded.columns(), decoded.rows());
    let n = width as usize * height as usize;
    let data = decoded.data();
    let grey = if decoded.bits_allocated() == 8 {
        map_samples(data.iter().map(|&b| b as u32), n, &map, voi)
    } else {
        let samples = data
            .chunks_exact(2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]) as u32);
        map_samples(samples, n, &map, voi)
    }?;
    Ok(Grey::new(width, height, grey).expect("width × height samples"))
}

/// The byte planes of the (single) RLE frame: its fragments joined, then decoded.
fn rle_planes(
    object: &DefaultDicomObject,
    n: usize,
    bytes: usize,
) -> Result<super::rle::Planes, ImageError> {
    let element = object.element(tags::PIXEL_DATA).map_err(corrupt)?;
    let fragments = element
        .value()
        .fragments()
        .ok_or_else(|| corrupt("RLE pixel data is not encapsulated"))?;
    let frame: std::borrow::Cow<[u8]> = match fragments {
        [one] => one.as_slice().into(),
        many => many.concat().into(),
    };
    super::rle::decode_frame(&frame, n, bytes).map_err(corrupt)
}

/// Maps the first `n` raw samples to grey; without a VOI the image's own range is used.
fn map_samples(
    samples: impl ExactSizeIterator<Item = u32> + Clone,
    n: usize,
    map: &GreyMap,
    voi: Option<Voi>,
) -> Result<Vec<f32>, ImageError> {
    let available = samples.len();
    if available < n {
        return Err(corrupt(format!(
            "the pixel data holds {available} samples; the image needs {n}"
        )));
    }
    let voi = voi.unwrap_or_else(|| {
        // The rescale is linear, so the stored extremes give the modality extremes.
        let (lo, hi) = samples
            .clone()
            .take(n)
            .fold((i64::MAX, i64::MIN), |(lo, hi), r| {
                let v = map.stored(map.index(r));
                (lo.min(v), hi.max(v))
            });
        let ends = [lo, hi].map(|v| map.rescale(v));
        Voi::Range {
            low: ends[0].min(ends[1]),
            high: ends[0].max(ends[1]),
        }
    });
    let table: Vec<f32> = (0..=map.mask as usize)
        .map(|i| {
            let v = voi.apply(map.modality(i)) as f32;
            if map.invert {
                1.0 - v
            } else {
                v
            }
        })
        .collect();
    Ok(samples.take(n).map(|r| table[map.index(r)]).collect())
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

    #[test]
    fn linear_window_follows_the_standard() {
        let voi = Voi::Window {
            center: 2048.0,
            width: 4096.0,
            function: "LINEAR".into(),
        };
        assert_eq!(voi.apply(-10.0), 0.0);
        assert!((voi.apply(2047.5) - 0.5).abs() < 1e-9);
        assert_eq!(voi.apply(5000.0), 1.0);
        let sigmoid = Voi::Window {
            center: 100.0,
            width: 50.0,
            function: "SIGMOID".into(),
        };
        assert!((sigmoid.apply(100.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn signed_values_are_sign_extended_and_rescaled() {
        let map = GreyMap {
            shift: 0,
            mask: 0xFFF,
            signed: true,
            bits_stored: 12,
            slope: 2.0,
            intercept: 10.0,
            invert: false,
        };
        assert_eq!(map.stored(0x7FF), 2047);
        assert_eq!(map.stored(0x800), -2048);
        assert_eq!(map.modality(0xFFF), 8.0, "2 × (-1) + 10");
        // Bits above Bits Stored (e.g. overlay bits) are ignored.
        assert_eq!(map.index(0xF123), 0x123);
    }
}
