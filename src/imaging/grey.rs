//! The one image form preprocessing reads: a single grey channel in [0, 1].

use image::DynamicImage;

/// A grey image, row-major, each pixel in [0, 1] with dense tissue bright.
#[derive(Debug, Clone, PartialEq)]
pub struct Grey {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<f32>,
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

    /// Any decoded JPEG/PNG: 8-bit / 255, 16-bit / 65535, colour by Rec. 709 luma
    /// (0.2126 R + 0.7152 G + 0.0722 B), alpha ignored. The luma of white comes out of f32
    /// arithmetic a hair above 1; it is clamped, as every later step expects [0, 1] (found by
    /// fuzzing).
    pub fn from_image(image: &DynamicImage) -> Self {
        let luma = image.to_luma32f();
        let (width, height) = luma.dimensions();
        let mut pixels = luma.into_raw();
        if image.color().has_color() {
            pixels.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        }
        Grey {
            width,
            height,
            pixels,
        }
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
        let white = image::RgbImage::from_pixel(3, 2, image::Rgb([255, 255, 255]));
        let grey = Grey::from_image(&DynamicImage::ImageRgb8(white));
        assert!(grey.pixels.iter().all(|&v| v == 1.0), "{:?}", grey.pixels);
    }
}
