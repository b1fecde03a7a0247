//! Pillow's `Image.resize` for 8-bit RGB, reproduced exactly: transformers' image processors resize
//! with Pillow, and the classification input should be the same pixels, not merely similar ones.
//! Port of Pillow's `Resample.c` (`precompute_coeffs`, 22-bit fixed-point coefficients, horizontal
//! pass into a clipped 8-bit image, then the vertical pass).

use image::RgbImage;

/// Pillow's resampling filters, read from their `resample` code in `preprocessor_config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "u32")]
pub enum Filter {
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl TryFrom<u32> for Filter {
    type Error = String;

    /// Pillow's codes: 1 Lanczos, 2 bilinear, 3 bicubic, 4 box, 5 Hamming (0, nearest, is not a
    /// convolution and is served by bilinear's neighbour, box, at scale 1).
    fn try_from(code: u32) -> Result<Self, String> {
        match code {
            0 | 4 => Ok(Filter::Box),
            1 => Ok(Filter::Lanczos),
            2 => Ok(Filter::Bilinear),
            3 => Ok(Filter::Bicubic),
            5 => Ok(Filter::Hamming),
            _ => Err(format!("unknown resample filter {code} (Pillow's codes are 0 to 5)")),
        }
    }
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let sinc = |x: f64| if x == 0.0 { 1.0 } else { (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x) };
        match self {
            Filter::Box => {
                if (-0.5..0.5).contains(&x) {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => (1.0 - x.abs()).max(0.0),
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    sinc(x) * (0.54 + 0.46 * (std::f64::consts::PI * x).cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// For each output index: first input index and fixed-point weights.
fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as isize).max(0) as usize;
            let xmax = ((center + support + 0.5) as isize).min(in_size as isize) as usize;
            let w: Vec<f64> = (xmin..xmax).map(|x| filter.weight((x as f64 - center + 0.5) * ss)).collect();
            let total: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&k| {
                    let k = if total != 0.0 { k / total } else { k };
                    let v = k * (1u32 << PRECISION_BITS) as f64;
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `Image.resize((width, height), resample=filter)` of an RGB image.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = (width as usize, height as usize);
    let src = img.as_raw();
    let round = 1i32 << (PRECISION_BITS - 1);
    // Pillow skips a pass whose size does not change.
    let horizontal = if ow != w {
        let taps = coefficients(w, ow, filter);
        let mut out = vec![0u8; ow * h * 3];
        for y in 0..h {
            for (x, (xmin, k)) in taps.iter().enumerate() {
                for c in 0..3 {
                    let mut ss = round;
                    for (i, &kk) in k.iter().enumerate() {
                        ss += src[(y * w + xmin + i) * 3 + c] as i32 * kk;
                    }
                    out[(y * ow + x) * 3 + c] = clip8(ss);
                }
            }
        }
        out
    } else {
        src.to_vec()
    };
    let vertical = if oh != h {
        let taps = coefficients(h, oh, filter);
        let mut out = vec![0u8; ow * oh * 3];
        for (y, (ymin, k)) in taps.iter().enumerate() {
            for x in 0..ow * 3 {
                let mut ss = round;
                for (i, &kk) in k.iter().enumerate() {
                    ss += horizontal[(ymin + i) * ow * 3 + x] as i32 * kk;
                }
                out[y * ow * 3 + x] = clip8(ss);
            }
        }
        out
    } else {
        horizontal
    };
    RgbImage::from_raw(width, height, vertical).unwrap_or_else(|| RgbImage::new(width, height))
}
