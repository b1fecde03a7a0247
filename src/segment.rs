//! From group assignment to a label per pixel, as NVlabs' `GroupViTSegInference` does it:
//! soft grouping maps multiplied across stages and resized bilinearly, the argmax group per pixel,
//! each group labelled by its affinity to the label embeddings (scale capped at 100, only the image's
//! top-5 labels allowed), background where the best score stays under a threshold, and 448-pixel
//! windows at stride 224 averaged over the photo.

use candle_core::{IndexOp, Tensor};

use crate::error::{Error, Result};
use crate::model::{chain_assignments, l2_normalize, ImageFeatures};
use crate::preprocess::SegmentationSize;
use crate::resample;

/// Name of class 0 in every segmentation.
pub const BACKGROUND: &str = "background";

/// Knobs of the official inference, with its defaults.
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    pub size: SegmentationSize,
    /// Side of the square sliding window, in pixels of the resized photo.
    pub window: usize,
    pub stride: usize,
    /// A pixel whose best label scores under this is background; `None` labels every pixel.
    pub background_threshold: Option<f32>,
    /// Only the labels that rank in the top `top_k` for the whole window may label its groups.
    pub top_k: usize,
    /// Ceiling of the contrastive temperature, as in the official evaluation.
    pub max_logit_scale: f32,
}

/// Segmentation settings given in part (a model's config `segmentation` section, the CLI's flags,
/// the JS options), laid over others by [`SegmentOptions::with`].
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct SegmentOverrides {
    pub short_side: Option<u32>,
    pub window: Option<usize>,
    pub stride: Option<usize>,
    /// A negative threshold means no background class.
    pub background_threshold: Option<f32>,
}

impl SegmentOptions {
    /// The official geometry scaled to a model trained on `image_size` pixels: photos and windows at
    /// twice the training size, windows overlapping by half (448 / 448 / 224 for GroupViT's 224).
    pub fn for_image_size(image_size: usize) -> Self {
        Self {
            size: SegmentationSize { short_side: 2 * image_size as u32, ..Default::default() },
            window: 2 * image_size,
            stride: image_size,
            background_threshold: Some(0.95),
            top_k: 5,
            max_logit_scale: 100.0,
        }
    }
}

impl SegmentOptions {
    /// These options with what `o` gives in place of theirs.
    pub fn with(&self, o: &SegmentOverrides) -> Result<Self> {
        if o.short_side == Some(0) || o.window == Some(0) || o.stride == Some(0) {
            return Err(Error::InvalidInput("the short side, window and stride must be positive".into()));
        }
        let mut opts = self.clone();
        if let Some(s) = o.short_side {
            opts.size.short_side = s;
        }
        opts.window = o.window.unwrap_or(opts.window);
        opts.stride = o.stride.unwrap_or(opts.stride);
        if let Some(t) = o.background_threshold {
            opts.background_threshold = (t >= 0.0).then_some(t);
        }
        Ok(opts)
    }
}

impl Default for SegmentOptions {
    /// The official settings, for the published checkpoints (trained at 224).
    fn default() -> Self {
        Self::for_image_size(224)
    }
}

/// One class's part of a segmentation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassSummary {
    pub label: String,
    /// Fraction of the photo's pixels.
    pub share: f32,
    /// Mean score (0–1) of the class over its pixels.
    pub mean_score: f32,
    /// Bounding box `[x0, y0, x1, y1]` (exclusive ends) of its pixels, if it has any.
    pub bbox: Option<[u32; 4]>,
}

/// A label per pixel of the photo, at the photo's own resolution.
#[derive(Debug, Clone)]
pub struct Segmentation {
    pub width: u32,
    pub height: u32,
    /// `classes[0]` is background; `classes[i]` is the i-th label.
    pub classes: Vec<String>,
    /// Row-major class index per pixel.
    pub label_map: Vec<u16>,
    /// Score of the winning class per pixel.
    pub scores: Vec<f32>,
    pub summary: Vec<ClassSummary>,
}

