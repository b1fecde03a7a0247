//! Photos to model inputs: decoding (EXIF orientation applied, any colour type to RGB), the
//! checkpoint's classification transform, and the segmentation resize of the official evaluation.

use std::io::Cursor;

use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::pil_resize;
use crate::refine::Guide;

/// `preprocessor_config.json` (CLIP image processor); defaults are those of the GroupViT checkpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PreprocessorConfig {
    pub do_resize: bool,
    pub size: Size,
    pub do_center_crop: bool,
    pub crop_size: Size,
    pub do_rescale: bool,
    pub rescale_factor: f32,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    /// Pillow's filter for resizing (code 3: bicubic).
    pub resample: pil_resize::Filter,
}

/// transformers writes sizes as a number, `{"shortest_edge": n}` or `{"height": h, "width": w}`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Square(u32),
    ShortestEdge { shortest_edge: u32 },
    Exact { height: u32, width: u32 },
}

impl Default for PreprocessorConfig {
    fn default() -> Self {
        Self {
            do_resize: true,
            size: Size::ShortestEdge { shortest_edge: 224 },
            do_center_crop: true,
            crop_size: Size::Exact { height: 224, width: 224 },
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.485, 0.456, 0.406],
            image_std: [0.229, 0.224, 0.225],
            resample: pil_resize::Filter::Bicubic,
        }
    }
}

impl PreprocessorConfig {
    pub fn from_json(json: &str) -> Result<Self> {
        let cfg: Self =
            serde_json::from_str(json).map_err(|e| Error::Config(format!("preprocessor_config.json: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses sizes that would allocate without bound (the classification input is resized to
    /// them) and a normalisation that would turn every pixel into NaN or infinity (the filter code
    /// is checked as it is read).
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("preprocessor_config.json: {m}")));
        for (name, size) in [("size", self.size), ("crop_size", self.crop_size)] {
            let sides = match size {
                Size::Square(s) | Size::ShortestEdge { shortest_edge: s } => [s, s],
                Size::Exact { height, width } => [height, width],
            };
            if sides.iter().any(|&s| s == 0 || s > MAX_CLASSIFICATION_SIDE) {
                return bad(format!("{name} must be 1 to {MAX_CLASSIFICATION_SIDE} pixels (got {size:?})"));
            }
        }
        if !self.rescale_factor.is_finite() || !self.image_mean.iter().all(|m| m.is_finite()) {
            return bad("rescale_factor and image_mean must be finite numbers".into());
        }
        if !self.image_std.iter().all(|s| s.is_finite() && *s > 0.0) {
            return bad(format!("image_std must be positive (got {:?})", self.image_std));
        }
        Ok(())
    }
}

/// How the official evaluation sizes a photo for segmentation (mmseg `Resize` with `keep_ratio`,
/// `img_scale=(2048, 448)`): the short side to 448 unless that pushes the long side past 2048.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentationSize {
    pub short_side: u32,
    pub max_long_side: u32,
}

impl Default for SegmentationSize {
    fn default() -> Self {
        Self { short_side: 448, max_long_side: 2048 }
    }
}

impl SegmentationSize {
    /// Output size `(width, height)` for a photo of `w × h`.
    pub fn fit(&self, w: u32, h: u32) -> (u32, u32) {
        let (short, long) = (w.min(h) as f64, w.max(h) as f64);
        let scale = (self.short_side as f64 / short).min(self.max_long_side as f64 / long);
        // mmcv's `rescale_size`: int(x * scale + 0.5).
        let r = |x: u32| ((x as f64 * scale + 0.5) as u32).max(1);
        (r(w), r(h))
    }
}

/// The most pixels a photo may have (50 megapixels: every phone camera's default output fits).
/// Memory grows with the photo only through its decoded pixels, label map and overlay, about 20
/// bytes a pixel at the peak, so this bounds a photo's memory at about 1 GB.
pub const PIXEL_BUDGET: u64 = 50_000_000;

/// The largest side a checkpoint's classification input may ask for (theirs are 224).
pub const MAX_CLASSIFICATION_SIDE: u32 = 4096;

/// The largest photo file read (bytes).
pub const MAX_PHOTO_BYTES: u64 = 256 << 20;

/// The decoder's own allocations at most (a 50-megapixel RGBA 16-bit frame, plus the decoders'
/// working buffers).
const MAX_DECODER_ALLOC: u64 = 8 * PIXEL_BUDGET + (64 << 20);

/// Decodes JPEG, PNG, WebP, GIF (first frame) or BMP; applies EXIF orientation; returns 8-bit RGB.
/// The size in the file's header is checked against [`PIXEL_BUDGET`] before anything is allocated.
pub fn decode(bytes: &[u8]) -> Result<RgbImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Image(e.to_string()))?;
    if reader.format().is_none() {
        return Err(Error::Image("not a JPEG, PNG, WebP, GIF or BMP file".into()));
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODER_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (w, h) = decoder.dimensions();
    check_pixel_budget(w, h)?;
    let orientation = decoder.orientation().map_err(decode_error)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    img.apply_orientation(orientation);
    // Alpha is dropped (as PIL's convert("RGB") does); greyscale and 16-bit become 8-bit RGB.
    Ok(img.to_rgb8())
}

