//! Every value length a DICOM file declares, checked against the bytes that follow it before
//! dicom-rs reads the file. dicom-parser (0.10.1) allocates and zero-fills a value's declared
//! length before it reads the value, so a few kilobytes that declare a huge element would take
//! that much memory and seconds of a decode thread (found by `fuzz/`, target `decode`).
//! Here each element header is read in turn, sequences and items entered, values skipped; a
//! length past the end of the data is refused. A deflated data set is inflated first, up to a
//! bound.

use super::corrupt;
use crate::imaging::ImageError;
use dicom_core::dictionary::DataDictionary;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use std::io::Read;

const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
const GROUP_LENGTH: Tag = Tag(0x0002, 0x0000);
const TRANSFER_SYNTAX: Tag = Tag(0x0002, 0x0010);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);
/// A length that says "until the delimiter" (sequences, items, encapsulated pixel data).
const UNDEFINED: u32 = u32::MAX;

/// Checks `body` (a Part 10 file from its "DICM" prefix on): the file meta group, then the
/// data set in the transfer syntax the group names. A deflated data set may inflate to at
/// most `max_inflated` bytes.
pub fn check(body: &[u8], max_inflated: u64) -> Result<(), ImageError> {
    let mut meta = Walker::new(body.get(4..).unwrap_or_default(), Encoding::EXPLICIT_LE);
    // dicom-object reads the group's elements, whatever their tags, until their lengths add
    // up to the group length the first one gives: the data set starts there. A file that
    // does not start so is refused by dicom-object before any value is read.
    let group_length = match meta.next_header()? {
        Some(first) if first.tag == GROUP_LENGTH && first.length == 4 => {
            let value = meta.value(4);
            meta.at += 4;
            u32::from_le_bytes([value[0], value[1], value[2], value[3]]) as usize
        }
        _ => return Ok(()),
    };
    let start = meta.at;
    let mut syntax = String::new();
    while meta.at - start < group_length {
        let Some(element) = meta.next_header()? else {
            return Ok(());
        };
        if element.length == UNDEFINED {
            return Ok(());
        }
        if element.tag == TRANSFER_SYNTAX {
            syntax = String::from_utf8_lossy(meta.value(element.length))
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        meta.at += element.length as usize;
    }
    let data_set = &meta.bytes[meta.at..];
    let encoding = match syntax.as_str() {
        IMPLICIT_LE => Encoding::IMPLICIT_LE,
        EXPLICIT_BE => Encoding::EXPLICIT_BE,
        _ => Encoding::EXPLICIT_LE,
    };
    if syntax == DEFLATED {
        let inflated = inflate(data_set, max_inflated)?;
        Walker::new(&inflated, encoding).walk()
    } else {
        Walker::new(data_set, encoding).walk()
    }
}

/// A deflated data set (raw deflate, PS3.5 A.5) inflated, refused past `max` bytes.
fn inflate(data_set: &[u8], max: u64) -> Result<Vec<u8>, ImageError> {
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(data_set)
        .take(max.saturating_add(1))
        .read_to_end(&mut inflated)
        .map_err(|e| corrupt(format!("the deflated data set does not inflate: {e}")))?;
    if inflated.len() as u64 > max {
        return Err(ImageError::Unusable(format!(
            "the deflated data set inflates to more than {} MiB",
            max >> 20
        )));
    }
    Ok(inflated)
}

#[derive(Debug, Clone, Copy)]
struct Encoding {
    explicit_vr: bool,
    big_endian: bool,
}

impl Encoding {
    const EXPLICIT_LE: Encoding = Encoding {
        explicit_vr: true,
        big_endian: false,
    };
    const IMPLICIT_LE: Encoding = Encoding {
        explicit_vr: false,
        big_endian: false,
    };
    const EXPLICIT_BE: Encoding = Encoding {
        explicit_vr: true,
        big_endian: true,
    };
}

/// One element header: its tag, declared length, and whether its value holds items.
#[derive(Debug, Clone, Copy)]
struct Header {
    tag: Tag,
    length: u32,
    holds_items: bool,
}

/// Reads element headers through a data set, entering sequences and items.
struct Walker<'a> {
    bytes: &'a [u8],
    at: usize,
    encoding: Encoding,
    /// Inside encapsulated pixel data, until its sequence delimiter.
    fragments: bool,
}

