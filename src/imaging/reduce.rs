//! Reduction of large images by block means, before any other step: a 2600×4700 detector
//! image is read by every later step at 520×940 for a 224-pixel model (k = 5), while images up
//! to twice the input, such as the 224-pixel training images, are left as they are (k = 1).
//! Both the grey path ([`reduce`]) and DICOM's stored values (`dicom::stored`) sum blocks with
//! [`BlockSums`].

use super::{Grey, Preprocessing};
use std::ops::AddAssign;

/// The largest reduction factor: block sums of 16-bit stored values stay within `i32`.
const MAX_REDUCTION: u32 = 128;

/// The factor k by which a `width` × `height` image is reduced before the full-field steps:
/// the largest that keeps its shorter side at least twice the model input's longer side
/// (at most [`MAX_REDUCTION`]); 1 for images up to twice the input.
pub fn reduction(width: u32, height: u32, p: &Preprocessing) -> u32 {
    let side = 2 * p.width.max(p.height).max(1);
    (width.min(height) / side).clamp(1, MAX_REDUCTION)
}

/// Sums over the k×k blocks of an image given row by row: each row is added into a band of
/// column sums, and every k rows the band's k-column groups are summed into one row of blocks.
/// The last width mod k columns and height mod k rows fall outside every block.
pub struct BlockSums<T> {
    k: usize,
    band: Vec<T>,
    rows_in_band: usize,
    width: u32,
    sums: Vec<T>,
}

impl<T: Copy + Default + AddAssign> BlockSums<T> {
    /// Empty sums for a `width` × `height` image, blocks of `k` × `k` (k ≥ 1).
    pub fn new(width: u32, height: u32, k: u32) -> Self {
        BlockSums {
            k: k as usize,
            band: vec![T::default(); width as usize],
            rows_in_band: 0,
            width: width / k,
            sums: Vec::with_capacity((width / k) as usize * (height / k) as usize),
        }
    }

    /// Adds the next row (`width` values).
    pub fn add_row(&mut self, row: &[T]) {
        self.add_row_by(|band| {
            for (sum, &v) in band.iter_mut().zip(row) {
                *sum += v;
            }
        });
    }

    /// Adds the next row, which `add` adds into the band of column sums (`width` of them): for
    /// callers that compute each value as they add it.
    pub fn add_row_by(&mut self, add: impl FnOnce(&mut [T])) {
        add(&mut self.band);
        self.rows_in_band += 1;
        if self.rows_in_band == self.k {
            let start = self.sums.len();
            self.sums.resize(start + self.width as usize, T::default());
            let blocks = self.sums[start..].iter_mut();
            for (block, group) in blocks.zip(self.band.chunks_exact(self.k)) {
                for &v in group {
                    *block += v;
                }
            }
            self.band.fill(T::default());
            self.rows_in_band = 0;
        }
    }

    /// Width and height in blocks, and the block sums row by row.
    pub fn finish(self) -> (u32, u32, Vec<T>) {
        let height = self.sums.len() as u32 / self.width.max(1);
        (self.width, height, self.sums)
    }
}

/// `grey` reduced by `k`: the mean of each k×k block ([`BlockSums`]).
pub fn reduce(grey: &Grey, k: u32) -> Grey {
    let mut sums = BlockSums::new(grey.width, grey.height, k);
    for row in grey.pixels.chunks_exact(grey.width as usize) {
        sums.add_row(row);
    }
    let (width, height, sums) = sums.finish();
    let area = (k * k) as f32;
    let pixels = sums.into_iter().map(|s| s / area).collect();
    Grey::new(width, height, pixels).expect("k leaves at least one block each way")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::{FullField, ResizeFilter};

    fn prep(size: u32) -> Preprocessing {
        Preprocessing {
            height: size,
            width: size,
            mean: [0.0; 3],
            std: [1.0; 3],
            resize: ResizeFilter::Bilinear,
            steps: FullField::default(),
        }
    }

    #[test]
    fn large_images_are_reduced_by_block_means_before_the_steps() {
        let p = prep(224);
        assert_eq!(reduction(224, 224, &p), 1, "training images as they are");
        assert_eq!(reduction(895, 4000, &p), 1);
        assert_eq!(reduction(896, 4000, &p), 2);
        assert_eq!(reduction(2600, 4700, &p), 5);
        assert_eq!(reduction(60_000, 60_000, &prep(1)), MAX_REDUCTION);
        // 7 × 5 by 2: blocks of 2 × 2; the last column and row are left out.
        let img = Grey::from_fn(7, 5, |x, y| (y * 7 + x) as f32);
        let small = reduce(&img, 2);
        assert_eq!((small.width, small.height), (3, 2));
        for (b, &v) in small.pixels.iter().enumerate() {
            let (x, y) = (b % 3 * 2, b / 3 * 2);
            let at = |dx, dy| img.pixels[(y + dy) * 7 + x + dx];
            let mean = (at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1)) / 4.0;
            assert_eq!(v, mean, "block {b}");
        }
        assert_eq!(reduce(&img, 1), img);
    }
}
