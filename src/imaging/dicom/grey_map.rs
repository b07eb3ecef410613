//! How a DICOM image's stored values become grey levels: the pixel layout, the modality
//! rescale and the VOI (window, LUT or the image's own range), MONOCHROME1 inverted.

use super::rle::ByteRole;
use super::{floats, int, text};
use crate::imaging::ImageError;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// How stored values become grey levels: the layout of a stored value and the mapping of
/// every possible one.
pub(super) struct GreyMap {
    /// Right shift that brings the stored bits down to bit 0 (`High Bit + 1 - Bits Stored`).
    pub(super) shift: u32,
    pub(super) mask: u32,
    pub(super) signed: bool,
    pub(super) bits_stored: u32,
    pub(super) slope: f64,
    pub(super) intercept: f64,
    pub(super) invert: bool,
}

impl GreyMap {
    pub(super) fn read(object: &InMemDicomObject) -> Result<Self, ImageError> {
        let bits_allocated = int(object, tags::BITS_ALLOCATED).unwrap_or(16);
        let bits_stored = int(object, tags::BITS_STORED).unwrap_or(bits_allocated);
        let high_bit = int(object, tags::HIGH_BIT).unwrap_or(bits_stored - 1);
        // A mammogram's samples are 8 or 16 bits (PS3.3 C.8.11.7); the stored bits lie inside
        // them. Anything else (a High Bit of 2055, found by fuzzing) is refused before it
        // sizes a shift or a table.
        if !matches!(bits_allocated, 8 | 16)
            || !(1..=bits_allocated).contains(&bits_stored)
            || high_bit >= bits_allocated
            || high_bit + 1 < bits_stored
        {
            return Err(ImageError::Unusable(format!(
                "inconsistent pixel layout: Bits Allocated {bits_allocated}, Bits Stored \
                 {bits_stored}, High Bit {high_bit} (8 or 16 bits allocated, the stored bits \
                 inside them)"
            )));
        }
        let (bits_stored, high_bit) = (bits_stored as u32, high_bit as u32);
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
    pub(super) fn index(&self, raw: u32) -> u16 {
        ((raw >> self.shift) & self.mask) as u16
    }

    /// Grey in [0, 1] for every index, through `voi`, inverted for MONOCHROME1.
    pub(super) fn table(&self, voi: &Voi) -> Vec<f32> {
        (0..=self.mask as usize)
            .map(|i| {
                let v = voi.apply(self.modality(i)) as f32;
                if self.invert {
                    1.0 - v
                } else {
                    v
                }
            })
            .collect()
    }

    /// How the high and the low byte of a sample enter RLE's column sums (values stored from
    /// bit 0, `shift` 0): the bits of the value each holds, and the sign bit when it holds it.
    pub(super) fn byte_roles(&self) -> [ByteRole; 2] {
        let sign = self.sign_bit() as u32;
        [
            ByteRole {
                mask: (self.mask >> 8) as u8,
                sign: (sign >> 8) as u8,
            },
            ByteRole {
                mask: self.mask as u8,
                sign: sign as u8,
            },
        ]
    }

    /// The sign bit of a signed stored value, 0 when unsigned: `(index ^ s) - s` sign-extends.
    pub(super) fn sign_bit(&self) -> i32 {
        if self.signed {
            1 << (self.bits_stored - 1)
        } else {
            0
        }
    }

    /// The stored value a table index stands for (sign-extended when signed).
    pub(super) fn stored(&self, index: usize) -> i64 {
        let s = self.sign_bit() as i64;
        (index as i64 ^ s) - s
    }

    pub(super) fn modality(&self, index: usize) -> f64 {
        self.rescale(self.stored(index))
    }

    pub(super) fn rescale(&self, stored: i64) -> f64 {
        self.slope * stored as f64 + self.intercept
    }
}

/// The VOI transform from modality values to [0, 1].
pub(super) enum Voi {
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
    pub(super) fn read(object: &InMemDicomObject) -> Option<Self> {
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

    pub(super) fn table(object: &InMemDicomObject) -> Option<Self> {
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

    pub(super) fn apply(&self, x: f64) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
