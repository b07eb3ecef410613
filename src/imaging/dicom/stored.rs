//! A DICOM image's stored values, reduced by block means and mapped to grey without a float
//! image of the whole detector.

use super::grey_map::{GreyMap, Voi};
use super::{corrupt, error_chain, rle};
use crate::imaging::reduce::BlockSums;
use crate::imaging::{Grey, ImageError};
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use dicom_pixeldata::PixelDecoder;
use std::panic::AssertUnwindSafe;

/// Stored samples, row by row.
pub(super) enum Pixels {
    /// An RLE frame, decoded as it is read (raw samples).
    Rle(rle::Frame),
    /// Pixel data dicom-pixeldata decoded, already as grey-table indices.
    Indices(Vec<u16>),
}

/// A DICOM image's stored values, their grey mapping and VOI: what preprocessing needs without
/// a float image of the whole detector.
pub struct StoredImage {
    pub width: u32,
    pub height: u32,
    pixels: Pixels,
    map: GreyMap,
    voi: Option<Voi>,
}

impl StoredImage {
    /// A `width` × `height` image of `pixels` with `object`'s VOI, if it has one.
    pub(super) fn new(
        (width, height): (u32, u32),
        pixels: Pixels,
        map: GreyMap,
        object: &InMemDicomObject,
    ) -> Self {
        StoredImage {
            width,
            height,
            pixels,
            map,
            voi: Voi::read(object),
        }
    }

    /// The image reduced by `k` and mapped to grey: each k×k block's mean stored value
    /// (sign-extended; rounded half away from zero to a stored value) through the grey table.
    /// One pass over the pixels; `k` = 1 maps every pixel as it is.
    pub fn grey(&self, k: u32) -> Result<Grey, ImageError> {
        let (mean, mask) = (BlockMean::new(k), self.map.mask as i32);
        let blocks = (self.width / k) as usize * (self.height / k) as usize;
        let (width, height, pixels) = match &self.voi {
            // The table does not depend on the pixels: each row of blocks is rounded and
            // mapped as soon as its band is summed, while the helper still decodes.
            Some(voi) => {
                let (mut table, mut pixels) = (None, Vec::with_capacity(blocks));
                let (width, height) = self.block_rows(k, |row| {
                    let table = table.get_or_insert_with(|| self.map.table(voi));
                    map_means(row, mean, mask, table, &mut pixels);
                })?;
                (width, height, pixels)
            }
            // Without a VOI the table waits for the reduced image's range.
            None => {
                let mut means = Vec::with_capacity(blocks);
                let (width, height) =
                    self.block_rows(k, |row| means.extend(row.iter().map(|&s| mean.of(s))))?;
                let table = self.map.table(&self.value_range(&means));
                // Into the same allocation (in-place collect: i32 and f32 have one size).
                let pixels = means
                    .into_iter()
                    .map(|m| table[(m & mask) as usize])
                    .collect();
                (width, height, pixels)
            }
        };
        Grey::new(width, height, pixels).ok_or_else(|| corrupt("the image has no pixels"))
    }

    /// Calls `row(sums)` for each row of k×k blocks, top to bottom, with the sums of the
    /// sign-extended stored values over each block; returns the width and height in blocks.
    fn block_rows(&self, k: u32, mut row: impl FnMut(&[i32])) -> Result<(u32, u32), ImageError> {
        let size = (self.width / k, self.height / k);
        match &self.pixels {
            Pixels::Rle(frame) => {
                // A value is 256 × high + low (their bits masked), less 2^Bits Stored when its
                // sign bit is set; so are the sums of values over a block.
                let whole = 1i32 << self.map.bits_stored;
                let roles = self.map.byte_roles();
                let roles = &roles[2 - frame.segment_count()..];
                let mut sums = vec![0i32; size.0 as usize];
                frame
                    .band_sums(k as usize, roles, |high, low| {
                        let low = low.sums.iter().zip(&low.signs);
                        for (v, (&s, &n)) in sums.iter_mut().zip(low) {
                            *v = s as i32 - whole * n as i32;
                        }
                        if let Some(high) = high {
                            let high = high.sums.iter().zip(&high.signs);
                            for (v, (&s, &n)) in sums.iter_mut().zip(high) {
                                *v += 256 * s as i32 - whole * n as i32;
                            }
                        }
                        row(&sums);
                    })
                    .map_err(corrupt)?
            }
            Pixels::Indices(indices) => {
                let mut sums = BlockSums::<i32>::new(self.width, self.height, k);
                let sign = self.map.sign_bit();
                for row in indices.chunks_exact(self.width as usize) {
                    sums.add_row_by(|band| {
                        for (sum, &i) in band.iter_mut().zip(row) {
                            *sum += (i as i32 ^ sign) - sign;
                        }
                    });
                }
                let (width, _, sums) = sums.finish();
                sums.chunks_exact(width.max(1) as usize).for_each(row);
            }
        }
        Ok(size)
    }

