//! Grey image to normalised CHW tensor, as the model's metadata prescribes.
//!
//! Steps (training reads images these steps made: `mammo-eval prepare`):
//! 1. One grey channel in [0, 1] ([`Grey`]; decoding made it).
//! 2. A large image is first reduced by an integer factor k, each k×k block averaged
//!    ([`reduction`], [`reduce`]): k is the largest that leaves the shorter side at least twice
//!    the model input, so a 2600×4700 detector image is read by every later step at 520×940
//!    (k = 5 for 224), while images up to twice the input, such as the 224-pixel training
//!    images, are left as they are (k = 1). DICOM images are reduced on their stored values,
//!    before the grey mapping (`dicom::StoredImage::grey`).
//! 3. The full-field steps the model was trained with (`mammo.preprocess`), in this order:
//!    `crop_breast` (crop to the breast, see [`breast_box`]), `orient_left` (chest wall on the
//!    left, see [`chest_wall_on_right`]) and `pad_square` (keep the aspect ratio and pad with
//!    black to a square). Without `pad_square` the image is stretched to the model input.
//! 4. Resize with the metadata's filter (fast_image_resize, SIMD), skipped when sizes match.
//!    With `pad_square` the crop is scaled so that its longer side fits and is then placed on
//!    a black square (against the left edge when tall, centred vertically when wide): the
//!    same as padding first and resizing after, without resizing the padding. Flipping after
//!    the resize equals flipping before it, as the filters are symmetric.
//! 5. Repeat the grey plane into 3 channels and normalise each with `(x - mean[c]) / std[c]`.

use super::reduce::{reduce, reduction};
use super::{Grey, Laterality};
use fast_image_resize::images::{TypedCroppedImage, TypedImage, TypedImageRef};
use fast_image_resize::pixels::F32;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
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
    fn algorithm(self) -> ResizeAlg {
        match self {
            ResizeFilter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            ResizeFilter::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
            ResizeFilter::Nearest => ResizeAlg::Nearest,
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

/// The full-field steps a model was trained with (`mammo.preprocess`, comma-separated names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FullField {
    /// `crop_breast`: crop to the breast region, dropping empty detector area.
    pub crop_breast: bool,
    /// `orient_left`: flip so that the chest wall is on the left.
    pub orient_left: bool,
    /// `pad_square`: keep the aspect ratio, pad to a square.
    pub pad_square: bool,
}

impl FromStr for FullField {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut steps = FullField::default();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "crop_breast" => steps.crop_breast = true,
                "orient_left" => steps.orient_left = true,
                "pad_square" => steps.pad_square = true,
                other => {
                    return Err(format!(
                        "unknown step {other:?}; known: crop_breast, orient_left, pad_square"
                    ))
                }
            }
        }
        Ok(steps)
    }
}

impl FullField {
    /// The step names, in pipeline order.
    pub fn names(self) -> Vec<&'static str> {
        [
            (self.crop_breast, "crop_breast"),
            (self.orient_left, "orient_left"),
            (self.pad_square, "pad_square"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
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
    /// Full-field steps applied before the resize.
    pub steps: FullField,
}

impl Preprocessing {
    /// Number of floats in one image's tensor (3 × H × W).
    pub fn tensor_len(&self) -> usize {
        3 * self.height as usize * self.width as usize
    }
}

/// Grey level above which a pixel counts as tissue (after the grey mapping to [0, 1]).
const TISSUE: f32 = 0.1;
/// A row (column) belongs to the breast when more than 1/`MIN_RUN_SHARE` of it is tissue.
const MIN_RUN_SHARE: u64 = 50;

/// A rectangle of an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
}

impl Region {
    /// The whole of a `width` × `height` image.
    pub fn all(width: u32, height: u32) -> Self {
        Region {
            left: 0,
            top: 0,
            width,
            height,
        }
    }
}

/// [start, end) of the longest run of `true` (the first on ties).
fn longest_run(flags: impl Iterator<Item = bool>) -> Option<(usize, usize)> {
    let (mut best, mut start): (Option<(usize, usize)>, Option<usize>) = (None, None);
    for (i, flag) in flags.chain(std::iter::once(false)).enumerate() {
        match (flag, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if best.is_none_or(|(b0, b1)| i - s > b1 - b0) {
                    best = Some((s, i));
                }
                start = None;
            }
            _ => {}
        }
    }
    best
}

/// The breast box of a grey image: a pixel is tissue when its grey is above [`TISSUE`]; a row
/// (column) is breast when more than 1/50 of it is tissue; the box spans the longest unbroken
/// run of breast rows and of breast columns, which leaves out empty detector area and markers
/// separated from the breast by background. `None` when no row or column qualifies (an empty
/// image).
pub fn breast_box(grey: &Grey) -> Option<Region> {
    let (w, h) = (grey.width as usize, grey.height as usize);
    let (mut rows, mut cols) = (vec![0u64; h], vec![0u64; w]);
    for (count, row) in rows.iter_mut().zip(grey.pixels.chunks_exact(w)) {
        for (col, &v) in cols.iter_mut().zip(row) {
            let tissue = u64::from(v > TISSUE);
            *count += tissue;
            *col += tissue;
        }
    }
    let rows = longest_run(rows.iter().map(|&c| c * MIN_RUN_SHARE > w as u64))?;
    let cols = longest_run(cols.iter().map(|&c| c * MIN_RUN_SHARE > h as u64))?;
    Some(Region {
        left: cols.0 as u32,
        top: rows.0 as u32,
        width: (cols.1 - cols.0) as u32,
        height: (rows.1 - rows.0) as u32,
    })
}