/// The decoder's error in words; its memory limit (some formats check it on reading the header)
/// is the pixel budget's.
fn decode_error(e: image::ImageError) -> Error {
    match e {
        image::ImageError::Limits(_) => Error::Image(format!(
            "the photo is larger than groupseg decodes ({} megapixels at most): downscale it first",
            PIXEL_BUDGET / 1_000_000
        )),
        e => Error::Image(e.to_string()),
    }
}

/// Refuses a photo of more than [`PIXEL_BUDGET`] pixels (or of none).
pub fn check_pixel_budget(width: u32, height: u32) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err(Error::Image(format!("the photo is {width}×{height}: it has no pixels")));
    }
    if pixels > PIXEL_BUDGET {
        return Err(Error::Image(format!(
            "the photo is {width}×{height} ({:.0} megapixels); groupseg reads at most {} megapixels: downscale it first",
            pixels as f64 / 1e6,
            PIXEL_BUDGET / 1_000_000
        )));
    }
    Ok(())
}

/// A photo from raw RGBA pixels (a canvas's `ImageData`), alpha dropped as in [`decode`].
pub fn from_rgba(rgba: &[u8], width: u32, height: u32) -> Result<RgbImage> {
    check_pixel_budget(width, height)?;
    let want = width as usize * height as usize * 4;
    if width == 0 || height == 0 || rgba.len() != want {
        return Err(Error::Image(format!(
            "{} bytes are not the RGBA pixels of a {width}×{height} image ({want} bytes)",
            rgba.len()
        )));
    }
    let rgb = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    RgbImage::from_raw(width, height, rgb).ok_or_else(|| Error::Image("the pixels do not fill the image".into()))
}

/// `(1, 3, H, W)` f32 tensor of `img` rescaled and normalised.
pub fn to_tensor(img: &RgbImage, cfg: &PreprocessorConfig, device: &Device) -> Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok(Tensor::from_vec(normalised_planes(img, cfg), (1, 3, h, w), device)?)
}

/// The photo's colours on a refinement grid of `(h, w)` (see [`crate::refine::grid_size`]),
/// resized as Pillow's antialiased bilinear filter does and normalised as the model's input.
pub fn refinement_guide(img: &RgbImage, cfg: &PreprocessorConfig, (h, w): (usize, usize), scale: f32) -> Guide {
    let resized = pil_resize::resize(img, w as u32, h as u32, pil_resize::Filter::Bilinear);
    Guide { size: (h, w), scale, pixels: normalised_planes(&resized, cfg) }
}

/// Three planes of `img`'s pixels, rescaled and normalised.
fn normalised_planes(img: &RgbImage, cfg: &PreprocessorConfig) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0f32; 3 * w * h];
    let rescale = if cfg.do_rescale { cfg.rescale_factor } else { 1.0 };
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            let mut v = px.0[c] as f32 * rescale;
            if cfg.do_normalize {
                v = (v - cfg.image_mean[c]) / cfg.image_std[c];
            }
            data[c * w * h + i] = v;
        }
    }
    data
}

/// The checkpoint's classification transform: bicubic resize of the short side, centre crop.
/// The resize is Pillow's, as in transformers' processors, so the pixels are the same.
pub fn classification_input(img: &RgbImage, cfg: &PreprocessorConfig, device: &Device) -> Result<Tensor> {
    let mut img = img.clone();
    if cfg.do_resize {
        let (w, h) = (img.width(), img.height());
        let (nw, nh) = match cfg.size {
            Size::Square(s) | Size::ShortestEdge { shortest_edge: s } => {
                let scale = s as f64 / w.min(h) as f64;
                if w <= h {
                    (s, ((h as f64 * scale) as u32).max(s))
                } else {
                    (((w as f64 * scale) as u32).max(s), s)
                }
            }
            Size::Exact { height, width } => (width, height),
        };
        // A very narrow photo's long side grows with the short side's scale.
        if u64::from(nw) * u64::from(nh) > PIXEL_BUDGET {
            return Err(Error::Image(format!(
                "classifying this {w}×{h} photo would resize it to {nw}×{nh}, over {} megapixels: crop it closer to square first",
                PIXEL_BUDGET / 1_000_000
            )));
        }
        img = pil_resize::resize(&img, nw, nh, cfg.resample);
    }
    if cfg.do_center_crop {
        let (cw, ch) = match cfg.crop_size {
            Size::Square(s) | Size::ShortestEdge { shortest_edge: s } => (s, s),
            Size::Exact { height, width } => (width, height),
        };
        let (cw, ch) = (cw.min(img.width()), ch.min(img.height()));
        let x = (img.width() - cw) / 2;
        let y = (img.height() - ch) / 2;
        img = image::imageops::crop_imm(&img, x, y, cw, ch).to_image();
    }
    to_tensor(&img, cfg, device)
}

/// The segmentation input: the photo resized bilinearly to `size`, aspect ratio kept, normalised.
pub fn segmentation_input(
    img: &RgbImage,
    cfg: &PreprocessorConfig,
    size: &SegmentationSize,
    device: &Device,
) -> Result<Tensor> {
    let (w, h) = size.fit(img.width(), img.height());
    let resized = image::imageops::resize(img, w, h, FilterType::Triangle);
    to_tensor(&resized, cfg, device)
}