impl<'a> Walker<'a> {
    fn new(bytes: &'a [u8], encoding: Encoding) -> Self {
        Walker {
            bytes,
            at: 0,
            encoding,
            fragments: false,
        }
    }

    /// Checks every element to the end of the data. A header cut short ends the walk:
    /// dicom-rs refuses it without allocating.
    fn walk(mut self) -> Result<(), ImageError> {
        while let Some(element) = self.next_header()? {
            self.skip(element);
        }
        Ok(())
    }

    /// The next element's header, with its declared length checked against the bytes left;
    /// the walker then stands at its value.
    fn next_header(&mut self) -> Result<Option<Header>, ImageError> {
        let Some(head) = self.bytes.get(self.at..self.at + 8) else {
            return Ok(None);
        };
        let tag = Tag(self.u16(&head[0..2]), self.u16(&head[2..4]));
        let (length, header_len, vr) = if tag.group() == 0xFFFE {
            // Items and delimiters: tag and a 4-byte length in every encoding.
            (self.u32(&head[4..8]), 8, None)
        } else if self.encoding.explicit_vr {
            let vr = VR::from_binary([head[4], head[5]]);
            if has_long_length(vr) {
                let Some(length) = self.bytes.get(self.at + 8..self.at + 12) else {
                    return Ok(None);
                };
                (self.u32(length), 12, vr)
            } else {
                (u32::from(self.u16(&head[6..8])), 8, vr)
            }
        } else {
            let vr = StandardDataDictionary
                .by_tag(tag)
                .map(|entry| entry.vr.relaxed());
            (self.u32(&head[4..8]), 8, vr)
        };
        self.at += header_len;
        let left = self.bytes.len() - self.at;
        if length != UNDEFINED && length as usize > left {
            let what = match tag {
                ITEM if self.fragments => "a pixel data fragment".to_string(),
                PIXEL_DATA => format!("the pixel data {tag}"),
                _ => format!("the element {tag}"),
            };
            return Err(corrupt(format!(
                "{what} declares {length} bytes; {left} follow"
            )));
        }
        // A sequence's items and their data sets are read element by element; so are the
        // items of encapsulated pixel data, whose values (compressed fragments) are skipped.
        let holds_items = match tag {
            SEQUENCE_END => {
                self.fragments = false;
                false
            }
            ITEM => !self.fragments,
            PIXEL_DATA if length == UNDEFINED => {
                self.fragments = true;
                true
            }
            _ => length == UNDEFINED || vr == Some(VR::SQ),
        };
        Ok(Some(Header {
            tag,
            length,
            holds_items,
        }))
    }