    /// The VOI of an image without one: the range of its modality values (`stored`, the
    /// sign-extended stored values).
    fn value_range(&self, stored: &[i32]) -> Voi {
        let lo = stored.iter().copied().min().unwrap_or(0);
        let hi = stored.iter().copied().max().unwrap_or(0);
        // The rescale is linear, so the stored extremes give the modality extremes.
        let ends = [lo, hi].map(|v| self.map.rescale(v as i64));
        Voi::Range {
            low: ends[0].min(ends[1]),
            high: ends[0].max(ends[1]),
        }
    }
}

/// A k×k block's mean from its sum, rounded half away from zero, in integers: ⌊(|sum| + ⌊k²/2⌋)
/// / k²⌋ with the sum's sign, the division a multiply and shift (Granlund and Montgomery 1994,
/// "Division by invariant integers using multiplication", theorem 4.2: exact for dividends
/// below 2^31, which 65535 · 128² + 128²/2 is): one of these per reduced pixel, where floating
/// point rounding cost more (docs/benchmarks.md, "DICOM").
#[derive(Debug, Clone, Copy)]
struct BlockMean {
    half: u64,
    factor: u64,
    shift: u32,
}

impl BlockMean {
    fn new(k: u32) -> Self {
        let area = u64::from(k * k);
        // ⌈log2 area⌉ bits on top of the 31 of the dividend.
        let shift = 31 + (64 - (area - 1).leading_zeros());
        BlockMean {
            half: area / 2,
            factor: (1u64 << shift).div_ceil(area),
            shift,
        }
    }

    fn of(self, sum: i32) -> i32 {
        let dividend = u64::from(sum.unsigned_abs()) + self.half;
        let mean = ((dividend * self.factor) >> self.shift) as i32;
        if sum < 0 {
            -mean
        } else {
            mean
        }
    }
}

/// Each block of `sums` rounded to its mean stored value and mapped through `table` (by its
/// `mask`ed index), onto `out`.
fn map_means(sums: &[i32], mean: BlockMean, mask: i32, table: &[f32], out: &mut Vec<f32>) {
    out.extend(sums.iter().map(|&s| table[(mean.of(s) & mask) as usize]));
}