/// Whether the chest wall is on the right of `region`: from the laterality when known (a right
/// breast is stored with its chest wall on the right, by DICOM convention), else when the
/// right half holds more tissue than the left half.
pub fn chest_wall_on_right(grey: &Grey, region: Region, laterality: Option<Laterality>) -> bool {
    match laterality {
        Some(Laterality::Right) => true,
        Some(Laterality::Left) => false,
        None => {
            let half = (region.width / 2) as usize;
            let (left, right) = (region.left as usize, (region.left + region.width) as usize);
            let tissue = |x0: usize, x1: usize| -> usize {
                (region.top..region.top + region.height)
                    .map(|y| grey.row(y)[x0..x1].iter().filter(|&&v| v > TISSUE).count())
                    .sum()
            };
            tissue(right - half, right) > tissue(left, left + half)
        }
    }
}

/// (height, width) of an h×w region scaled so that its longer side is `side`, rounded half up.
fn fit_size(height: u32, width: u32, side: u32) -> (u32, u32) {
    let longest = height.max(width) as u64;
    let scale = |n: u32| ((n as u64 * side as u64 + longest / 2) / longest).max(1) as u32;
    (scale(height), scale(width))
}

/// Resizes `region` of `grey` to width × height (copies when the sizes already match).
fn resize(grey: &Grey, region: Region, width: u32, height: u32, filter: ResizeFilter) -> Vec<f32> {
    let source = TypedImageRef::<F32>::from_buffer(
        grey.width,
        grey.height,
        bytemuck::cast_slice(&grey.pixels),
    )
    .expect("a Grey's buffer holds width × height pixels");
    let cropped = TypedCroppedImage::from_ref(
        &source,
        region.left,
        region.top,
        region.width,
        region.height,
    )
    .expect("the region lies inside the image");
    let mut out = TypedImage::<F32>::new(width, height);
    Resizer::new()
        .resize_typed(
            &cropped,
            &mut out,
            &ResizeOptions::new().resize_alg(filter.algorithm()),
        )
        .expect("grey f32 images of non-zero size resize");
    out.pixels().iter().map(|p| p.0).collect()
}

/// The height × width grey plane the model sees from an image already reduced ([`reduce`]):
/// the full-field steps and the resize.
pub fn model_plane(grey: &Grey, laterality: Option<Laterality>, p: &Preprocessing) -> Vec<f32> {
    let region = if p.steps.crop_breast {
        breast_box(grey).unwrap_or(Region::all(grey.width, grey.height))
    } else {
        Region::all(grey.width, grey.height)
    };
    let flip = p.steps.orient_left && chest_wall_on_right(grey, region, laterality);
    // Metadata refuses pad_square for a non-square input, so p.width == p.height here.
    let (h, w) = if p.steps.pad_square {
        fit_size(region.height, region.width, p.width)
    } else {
        (p.height, p.width)
    };
    let mut small = resize(grey, region, w, h, p.resize);
    if flip {
        small
            .chunks_exact_mut(w as usize)
            .for_each(<[f32]>::reverse);
    }
    if (h, w) == (p.height, p.width) {
        return small;
    }
    // Written row by row into an uninitialised buffer, not copied into a zeroed one: the
    // allocator hands out a zeroed buffer of this size as fresh pages, and faulting them in on
    // every request cost more than the preprocessing around it (docs/benchmarks.md).
    let (width, len) = (p.width as usize, (p.width * p.height) as usize);
    let mut canvas = Vec::with_capacity(len);
    canvas.resize(((p.height - h) / 2) as usize * width, 0.0);
    for row in small.chunks_exact(w as usize) {
        canvas.extend_from_slice(row);
        canvas.resize(canvas.len() + width - row.len(), 0.0);
    }
    canvas.resize(len, 0.0);
    canvas
}

/// The plane the model sees from a grey image at full resolution: reduced by [`reduction`],
/// then [`model_plane`].
pub fn plane(grey: &Grey, laterality: Option<Laterality>, p: &Preprocessing) -> Vec<f32> {
    match reduction(grey.width, grey.height, p) {
        1 => model_plane(grey, laterality, p),
        k => model_plane(&reduce(grey, k), laterality, p),
    }
}

/// Turns a grey image into the model's input tensor, CHW, `3 * H * W` floats: [`plane`], then
/// [`normalise`].
pub fn preprocess(grey: &Grey, laterality: Option<Laterality>, p: &Preprocessing) -> Vec<f32> {
    normalise(&plane(grey, laterality, p), p)
}

