//! Painting results: a segmentation's colour per label over the photo with a legend beneath it,
//! label names written on their regions, boxes with their labels and scores, and the groups view.

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

use crate::detect::{BoundingBox, Detection};
use crate::groups::StageGroups;
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
    draw_text_at_scale(img, x, y, text, colour, SCALE);
}

fn draw_text_at_scale(img: &mut RgbImage, x: u32, y: u32, text: &str, colour: [u8; 3], scale: u32) {
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
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (cx + gx * scale + dx, y + gy as u32 * scale + dy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, Rgb(colour));
                        }
                    }
                }
            }
        }
        cx += 8 * scale;
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

/// Glyph scale for text written on a photo: small photos get 8-pixel letters, others 16.
fn text_scale(photo_width: u32) -> u32 {
    if photo_width < 400 {
        1
    } else {
        SCALE
    }
}

/// `text` in white on a dark plate whose top-left corner is near `(x, y)`, moved inside the image.
fn label_plate(img: &mut RgbImage, x: u32, y: u32, text: &str, plate: [u8; 3], scale: u32) {
    let (tw, th) = (text.chars().count() as u32 * 8 * scale + 4, 8 * scale + 4);
    let x = x.min(img.width().saturating_sub(tw));
    let y = y.min(img.height().saturating_sub(th));
    for py in y..(y + th).min(img.height()) {
        for px in x..(x + tw).min(img.width()) {
            img.put_pixel(px, py, Rgb(plate));
        }
    }
    draw_text_at_scale(img, x + 2, y + 2, text, [255, 255, 255], scale);
}

/// Darkened for a text plate, so white letters stay readable on light colours.
fn darker(c: [u8; 3]) -> [u8; 3] {
    c.map(|v| (v as f32 * 0.55) as u8)
}

/// Each region's label written at its middle (NVlabs' `input_pred_label`), over `img`: the photo
/// or its overlay, whose legend rows below the photo keep clear of the names.
pub fn write_names(img: &mut RgbImage, photo_width: u32, regions: &[Detection]) {
    let scale = text_scale(photo_width);
    for d in regions {
        let (x, y) = d.anchor;
        let half = d.label.chars().count() as u32 * 4 * scale;
        let plate = darker(class_colour(d.class));
        label_plate(img, x.saturating_sub(half), y.saturating_sub(4 * scale), &d.label, plate, scale);
    }
}

fn draw_rect(img: &mut RgbImage, b: &BoundingBox, colour: [u8; 3], thickness: u32) {
    let (w, h) = (img.width(), img.height());
    for t in 0..thickness {
        let (x0, y0) = ((b.xmin + t).min(w - 1), (b.ymin + t).min(h - 1));
        let (x1, y1) = (b.xmax.saturating_sub(1 + t).min(w - 1), b.ymax.saturating_sub(1 + t).min(h - 1));
        for x in x0.min(x1)..=x1.max(x0) {
            img.put_pixel(x, y0, Rgb(colour));
            img.put_pixel(x, y1, Rgb(colour));
        }
        for y in y0.min(y1)..=y1.max(y0) {
            img.put_pixel(x0, y, Rgb(colour));
            img.put_pixel(x1, y, Rgb(colour));
        }
    }
}

/// A box to draw: where, what to write on it, and the class whose colour it takes.
pub struct LabelledBox {
    pub bounds: BoundingBox,
    pub text: String,
    pub class: usize,
}

/// The photo with each box outlined in its class's colour and its text on a plate at its top.
pub fn boxes(photo: &RgbImage, items: &[LabelledBox]) -> RgbImage {
    let mut out = photo.clone();
    if out.width() == 0 || out.height() == 0 {
        return out;
    }
    let thickness = (photo.width().max(photo.height()) / 200).max(1);
    for b in items {
        draw_rect(&mut out, &b.bounds, class_colour(b.class), thickness);
    }
    // Plates after every outline, so no outline crosses a text.
    let scale = text_scale(photo.width());
    for b in items {
        let above = b.bounds.ymin.saturating_sub(8 * scale + 4);
        label_plate(&mut out, b.bounds.xmin, above, &b.text, darker(class_colour(b.class)), scale);
    }
    out
}

/// A colour for group `id`: distinct for neighbouring ids, stable across stages and photos.
pub fn group_colour(id: u32) -> [u8; 3] {
    // The golden angle around the hue circle, at two lightnesses.
    let hue = (id as f32 * 137.507_77) % 360.0;
    let (s, v) = if id % 2 == 0 { (0.75, 0.95) } else { (0.9, 0.7) };
    let c = v * s;
    let x = c * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match (hue / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r, g, b].map(|u| ((u + m) * 255.0).round() as u8)
}

/// One grouping block's groups over the photo: each group tinted its own colour, boundaries
/// between groups drawn white (NVlabs' `first_group` / `final_group`).
pub fn groups(photo: &RgbImage, stage: &StageGroups) -> RgbImage {
    let (w, h) = (photo.width(), photo.height());
    let id = |x: u32, y: u32| stage.map[(y * w + x) as usize];
    RgbImage::from_fn(w, h, |x, y| {
        let g = id(x, y);
        let edge = (x + 1 < w && id(x + 1, y) != g) || (y + 1 < h && id(x, y + 1) != g);
        if edge {
            return Rgb([255, 255, 255]);
        }
        let c = group_colour(g);
        let p = photo.get_pixel(x, y).0;
        Rgb([0, 1, 2].map(|i| (p[i] as f32 * 0.4 + c[i] as f32 * 0.6).round() as u8))
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
    fn boxes_are_outlined_in_their_class_colour_with_a_plate() {
        let photo = RgbImage::from_pixel(100, 80, Rgb([20, 20, 20]));
        let b = BoundingBox { xmin: 10, ymin: 30, xmax: 60, ymax: 70 };
        let out = boxes(&photo, &[LabelledBox { bounds: b, text: "cat 0.91".into(), class: 1 }]);
        // The bottom edge's last row and the right edge's last column, inside the box.
        assert_eq!(out.get_pixel(35, 69).0, class_colour(1));
        assert_eq!(out.get_pixel(59, 50).0, class_colour(1));
        assert_eq!(out.get_pixel(35, 50).0, [20, 20, 20], "inside is left alone");
        // The plate sits above the box, with white letters on it.
        let plate = (10..76).flat_map(|x| (18..30).map(move |y| (x, y)));
        assert!(plate.clone().any(|(x, y)| out.get_pixel(x, y).0 == [255, 255, 255]));
    }

    #[test]
    fn group_boundaries_are_white_and_groups_differ_in_colour() {
        let photo = RgbImage::from_pixel(4, 2, Rgb([0, 0, 0]));
        let stage = StageGroups { groups_per_window: 2, map: vec![0, 0, 1, 1, 0, 0, 1, 1] };
        let out = groups(&photo, &stage);
        assert_eq!(out.get_pixel(1, 0).0, [255, 255, 255]);
        assert_ne!(out.get_pixel(0, 0).0, out.get_pixel(3, 0).0);
        assert_ne!(group_colour(0), group_colour(1));
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