/// Pixel data in any other transfer syntax, decoded by dicom-pixeldata into table indices.
pub(super) fn decode_pixels(object: &DefaultDicomObject) -> Result<StoredImage, ImageError> {
    let map = GreyMap::read(object)?;
    let syntax = object.meta().transfer_syntax().trim_end_matches('\0');
    // dicom-pixeldata's decoders panic on some malformed pixel data (fuzzing: a slice index
    // out of range in its JPEG adapter). Such a panic is this image's error, not the
    // request's: it holds only the decoder's own buffers, dropped as it unwinds.
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| object.decode_pixel_data()))
        .map_err(|_| corrupt(format!("the pixel data could not be decoded (transfer syntax {syntax}): the decoder failed on it")))?
        .map_err(|e| corrupt(format!("{} (transfer syntax {syntax})", error_chain(&e))))?;
    let (width, height) = (decoded.columns(), decoded.rows());
    let n = width as usize * height as usize;
    let data = decoded.data();
    let indices: Vec<u16> = if decoded.bits_allocated() == 8 {
        data.iter().map(|&b| map.index(b as u32)).collect()
    } else {
        data.chunks_exact(2)
            .map(|b| map.index(u16::from_ne_bytes([b[0], b[1]]) as u32))
            .collect()
    };
    if indices.len() < n {
        return Err(corrupt(format!(
            "the pixel data holds {} samples; the image needs {n}",
            indices.len()
        )));
    }
    Ok(StoredImage::new(
        (width, height),
        Pixels::Indices(indices),
        map,
        object,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rle_block_sums_match_the_pixels_for_any_layout() {
        use super::super::rle::tests::{frame, numbers};
        use super::super::rle::Frame;
        let mut next = numbers(0x9e37_79b9_7f4a_7c15);
        for case in 0..120 {
            let (width, height) = (1 + next() % 40, 1 + next() % 30);
            let k = 1 + next() % width.min(height).min(6);
            let two_bytes = case % 4 != 0;
            let bits_stored = if two_bytes {
                9 + next() % 8
            } else {
                1 + next() % 8
            } as u32;
            let map = GreyMap {
                shift: 0,
                mask: ((1u64 << bits_stored) - 1) as u32,
                signed: next().is_multiple_of(2),
                bits_stored,
                slope: 1.0,
                intercept: 0.0,
                invert: false,
            };
            // Raw samples with noise above Bits Stored, which must not count.
            let raw: Vec<u32> = (0..width * height)
                .map(|_| (next() & if two_bytes { 0xFFFF } else { 0xFF }) as u32)
                .collect();
            let segments = if two_bytes {
                vec![
                    raw.iter().map(|&r| (r >> 8) as u8).collect(),
                    raw.iter().map(|&r| r as u8).collect(),
                ]
            } else {
                vec![raw.iter().map(|&r| r as u8).collect()]
            };
            let bytes = frame(&segments, &mut next);
            let size = (width, height);
            let image = |pixels| StoredImage {
                width: width as u32,
                height: height as u32,
                pixels,
                map: GreyMap { ..map },
                voi: None,
            };
            let rle = Frame::parse(bytes.into(), size, segments.len()).unwrap();
            let decoded = raw.iter().map(|&r| map.index(r)).collect();
            let (w, h) = (width / k, height / k);
            let naive: Vec<i32> = (0..w * h)
                .map(|b| {
                    let (bx, by) = (b % w * k, b / w * k);
                    let pixel = |i: usize| map.stored(map.index(raw[i]) as usize) as i32;
                    (0..k * k)
                        .map(|i| pixel((by + i / k) * width + bx + i % k))
                        .sum()
                })
                .collect();
            let want = (w as u32, h as u32, naive);
            let k = k as u32;
            let what = format!("case {case}: {width}×{height}, k {k}, {bits_stored} bits");
            let sums = |image: StoredImage| {
                let mut sums = Vec::new();
                let (w, h) = image
                    .block_rows(k, |row| sums.extend_from_slice(row))
                    .unwrap();
                (w, h, sums)
            };
            assert_eq!(sums(image(Pixels::Rle(rle))), want, "{what}");
            assert_eq!(sums(image(Pixels::Indices(decoded))), want, "{what}");
        }
    }

    #[test]
    fn block_means_round_half_away_from_zero_exactly() {
        for k in 1..=128i64 {
            let area = k * k;
            let mean = BlockMean::new(k as u32);
            let extreme = 65535 * area;
            // Every tie and its neighbours near 0 and the largest sums, and a spread between.
            let sums = (-3 * area..3 * area)
                .chain(extreme - 3 * area..=extreme)
                .chain((-32768 * area..=extreme).step_by(7919));
            for sum in sums {
                let exact = (2 * sum.abs() + area) / (2 * area) * sum.signum();
                assert_eq!(mean.of(sum as i32) as i64, exact, "{sum}/{area}");
            }
        }
    }
}
