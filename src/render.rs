//! Painting a segmentation: a colour per label over the photo, and a legend beneath it.

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

use crate::segment::Segmentation;

/// Distinct, saturated colours for labels (background is never painted).
const PALETTE: [[u8; 3]; 12] = [
    [230, 25, 75],
    [60, 180, 75],
    [0, 130, 200],
    [255, 225, 25],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [0, 128, 128],
    [170, 110, 40],
    [128, 0, 0],
];

/// Colour of class `k` (0 is background, drawn grey in the legend).
pub fn class_colour(k: usize) -> [u8; 3] {
    if k == 0 {
        [128, 128, 128]
    } else {
        PALETTE[(k - 1) % PALETTE.len()]
    }
}

const SCALE: u32 = 2;
const GLYPH: u32 = 8 * SCALE;
const ROW: u32 = GLYPH + 8;
/// The widest an overlay grows for its legend (pixels).
const MAX_LEGEND_WIDTH: u32 = 2048;

fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, colour: [u8; 3]) {
    let mut cx = x;
    for ch in text.chars() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::LATIN_FONTS.get(ch))
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..8u32 {
                if bits & (1 << gx) == 0 {
                    continue;
                }
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        let (px, py) = (cx + gx * SCALE + dx, y + gy as u32 * SCALE + dy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, Rgb(colour));
                        }
                    }
                }
            }
        }
        cx += GLYPH;
    }
}

/// The photo with each label's pixels tinted (`opacity` 0–1) and a legend below listing every
/// class present with its share of the photo and mean score.
pub fn overlay(photo: &RgbImage, seg: &Segmentation, opacity: f32) -> RgbImage {
    let present: Vec<usize> = (0..seg.classes.len()).filter(|&k| seg.summary[k].share > 0.0).collect();
    let texts: Vec<String> = present
        .iter()
        .map(|&k| {
            let s = &seg.summary[k];
            format!("{}  {:.1}%  score {:.2}", s.label, s.share * 100.0, s.mean_score)
        })
        .collect();
    let legend_h = 8 + ROW * present.len() as u32;
    // Wide enough for the longest legend line (a very long label is cut at MAX_LEGEND_WIDTH).
    let longest = texts.iter().map(|t| t.chars().count() as u32).max().unwrap_or(0);
    let width = photo.width().max((3 * 8 + GLYPH + longest * GLYPH).min(MAX_LEGEND_WIDTH));
    let mut out = RgbImage::from_pixel(width, photo.height() + legend_h, Rgb([255, 255, 255]));
    let a = opacity.clamp(0.0, 1.0);
    for (x, y, px) in photo.enumerate_pixels() {
        let k = seg.label_map[(y * seg.width + x) as usize] as usize;
        let p = if k == 0 {
            px.0
        } else {
            let c = class_colour(k);
            [0, 1, 2].map(|i| (px.0[i] as f32 * (1.0 - a) + c[i] as f32 * a).round() as u8)
        };
        out.put_pixel(x, y, Rgb(p));
    }
    for (row, (&k, text)) in present.iter().zip(&texts).enumerate() {
        let y = photo.height() + 8 + row as u32 * ROW;
        for dy in 0..GLYPH {
            for dx in 0..GLYPH {
                out.put_pixel(8 + dx, y + dy, Rgb(class_colour(k)));
            }
        }
        draw_text(&mut out, 8 + GLYPH + 8, y, text, [0, 0, 0]);
    }
    out
}

/// The label map as a colour image (one colour per class), for masks users download.
pub fn mask(seg: &Segmentation) -> RgbImage {
    RgbImage::from_fn(seg.width, seg.height, |x, y| {
        Rgb(class_colour(seg.label_map[(y * seg.width + x) as usize] as usize))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::ClassSummary;

    fn half_and_half(label: &str) -> Segmentation {
        let summary = |label: &str| ClassSummary { label: label.into(), share: 0.5, mean_score: 0.9, bbox: None };
        Segmentation {
            width: 64,
            height: 64,
            classes: vec!["background".into(), label.into()],
            label_map: (0..64 * 64).map(|i| u16::from(i % 64 >= 32)).collect(),
            scores: vec![0.9; 64 * 64],
            summary: vec![summary("background"), summary(label)],
        }
    }

    #[test]
    fn the_legend_fits_its_longest_line() {
        let photo = RgbImage::new(64, 64);
        let out = overlay(&photo, &half_and_half("orange circle"), 0.5);
        // "orange circle  50.0%  score 0.90": 32 glyphs after the swatch.
        assert_eq!(out.width(), 3 * 8 + GLYPH + 32 * GLYPH);
        let last_glyph = (out.width() - 8 - GLYPH)..(out.width() - 8);
        let row = 64 + 8 + ROW;
        let inked = last_glyph.flat_map(|x| (row..row + GLYPH).map(move |y| (x, y))).any(|(x, y)| out.get_pixel(x, y).0 == [0, 0, 0]);
        assert!(inked, "the last character of the legend is drawn inside the image");
        assert_eq!(overlay(&photo, &half_and_half(&"x".repeat(10_000)), 0.5).width(), MAX_LEGEND_WIDTH);
    }
}