/// The windows `(y, x)` mmseg's `slide_inference` visits, and the window's size.
pub fn windows(h: usize, w: usize, window: usize, stride: usize) -> (Vec<(usize, usize)>, (usize, usize)) {
    let (ch, cw) = (window.min(h), window.min(w));
    let grids = |len: usize, crop: usize| (len.saturating_sub(crop) + stride - 1) / stride + 1;
    let mut out = Vec::new();
    for gy in 0..grids(h, ch) {
        for gx in 0..grids(w, cw) {
            let y2 = (gy * stride + ch).min(h);
            let x2 = (gx * stride + cw).min(w);
            out.push((y2 - ch, x2 - cw));
        }
    }
    (out, (ch, cw))
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// `group_affinity_mat` of the official inference, `(G, C)` row-major, with C: softmax over the
/// top-k labels times softmax over all labels.
pub fn group_affinity(
    group_embeds: &Tensor,
    image_embed: &Tensor,
    labels: &Tensor,
    scale: f32,
    top_k: usize,
) -> Result<(Vec<f32>, usize)> {
    let groups = (l2_normalize(group_embeds)?.matmul(&labels.t()?)? * scale as f64)?;
    let c = groups.dim(1)?;
    let mut whole = (l2_normalize(&image_embed.unsqueeze(0)?)?.matmul(&labels.t()?)? * scale as f64)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    softmax(&mut whole);
    let mut order: Vec<usize> = (0..c).collect();
    order.sort_by(|&a, &b| whole[b].total_cmp(&whole[a]));
    let mut allowed = vec![false; c];
    for &i in order.iter().take(top_k.clamp(1, c)) {
        allowed[i] = true;
    }
    let mut affinity = groups.flatten_all()?.to_vec1::<f32>()?;
    for row in affinity.chunks_mut(c) {
        let mut all = row.to_vec();
        softmax(&mut all);
        for (v, &ok) in row.iter_mut().zip(&allowed) {
            if !ok {
                *v = f32::NEG_INFINITY;
            }
        }
        softmax(row);
        for (v, a) in row.iter_mut().zip(all) {
            *v *= a;
        }
    }
    Ok((affinity, c))
}

/// Class scores `(C + 1, h, w)` of one window, class 0 being background.
fn window_scores(
    features: &ImageFeatures,
    index: usize,
    labels: &Tensor,
    scale: f32,
    opts: &SegmentOptions,
    (h, w): (usize, usize),
) -> Result<Vec<f32>> {
    let assignments: Vec<Tensor> =
        features.assignments.iter().map(|a| a.narrow(0, index, 1)).collect::<candle_core::Result<_>>()?;
    let grouping = chain_assignments(&assignments)?.i(0)?;
    let (g, _) = grouping.dims2()?;
    let (gh, gw) = features.grid;
    let maps = resample::bilinear(&grouping.flatten_all()?.to_vec1::<f32>()?, g, gh, gw, h, w);
    let (affinity, c) = group_affinity(
        &features.group_embeds.i(index)?,
        &features.image_embeds.i(index)?,
        labels,
        scale,
        opts.top_k,
    )?;
    let best_fg = affinity.iter().copied().fold(0f32, f32::max);
    let threshold = opts.background_threshold.map(|t| t.min(best_fg));
    let plane = h * w;
    let mut scores = vec![0f32; (c + 1) * plane];
    for p in 0..plane {
        // The one-hot of the argmax group (the first one on ties, like torch.argmax).
        let mut best = 0;
        for k in 1..g {
            if maps[k * plane + p] > maps[best * plane + p] {
                best = k;
            }
        }
        let row = &affinity[best * c..(best + 1) * c];
        let mut top = 0f32;
        for (j, &v) in row.iter().enumerate() {
            scores[(j + 1) * plane + p] = v;
            top = top.max(v);
        }
        if threshold.is_some_and(|t| top < t) {
            scores[p] = 1.0;
        }
    }
    Ok(scores)
}

/// The windows of a resized, normalised photo `(1, 3, H, W)` as one batch `(B, 3, h, w)`, with
/// each window's top-left corner and the window size.
pub fn crop_windows(pixel_values: &Tensor, opts: &SegmentOptions) -> Result<(Tensor, Vec<(usize, usize)>, (usize, usize))> {
    let (_, _, h, w) = pixel_values.dims4()?;
    let (origins, (ch, cw)) = windows(h, w, opts.window, opts.stride.max(1));
    let crops = origins
        .iter()
        .map(|&(y, x)| pixel_values.narrow(2, y, ch)?.narrow(3, x, cw))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok((Tensor::cat(&crops, 0)?, origins, (ch, cw)))
}

/// The sliding-window inference's averaged class scores `(C + 1, H, W)` over a photo of `(H, W)`,
/// from the features of its windows (see [`crop_windows`]).
pub fn slide(
    features: &ImageFeatures,
    origins: &[(usize, usize)],
    (ch, cw): (usize, usize),
    (h, w): (usize, usize),
    labels: &Tensor,
    scale: f32,
    opts: &SegmentOptions,
) -> Result<Vec<f32>> {
    let c = labels.dim(0)? + 1;
    let mut sum = vec![0f32; c * h * w];
    let mut count = vec![0u16; h * w];
    for (i, &(y0, x0)) in origins.iter().enumerate() {
        let scores = window_scores(features, i, labels, scale, opts, (ch, cw))?;
        for k in 0..c {
            for y in 0..ch {
                let src = &scores[(k * ch + y) * cw..(k * ch + y + 1) * cw];
                let dst = &mut sum[(k * h + y0 + y) * w + x0..(k * h + y0 + y) * w + x0 + cw];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += s;
                }
            }
        }
        for y in 0..ch {
            for v in &mut count[(y0 + y) * w + x0..(y0 + y) * w + x0 + cw] {
                *v += 1;
            }
        }
    }
    for k in 0..c {
        for (v, &n) in sum[k * h * w..(k + 1) * h * w].iter_mut().zip(&count) {
            *v /= n as f32;
        }
    }
    Ok(sum)
}

