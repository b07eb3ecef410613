//! The one image form preprocessing reads: a single grey channel in [0, 1].

use image::{ColorType, DynamicImage};

/// A grey image, row-major, each pixel in [0, 1] with dense tissue bright.
#[derive(Debug, Clone, PartialEq)]
pub struct Grey {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<f32>,
}

/// Grey of each pixel: its first sample, or the luma of its first three; `value` reads the
/// sample at the start of a slice, `depth` bytes long.
fn grey_pixels<'a>(
    pixels: impl Iterator<Item = &'a [u8]>,
    depth: usize,
    colour: bool,
    value: impl Fn(&[u8]) -> f32,
) -> Vec<f32> {
    pixels
        .map(|p| {
            if colour {
                let c = |i: usize| value(&p[i * depth..]);
                (0.2126 * c(0) + 0.7152 * c(1) + 0.0722 * c(2)).clamp(0.0, 1.0)
            } else {
                value(p)
            }
        })
        .collect()
}

impl Grey {
    /// `None` unless `pixels` holds exactly width × height values and neither side is 0.
    pub fn new(width: u32, height: u32, pixels: Vec<f32>) -> Option<Self> {
        (width > 0 && height > 0 && pixels.len() == width as usize * height as usize).then_some(
            Grey {
                width,
                height,
                pixels,
            },
        )
    }

    /// A decoded JPEG's or PNG's samples, as `image`'s decoders write them (channels
    /// interleaved, 16-bit ones in native byte order): 8-bit / 255, 16-bit / 65535, colour by
    /// Rec. 709 luma (0.2126 R + 0.7152 G + 0.0722 B), alpha ignored. The luma of white comes
    /// out of f32 arithmetic a hair above 1; it is clamped, as every later step expects [0, 1]
    /// (found by fuzzing). `None` for float samples (neither decoder writes them) or a buffer
    /// that is not width × height pixels.
    pub fn from_samples(width: u32, height: u32, color: ColorType, samples: &[u8]) -> Option<Self> {
        let depth = match color {
            ColorType::L8 | ColorType::La8 | ColorType::Rgb8 | ColorType::Rgba8 => 1,
            ColorType::L16 | ColorType::La16 | ColorType::Rgb16 | ColorType::Rgba16 => 2,
            _ => return None,
        };
        let pixel = depth * usize::from(color.channel_count());
        if samples.len() != pixel * width as usize * height as usize {
            return None;
        }
        let pixels = if depth == 1 {
            grey_pixels(samples.chunks_exact(pixel), 1, color.has_color(), |s| {
                f32::from(s[0]) / 255.0
            })
        } else {
            grey_pixels(samples.chunks_exact(pixel), 2, color.has_color(), |s| {
                f32::from(u16::from_ne_bytes([s[0], s[1]])) / 65535.0
            })
        };
        Grey::new(width, height, pixels)
    }

    /// An image whose pixel (x, y) is `f(x, y)`: test pictures drawn as formulas.
    #[cfg(test)]
    pub(crate) fn from_fn(width: u32, height: u32, f: impl Fn(u32, u32) -> f32) -> Self {
        let pixels = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        Grey::new(width, height, pixels).expect("a side of 0")
    }

    /// Row `y`.
    pub fn row(&self, y: u32) -> &[f32] {
        let w = self.width as usize;
        &self.pixels[y as usize * w..(y as usize + 1) * w]
    }

    /// 16-bit grey image (for thumbnails and fingerprints).
    pub fn to_image(&self) -> DynamicImage {
        let values = self
            .pixels
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16)
            .collect();
        let buffer = image::ImageBuffer::from_raw(self.width, self.height, values)
            .expect("width × height values");
        DynamicImage::ImageLuma16(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_in_colour_is_one_not_more() {
        for (color, bytes) in [(ColorType::Rgb8, 3), (ColorType::Rgba16, 8)] {
            let grey = Grey::from_samples(3, 2, color, &vec![255; 6 * bytes]).unwrap();
            assert!(
                grey.pixels.iter().all(|&v| v == 1.0),
                "{color:?} {:?}",
                grey.pixels
            );
        }
    }

    #[test]
    fn samples_are_read_by_their_layout() {
        let sixteen = |v: u16| v.to_ne_bytes();
        let cases: [(ColorType, Vec<u8>, f32); 4] = [
            (ColorType::L8, vec![51], 0.2),
            (ColorType::La8, vec![51, 0], 0.2),
            (ColorType::Rgb8, vec![255, 0, 0], 0.2126),
            (ColorType::L16, sixteen(13107).to_vec(), 0.2),
        ];
        for (color, samples, grey) in cases {
            let got = Grey::from_samples(1, 1, color, &samples).unwrap().pixels[0];
            assert!((got - grey).abs() < 1e-6, "{color:?}: {got}");
        }
        assert_eq!(Grey::from_samples(2, 1, ColorType::L8, &[0]), None, "short");
        assert_eq!(Grey::from_samples(1, 1, ColorType::Rgb32F, &[0; 12]), None);
    }
}