/// The model's plane repeated into 3 channels, each normalised with `(x - mean[c]) / std[c]`.
pub fn normalise(plane: &[f32], p: &Preprocessing) -> Vec<f32> {
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

    fn prep(size: u32) -> Preprocessing {
        Preprocessing {
            height: size,
            width: size,
            mean: [0.5, 0.25, 0.0],
            std: [0.5, 0.25, 1.0],
            resize: ResizeFilter::Bilinear,
            steps: FullField::default(),
        }
    }

    #[test]
    fn grey_is_repeated_and_normalised_per_channel() {
        let img = Grey::from_fn(4, 4, |x, _| if x < 2 { 0.0 } else { 1.0 });
        let t = preprocess(&img, None, &prep(4));
        assert_eq!(t.len(), 48);
        assert_eq!(t[0], -1.0); // (0 - 0.5) / 0.5
        assert_eq!(t[3], 1.0); // (1 - 0.5) / 0.5
        assert_eq!(t[16], -1.0); // (0 - 0.25) / 0.25
        assert_eq!(t[16 + 3], 3.0); // (1 - 0.25) / 0.25
        assert_eq!(t[32 + 3], 1.0); // (1 - 0) / 1
    }

    #[test]
    fn resizes_to_the_model_input() {
        let img = Grey::from_fn(300, 500, |_, _| 0.5);
        let p = Preprocessing {
            height: 20,
            width: 10,
            ..prep(0)
        };
        let t = preprocess(&img, None, &p);
        assert_eq!(t.len(), 3 * 20 * 10);
        assert!(t.iter().take(200).all(|v| v.abs() < 1e-5), "(0.5-0.5)/0.5");
    }

    #[test]
    fn breast_box_keeps_the_longest_runs_and_drops_a_separate_marker() {
        // Breast: columns 10..60, rows 20..90 of a 100×120 image; a marker at columns 80..90,
        // rows 5..10 is cut off from it by background.
        let img = Grey::from_fn(100, 120, |x, y| {
            let breast = (10..60).contains(&x) && (20..90).contains(&y);
            let marker = (80..90).contains(&x) && (5..10).contains(&y);
            if breast || marker {
                0.8
            } else {
                0.02
            }
        });
        let region = breast_box(&img).unwrap();
        assert_eq!(
            region,
            Region {
                left: 10,
                top: 20,
                width: 50,
                height: 70
            }
        );
        assert_eq!(breast_box(&Grey::from_fn(50, 50, |_, _| 0.05)), None);
    }

    #[test]
    fn orientation_follows_laterality_then_tissue() {
        let img = Grey::from_fn(40, 20, |x, _| if x >= 30 { 0.9 } else { 0.0 });
        let all = Region::all(img.width, img.height);
        assert!(chest_wall_on_right(&img, all, None));
        assert!(!chest_wall_on_right(&img, all, Some(Laterality::Left)));
        assert!(chest_wall_on_right(&img, all, Some(Laterality::Right)));
    }

    #[test]
    fn full_field_crops_flips_and_pads_a_tall_breast_to_the_left() {
        // A bright 40×80 block on the right of a 200×100 black image.
        let img = Grey::from_fn(200, 100, |x, y| {
            if (150..190).contains(&x) && (10..90).contains(&y) {
                1.0
            } else {
                0.0
            }
        });
        let p = Preprocessing {
            steps: "crop_breast,orient_left,pad_square".parse().unwrap(),
            mean: [0.0; 3],
            std: [1.0; 3],
            ..prep(8)
        };
        let plane = model_plane(&img, None, &p);
        // 80 tall × 40 wide → 8 × 4, placed against the left edge; the rest is black.
        for y in 0..8 {
            let row = &plane[y * 8..y * 8 + 8];
            assert!(row[..4].iter().all(|&v| (v - 1.0).abs() < 1e-5), "{row:?}");
            assert!(row[4..].iter().all(|&v| v == 0.0), "{row:?}");
        }
    }

    #[test]
    fn wide_images_are_centred_vertically() {
        let img = Grey::from_fn(80, 40, |_, _| 1.0);
        let p = Preprocessing {
            steps: "pad_square".parse().unwrap(),
            mean: [0.0; 3],
            std: [1.0; 3],
            ..prep(8)
        };
        let plane = model_plane(&img, None, &p);
        let rows: Vec<f32> = plane.chunks(8).map(|r| r[0]).collect();
        assert_eq!(rows, [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn step_and_filter_names_round_trip() {
        let all: FullField = "pad_square, crop_breast,orient_left".parse().unwrap();
        assert_eq!(all.names(), ["crop_breast", "orient_left", "pad_square"]);
        assert_eq!("".parse::<FullField>().unwrap(), FullField::default());
        assert!("rotate".parse::<FullField>().is_err());
        for f in [
            ResizeFilter::Bilinear,
            ResizeFilter::Bicubic,
            ResizeFilter::Nearest,
        ] {
            assert_eq!(f.name().parse::<ResizeFilter>().unwrap(), f);
        }
        assert!("lanczos".parse::<ResizeFilter>().is_err());
        assert_eq!(fit_size(4084, 3328, 224), (224, 183));
        assert_eq!(fit_size(100, 300, 224), (75, 224));
    }
}