    /// The value of the element whose header was just read.
    fn value(&self, length: u32) -> &'a [u8] {
        &self.bytes[self.at..self.at + length as usize]
    }

    /// Steps over a value, or into it when it holds items.
    fn skip(&mut self, element: Header) {
        if !element.holds_items {
            self.at += element.length as usize;
        }
    }

    fn u16(&self, b: &[u8]) -> u16 {
        let b = [b[0], b[1]];
        if self.encoding.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let b = [b[0], b[1], b[2], b[3]];
        if self.encoding.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

/// Explicit VRs whose length takes 4 bytes after 2 reserved ones (PS3.5 7.1.2).
fn has_long_length(vr: Option<VR>) -> bool {
    use VR::*;
    // An unknown VR is read as UN by dicom-rs.
    vr.is_none_or(|vr| {
        matches!(
            vr,
            OB | OD | OF | OL | OV | OW | SQ | SV | UC | UN | UR | UT | UV
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Part 10 body: "DICM", a meta group naming `syntax`, then `data_set`.
    fn file(syntax: &str, data_set: &[u8]) -> Vec<u8> {
        let mut uid = syntax.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        let mut body = b"DICM".to_vec();
        body.extend([0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        body.extend((8 + uid.len() as u32).to_le_bytes());
        body.extend([0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        body.extend((uid.len() as u16).to_le_bytes());
        body.extend(uid);
        body.extend(data_set);
        body
    }

    /// Explicit VR little endian element with a 4-byte length.
    fn long(group: u16, element: u16, vr: &[u8; 2], length: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend(group.to_le_bytes());
        bytes.extend(element.to_le_bytes());
        bytes.extend(vr);
        bytes.extend([0, 0]);
        bytes.extend(length.to_le_bytes());
        bytes
    }

    #[test]
    fn a_length_past_the_end_is_refused_at_any_depth() {
        let mut honest = long(0x0009, 0x1010, b"OB", 4);
        honest.extend([1, 2, 3, 4]);
        assert!(check(&file("1.2.840.10008.1.2.1", &honest), 1 << 20).is_ok());

        let mut lying = long(0x0009, 0x1010, b"OB", 0xFFFF_FFF0);
        lying.extend([1, 2, 3, 4]);
        let error = check(&file("1.2.840.10008.1.2.1", &lying), 1 << 20).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("(0009,1010) declares 4294967280 bytes; 4 follow"),
            "{error}"
        );

        // The same lie inside an item of a sequence of undefined length.
        let mut nested = long(0x0040, 0x0275, b"SQ", UNDEFINED);
        nested.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        nested.extend(long(0x0009, 0x1010, b"OB", 1 << 30));
        assert!(check(&file("1.2.840.10008.1.2.1", &nested), 1 << 20).is_err());

        // Implicit VR: the dictionary says which tags are sequences to enter.
        let mut implicit = vec![0x40, 0x00, 0x75, 0x02, 0xFF, 0xFF, 0xFF, 0xFF];
        implicit.extend([0xFE, 0xFF, 0x00, 0xE0, 0x08, 0x00, 0x00, 0x00]);
        implicit.extend([0x08, 0x00, 0x16, 0x00, 0x00, 0x00, 0x00, 0x40]);
        assert!(check(&file(IMPLICIT_LE, &implicit), 1 << 20).is_err());
    }

    #[test]
    fn encapsulated_fragments_are_skipped_not_read_as_elements() {
        // A fragment whose bytes would read as an element declaring 1 GiB.
        let fragment = long(0x0009, 0x1010, b"OB", 1 << 30);
        let mut pixels = long(0x7FE0, 0x0010, b"OB", UNDEFINED);
        pixels.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        pixels.extend([0xFE, 0xFF, 0x00, 0xE0]);
        pixels.extend((fragment.len() as u32).to_le_bytes());
        pixels.extend(&fragment);
        pixels.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert!(check(&file("1.2.840.10008.1.2.5", &pixels), 1 << 20).is_ok());
        // A fragment longer than what follows is refused.
        let cut = pixels.len() - 8 - fragment.len() + 4;
        assert!(check(&file("1.2.840.10008.1.2.5", &pixels[..cut]), 1 << 20).is_err());
    }

    #[test]
    fn a_deflated_data_set_is_checked_inflated_and_bounded() {
        use flate2::write::DeflateEncoder;
        use std::io::Write;
        let deflate = |bytes: &[u8]| {
            let mut encoder = DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        };
        let lying = long(0x0009, 0x1010, b"OB", 0xFFFF_FFF0);
        assert!(check(&file(DEFLATED, &deflate(&lying)), 1 << 20).is_err());

        let mut zeros = long(0x0009, 0x1010, b"OB", 4 << 20);
        zeros.resize(zeros.len() + (4 << 20), 0);
        let packed = file(DEFLATED, &deflate(&zeros));
        assert!(check(&packed, 8 << 20).is_ok());
        let error = check(&packed, 1 << 20).unwrap_err();
        assert!(error.to_string().contains("more than 1 MiB"), "{error}");
    }
}
