//! Decoded image to normalised CHW tensor, as the model's metadata prescribes.
//!
//! Steps (training's Python code does the same; see `training/`):
//! 1. Convert to one grey channel in [0, 1] (8-bit / 255, 16-bit / 65535; colour by Rec. 709
//!    luma 0.2126 R + 0.7152 G + 0.0722 B; alpha ignored). Training images are grey.
//! 2. Resize to the model input (H, W) with the metadata's filter; skipped when sizes match.
//! 3. Repeat the grey plane into 3 channels and normalise each with `(x - mean[c]) / std[c]`.

use image::imageops::{self, FilterType};
use image::DynamicImage;
use std::str::FromStr;

/// Resampling filter named by `mammo.resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeFilter {
    /// Triangle filter, antialiased when downscaling (as PIL's BILINEAR).
    Bilinear,
    /// Catmull-Rom cubic, antialiased when downscaling (as PIL's BICUBIC).
    Bicubic,
    /// Nearest neighbour.
    Nearest,
}

impl FromStr for ResizeFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bilinear" => Ok(ResizeFilter::Bilinear),
            "bicubic" => Ok(ResizeFilter::Bicubic),
            "nearest" => Ok(ResizeFilter::Nearest),
            _ => Err("expected bilinear, bicubic or nearest".to_string()),
        }
    }
}

impl ResizeFilter {
    fn filter_type(self) -> FilterType {
        match self {
            ResizeFilter::Bilinear => FilterType::Triangle,
            ResizeFilter::Bicubic => FilterType::CatmullRom,
            ResizeFilter::Nearest => FilterType::Nearest,
        }
    }

    /// The name used in `mammo.resize`.
    pub fn name(self) -> &'static str {
        match self {
            ResizeFilter::Bilinear => "bilinear",
            ResizeFilter::Bicubic => "bicubic",
            ResizeFilter::Nearest => "nearest",
        }
    }
}

/// How an image becomes the model input, from the model's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessing {
    pub height: u32,
    pub width: u32,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after the mean.
    pub std: [f32; 3],
    pub resize: ResizeFilter,
}

impl Preprocessing {
    /// Number of floats in one image's tensor (3 × H × W).
    pub fn tensor_len(&self) -> usize {
        3 * self.height as usize * self.width as usize
    }
}

/// Turns a decoded image into the model's input tensor, CHW, `3 * H * W` floats.
pub fn preprocess(image: &DynamicImage, p: &Preprocessing) -> Vec<f32> {
    let grey = image.to_luma32f();
    let grey = if grey.dimensions() == (p.width, p.height) {
        grey
    } else {
        imageops::resize(&grey, p.width, p.height, p.resize.filter_type())
    };
    let plane = grey.as_raw();
    let mut tensor = Vec::with_capacity(p.tensor_len());
    for c in 0..3 {
        let (mean, std) = (p.mean[c], p.std[c]);
        tensor.extend(plane.iter().map(|&v| (v - mean) / std));
    }
    tensor
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage};

    fn prep(size: u32) -> Preprocessing {
        Preprocessing {
            height: size,
            width: size,
            mean: [0.5, 0.25, 0.0],
            std: [0.5, 0.25, 1.0],
            resize: ResizeFilter::Bilinear,
        }
    }

    #[test]
    fn grey_is_scaled_repeated_and_normalised_per_channel() {
        let img = GrayImage::from_fn(4, 4, |x, _| Luma([if x < 2 { 0 } else { 255 }]));
        let t = preprocess(&DynamicImage::ImageLuma8(img), &prep(4));
        assert_eq!(t.len(), 48);
        assert_eq!(t[0], -1.0); // (0 - 0.5) / 0.5
        assert_eq!(t[3], 1.0); // (1 - 0.5) / 0.5
        assert_eq!(t[16], -1.0); // (0 - 0.25) / 0.25
        assert_eq!(t[16 + 3], 3.0); // (1 - 0.25) / 0.25
        assert_eq!(t[32 + 3], 1.0); // (1 - 0) / 1
    }

    #[test]
    fn sixteen_bit_uses_the_full_range() {
        let img: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_pixel(4, 4, Luma([65535]));
        let t = preprocess(&DynamicImage::ImageLuma16(img), &prep(4));
        assert!((t[0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn grey_rgb_equals_grey() {
        let grey = GrayImage::from_fn(8, 8, |x, y| Luma([(x * 30 + y) as u8]));
        let rgb = RgbImage::from_fn(8, 8, |x, y| {
            let v = grey.get_pixel(x, y)[0];
            Rgb([v, v, v])
        });
        let a = preprocess(&DynamicImage::ImageLuma8(grey), &prep(4));
        let b = preprocess(&DynamicImage::ImageRgb8(rgb), &prep(4));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "{worst}");
    }

    #[test]
    fn resizes_to_the_model_input() {
        let img = GrayImage::from_pixel(300, 500, Luma([128]));
        let p = Preprocessing {
            height: 20,
            width: 10,
            ..prep(0)
        };
        let t = preprocess(&DynamicImage::ImageLuma8(img), &p);
        assert_eq!(t.len(), 3 * 20 * 10);
        assert!(t
            .iter()
            .take(200)
            .all(|v| (v - (128.0 / 255.0 - 0.5) / 0.5).abs() < 1e-5));
    }

    #[test]
    fn filter_names_round_trip() {
        for f in [
            ResizeFilter::Bilinear,
            ResizeFilter::Bicubic,
            ResizeFilter::Nearest,
        ] {
            assert_eq!(f.name().parse::<ResizeFilter>().unwrap(), f);
        }
        assert!("lanczos".parse::<ResizeFilter>().is_err());
    }
}