/// Resizes class scores `(C, h, w)` bilinearly to the photo's `out_h × out_w` and takes the argmax
/// per pixel, without holding the resized scores of every class at once.
pub fn label_photo(scores: &[f32], classes: Vec<String>, (h, w): (usize, usize), (out_h, out_w): (usize, usize)) -> Segmentation {
    let c = classes.len();
    let plane = h * w;
    let ty = resample::linear_taps(h, out_h);
    let tx = resample::linear_taps(w, out_w);
    let mut label_map = vec![0u16; out_h * out_w];
    let mut best_scores = vec![0f32; out_h * out_w];
    for (y, a) in ty.iter().enumerate() {
        for (x, b) in tx.iter().enumerate() {
            let (i00, i01) = (a.i0 * w + b.i0, a.i0 * w + b.i1);
            let (i10, i11) = (a.i1 * w + b.i0, a.i1 * w + b.i1);
            let mut best = 0;
            let mut best_v = f32::NEG_INFINITY;
            for k in 0..c {
                let s = &scores[k * plane..(k + 1) * plane];
                let v = a.w0 * (b.w0 * s[i00] + b.w1 * s[i01]) + a.w1 * (b.w0 * s[i10] + b.w1 * s[i11]);
                if v > best_v {
                    best_v = v;
                    best = k;
                }
            }
            label_map[y * out_w + x] = best as u16;
            best_scores[y * out_w + x] = best_v;
        }
    }
    summarize(label_map, best_scores, classes, (out_h, out_w))
}

/// A [`Segmentation`] from a label map and the winning scores: each class's share, mean score and
/// bounding box.
pub fn summarize(label_map: Vec<u16>, scores: Vec<f32>, classes: Vec<String>, (h, w): (usize, usize)) -> Segmentation {
    let c = classes.len();
    let mut pixels = vec![0u64; c];
    let mut score_sum = vec![0f64; c];
    let mut bbox: Vec<Option<[u32; 4]>> = vec![None; c];
    for (i, (&label, &score)) in label_map.iter().zip(&scores).enumerate() {
        let k = label as usize;
        if k >= c {
            continue;
        }
        pixels[k] += 1;
        score_sum[k] += score as f64;
        let (x, y) = ((i % w) as u32, (i / w) as u32);
        let bb = bbox[k].get_or_insert([x, y, x + 1, y + 1]);
        bb[0] = bb[0].min(x);
        bb[1] = bb[1].min(y);
        bb[2] = bb[2].max(x + 1);
        bb[3] = bb[3].max(y + 1);
    }
    let total = (h * w).max(1) as f32;
    let summary = classes
        .iter()
        .enumerate()
        .map(|(k, label)| ClassSummary {
            label: label.clone(),
            share: pixels[k] as f32 / total,
            mean_score: if pixels[k] > 0 { (score_sum[k] / pixels[k] as f64) as f32 } else { 0.0 },
            bbox: bbox[k],
        })
        .collect();
    Segmentation { width: w as u32, height: h as u32, classes, label_map, scores, summary }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_geometry_scales_with_the_training_size() {
        let official = SegmentOptions::default();
        assert_eq!((official.size.short_side, official.window, official.stride), (448, 448, 224));
        let small = SegmentOptions::for_image_size(64);
        assert_eq!((small.size.short_side, small.window, small.stride), (128, 128, 64));
    }

    #[test]
    fn windows_follow_mmseg_slide_inference() {
        // 448 × 597: two windows side by side, the second flush with the right edge.
        let (w, size) = windows(448, 597, 448, 224);
        assert_eq!(size, (448, 448));
        assert_eq!(w, vec![(0, 0), (0, 149)]);
        // 896 × 448: three windows down, overlapping by half.
        assert_eq!(windows(896, 448, 448, 224).0, vec![(0, 0), (224, 0), (448, 0)]);
        // Smaller than a window: one window, the whole photo.
        assert_eq!(windows(300, 200, 448, 224), (vec![(0, 0)], (300, 200)));
    }

    #[test]
    fn label_photo_upsamples_and_summarises() {
        // Two classes on a 2 × 2 grid: class 1 wins on the left column.
        let scores = [0.0, 1.0, 0.0, 1.0, /* class 1 */ 0.9, 0.1, 0.9, 0.1];
        let seg = label_photo(&scores, vec!["background".into(), "cat".into()], (2, 2), (4, 4));
        assert_eq!(seg.label_map, vec![1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0]);
        assert_eq!(seg.summary[1].share, 0.5);
        assert_eq!(seg.summary[1].bbox, Some([0, 0, 2, 4]));
        assert!((seg.summary[1].mean_score - 0.8).abs() < 1e-6, "{:?}", seg.summary[1]);
    }
}
