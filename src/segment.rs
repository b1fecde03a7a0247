//! From group assignment to a label per pixel, as NVlabs' `GroupViTSegInference` does it:
//! soft grouping maps multiplied across stages and resized bilinearly, the argmax group per pixel,
//! each group labelled by its affinity to the label embeddings (scale capped at 100, only the image's
//! top-5 labels allowed), background where the best score stays under a threshold, and 448-pixel
//! windows at stride 224 averaged over the photo. With refinement (`crate::refine`, as TCL adds it),
//! the labels' averaged scores are refined over the photo's colours first and background is decided
//! per pixel after.

use candle_core::{IndexOp, Tensor};

use crate::error::{Error, Result};
use crate::model::config::SegmentationSection;
use crate::model::{chain_assignments, l2_normalize, ImageFeatures};
use crate::preprocess::SegmentationSize;
use crate::refine::{self, Affinity, Guide, Refinement};
use crate::resample;

/// Name of class 0 in every segmentation.
pub const BACKGROUND: &str = "background";

/// What becomes of pixels that no label fits well.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Background {
    /// A pixel whose best label scores under this (0–1) is background (NVlabs' `bg_thresh`).
    Below(f32),
    /// Every pixel gets a label.
    Never,
}

/// Where a photo's windows lie: fixed when the photo is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub size: SegmentationSize,
    /// Side of the square sliding window, in pixels of the resized photo.
    pub window_side: usize,
    pub stride: usize,
}

/// How groups become labels: chosen for each segmentation of an encoded photo.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelOptions {
    /// Without refinement a group whose best label scores under the threshold is background, as
    /// in the official inference; with it, a pixel whose best refined score does.
    pub background: Background,
    /// Label scores refined over the photo's colours before background is decided.
    pub refine: Option<Refinement>,
    /// Only the labels that rank in the top `top_k` for the whole window may label its groups.
    pub top_k: usize,
    /// Ceiling of the contrastive temperature, as in the official evaluation.
    pub max_logit_scale: f32,
    /// The groups also compete with the empty prompt (the default template around no words), and
    /// what it takes is background. Grounding sets it: scores are a softmax over the labels, so a
    /// caption of one or two phrases would otherwise paint the whole photo with them.
    pub nothing_prompt: bool,
}

/// The background a model is made for, with refinement and without: refinement shrinks each
/// label's scores near its outline, so it wants a lower threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub plain: Background,
    pub refined: Background,
}

impl Thresholds {
    pub fn for_refinement(&self, refine: bool) -> Background {
        if refine {
            self.refined
        } else {
            self.plain
        }
    }
}

/// Knobs of the official inference, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentOptions {
    pub geometry: Geometry,
    pub labelling: LabelOptions,
    /// The model's background thresholds, where no option names one: what
    /// `labelling.background` becomes when refinement is switched.
    pub thresholds: Thresholds,
}

/// Segmentation settings given in part (a model's config `segmentation` section, the CLI's flags,
/// the JS options), laid over others by [`SegmentOptions::with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentOverrides {
    pub short_side: Option<u32>,
    pub window_side: Option<usize>,
    pub stride: Option<usize>,
    /// The background for this segmentation, whether refined or not (a user's choice).
    pub background: Option<Background>,
    /// The model's thresholds without and with refinement (its config's).
    pub plain_threshold: Option<f32>,
    pub refined_threshold: Option<f32>,
    /// Refinement on or off; its iterations.
    pub refine: Option<bool>,
    pub refine_iterations: Option<u32>,
    pub nothing_prompt: Option<bool>,
}

impl From<&SegmentationSection> for SegmentOverrides {
    fn from(s: &SegmentationSection) -> Self {
        Self {
            short_side: s.short_side,
            window_side: s.window,
            stride: s.stride,
            plain_threshold: s.background_threshold,
            refined_threshold: s.refined_background_threshold,
            refine: s.refine,
            ..Default::default()
        }
    }
}

/// The smallest short side a photo is segmented at.
pub const MIN_SHORT_SIDE: u32 = 16;

impl SegmentOptions {
    /// The official geometry scaled to a model trained on `image_size` pixels: photos and windows at
    /// twice the training size, windows overlapping by half (448 / 448 / 224 for GroupViT's 224).
    pub fn for_image_size(image_size: usize) -> Self {
        Self {
            geometry: Geometry {
                size: SegmentationSize { short_side: 2 * image_size as u32, ..Default::default() },
                window_side: 2 * image_size,
                stride: image_size,
            },
            labelling: LabelOptions {
                background: Background::Below(0.95),
                refine: Some(Refinement::TCL),
                top_k: 5,
                max_logit_scale: 100.0,
                nothing_prompt: false,
            },
            // Not tuned for the published checkpoints with refinement (no validation data of
            // theirs reaches us): the official threshold, decided per pixel.
            thresholds: Thresholds { plain: Background::Below(0.95), refined: Background::Below(0.95) },
        }
    }

    /// These options with what `o` gives in place of theirs, checked.
    pub fn with(&self, o: &SegmentOverrides) -> Result<Self> {
        let mut opts = *self;
        let g = &mut opts.geometry;
        if let Some(s) = o.short_side {
            g.size.short_side = s;
        }
        g.window_side = o.window_side.unwrap_or(g.window_side);
        g.stride = o.stride.unwrap_or(g.stride);
        let t = &mut opts.thresholds;
        t.plain = o.plain_threshold.map_or(t.plain, Background::Below);
        t.refined = o.refined_threshold.map_or(t.refined, Background::Below);
        let l = &mut opts.labelling;
        if let Some(on) = o.refine {
            l.refine = on.then(|| l.refine.unwrap_or_default());
        }
        l.nothing_prompt = o.nothing_prompt.unwrap_or(l.nothing_prompt);
        if let Some(n) = o.refine_iterations {
            let r = l.refine.ok_or_else(|| {
                Error::InvalidInput("refinement iterations were given with refinement off: turn it on".into())
            })?;
            l.refine = Some(r.with_iterations(n)?);
        }
        l.background = match o.background {
            Some(b) => b,
            // The model's threshold for the refinement now chosen, unless it stays as it was.
            None if o.refine.is_some() || o.plain_threshold.is_some() || o.refined_threshold.is_some() => {
                opts.thresholds.for_refinement(l.refine.is_some())
            }
            None => l.background,
        };
        opts.check()?;
        Ok(opts)
    }

    /// Says which option is out of its range.
    pub fn check(&self) -> Result<()> {
        let g = &self.geometry;
        let bad = |m: String| Err(Error::InvalidInput(m));
        if g.size.short_side < MIN_SHORT_SIDE {
            return bad(format!("the short side must be at least {MIN_SHORT_SIDE} pixels, not {}", g.size.short_side));
        }
        if g.window_side == 0 || g.stride == 0 {
            return bad("the window and the stride must be positive".into());
        }
        if g.stride > g.window_side {
            // Windows further apart than their side would leave pixels no window covers.
            return bad(format!("the stride ({}) must not exceed the window ({})", g.stride, g.window_side));
        }
        for b in [self.labelling.background, self.thresholds.plain, self.thresholds.refined] {
            if let Background::Below(t) = b {
                if !(0.0..=1.0).contains(&t) {
                    return bad(format!("the background threshold must be between 0 and 1, not {t}"));
                }
            }
        }
        Ok(())
    }
}

impl Default for SegmentOptions {
    /// The official settings, for the published checkpoints (trained at 224).
    fn default() -> Self {
        Self::for_image_size(224)
    }
}

/// Where one photo's windows lie over its resized copy, as mmseg's `slide_inference` visits them.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowLayout {
    /// Top-left corner `(y, x)` of each window, in the batch's order.
    pub origins: Vec<(usize, usize)>,
    /// Size `(h, w)` of every window (smaller than the window side when the photo is).
    pub window: (usize, usize),
    /// The resized photo the windows slide over `(h, w)`.
    pub resized: (usize, usize),
    /// The photo's own size `(h, w)`, the label map's.
    pub photo: (usize, usize),
    /// The settings that placed them.
    pub geometry: Geometry,
    /// The photo's colours on the refinement grid, kept so an encoded photo can be refined.
    pub guide: Guide,
}

impl WindowLayout {
    /// The windows of a `resized` photo, as [`windows`] places them, once [`check_window_budget`]
    /// has passed them.
    pub fn new(resized: (usize, usize), photo: (usize, usize), geometry: Geometry, guide: Guide) -> Result<Self> {
        check_window_budget(resized, &geometry)?;
        let (origins, window) = windows(resized.0, resized.1, geometry.window_side, geometry.stride);
        Ok(Self { origins, window, resized, photo, geometry, guide })
    }

    /// Windows `start..start + n` of a resized, normalised photo `(1, 3, H, W)`, as one batch
    /// `(n, 3, h, w)`: the backends cut them as they encode them, so a photo's windows are never all
    /// copied out at once.
    pub fn cut(&self, pixel_values: &Tensor, start: usize, n: usize) -> Result<Tensor> {
        let (ch, cw) = self.window;
        let crops = self.origins[start..start + n]
            .iter()
            .map(|&(y, x)| pixel_values.narrow(2, y, ch)?.narrow(3, x, cw))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&crops, 0)?)
    }
}

/// Windows one photo may be cut into at most. Far above what the official settings ask (a
/// 2048 × 2048 photo in 448-pixel windows at stride 224 has 81); below what the per-pixel window
/// count of [`compose`] (a `u16`) can hold.
pub const MAX_WINDOWS: usize = 1024;
/// Window pixels (windows × pixels per window) one photo may ask the encoder for at most: 128
/// windows of 448 × 448, half again the official settings' largest photo. The encoder's time and
/// the encoding's memory grow with them.
pub const MAX_WINDOW_PIXELS: usize = 128 * 448 * 448;
const _: () = assert!(MAX_WINDOWS <= u16::MAX as usize);

/// How many windows [`windows`] places over an `h × w` photo, without placing them.
pub fn window_count((h, w): (usize, usize), window: usize, stride: usize) -> usize {
    let grids = |len: usize| len.saturating_sub(window.min(len)).div_ceil(stride.max(1)) + 1;
    grids(h).saturating_mul(grids(w))
}

/// Refuses windows over a resized photo that would ask more than [`MAX_WINDOWS`] or
/// [`MAX_WINDOW_PIXELS`], saying which setting to change. Checked before anything is cut or
/// allocated, on every face (CLI, package, page).
pub fn check_window_budget(resized: (usize, usize), geometry: &Geometry) -> Result<()> {
    let (window, stride) = (geometry.window_side, geometry.stride);
    if window == 0 || stride == 0 {
        return Err(Error::InvalidInput("the window and the stride must be positive".into()));
    }
    let count = window_count(resized, window, stride);
    let (ch, cw) = (window.min(resized.0), window.min(resized.1));
    let pixels = count.saturating_mul(ch * cw);
    if count > MAX_WINDOWS || pixels > MAX_WINDOW_PIXELS {
        return Err(Error::InvalidInput(format!(
            "a {}×{} photo in {window}-pixel windows at stride {stride} is {count} windows ({:.1} million window pixels); \
             one photo takes at most {MAX_WINDOWS} windows and {:.1} million window pixels: raise the stride, \
             or lower the short side or the window",
            resized.1,
            resized.0,
            pixels as f64 / 1e6,
            MAX_WINDOW_PIXELS as f64 / 1e6,
        )));
    }
    Ok(())
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

/// One window's part of the photo's class scores: each pixel's argmax group, found on the grid of
/// patches ([`resample::bilinear_argmax`]), and each group's class affinities. Neither the resized
/// grouping maps nor the window's score planes are held (10 MB for a 448-pixel window and 4 labels).
struct WindowGroups {
    /// Row-major over the window's pixels.
    best: Vec<u16>,
    /// `(G, C)` row-major, class 0 the first label.
    affinity: Vec<f32>,
    /// Whether each group's best affinity falls under the background threshold.
    background: Vec<bool>,
    /// The best affinity of any group to any label.
    best_affinity: f32,
}

impl WindowGroups {
    fn new(features: &ImageFeatures, index: usize, labels: &Tensor, scale: f32, opts: &LabelOptions, layout: &WindowLayout) -> Result<Self> {
        let assignments: Vec<Tensor> =
            features.assignments.iter().map(|a| a.narrow(0, index, 1)).collect::<candle_core::Result<_>>()?;
        let grouping = chain_assignments(&assignments)?.i(0)?;
        let (g, _) = grouping.dims2()?;
        if g > u16::MAX as usize + 1 {
            // Each pixel's group is kept in 16 bits; GroupViT's last grouping block has 8.
            return Err(Error::InvalidInput(format!("the model ends with {g} groups a window; segmentation handles at most 65536")));
        }
        let (affinity, c) = group_affinity(
            &features.group_embeds.i(index)?,
            &features.image_embeds.i(index)?,
            labels,
            scale,
            opts.top_k,
        )?;
        let best_fg = affinity.iter().copied().fold(0f32, f32::max);
        let threshold = match opts.background {
            Background::Below(t) => Some(t.min(best_fg)),
            Background::Never => None,
        };
        let background =
            affinity.chunks(c).map(|row| threshold.is_some_and(|t| row.iter().copied().fold(0f32, f32::max) < t)).collect();
        let (ch, cw) = layout.window;
        let mut best = vec![0u16; ch * cw];
        let maps = grouping.flatten_all()?.to_vec1::<f32>()?;
        resample::bilinear_argmax(&maps, g, features.grid, layout.window, |p, group| best[p] = group as u16);
        Ok(Self { best, affinity, background, best_affinity: best_fg })
    }

    /// Adds this window's scores of class `k` (0 background: 1 where the pixel's group falls
    /// under the threshold) into `plane`, the resized photo's `h × w`, at `origin`.
    fn add_class(&self, k: usize, plane: &mut [f32], origin: (usize, usize), (_, cw): (usize, usize), w: usize) {
        let c = self.affinity.len() / self.background.len();
        let value = |group: usize| match k {
            0 => f32::from(u8::from(self.background[group])),
            _ => self.affinity[group * c + k - 1],
        };
        let values: Vec<f32> = (0..self.background.len()).map(value).collect();
        for (row, groups) in self.best.chunks_exact(cw).enumerate() {
            let at = (origin.0 + row) * w + origin.1;
            for (v, &group) in plane[at..at + cw].iter_mut().zip(groups) {
                *v += values[group as usize];
            }
        }
    }
}

/// The official inference over a photo's encoded windows (`features`, one item per window of
/// `layout`): a label per pixel of the photo. `labels` are the L2-normalised label embeddings,
/// `classes` their names after [`BACKGROUND`]. One class's averaged scores over the resized photo
/// are made at a time and offered to the photo's labelling ([`PhotoLabels`]), or, refined, to the
/// refinement grid (a sixteenth of the pixels for 16-pixel patches): every class's at the resized
/// photo's size at once were 4 MB at 448² for 4 labels, 21 MB for 20 labels at 597 × 448.
pub fn compose(
    features: &ImageFeatures,
    layout: &WindowLayout,
    labels: &Tensor,
    classes: Vec<String>,
    logit_scale: f32,
    opts: &LabelOptions,
) -> Result<Segmentation> {
    let scale = logit_scale.min(opts.max_logit_scale);
    let ((ch, cw), (h, w)) = (layout.window, layout.resized);
    let windows = (0..layout.origins.len())
        .map(|i| WindowGroups::new(features, i, labels, scale, opts, layout))
        .collect::<Result<Vec<_>>>()?;
    let mut count = vec![0u16; h * w];
    for &(y0, x0) in &layout.origins {
        for y in 0..ch {
            for v in &mut count[(y0 + y) * w + x0..(y0 + y) * w + x0 + cw] {
                *v += 1;
            }
        }
    }
    let c = labels.dim(0)?;
    let mut plane = vec![0f32; h * w];
    let class_plane = |k: usize, plane: &mut [f32]| {
        plane.fill(0.0);
        for (window, &origin) in windows.iter().zip(&layout.origins) {
            window.add_class(k, plane, origin, layout.window, w);
        }
        for (v, &n) in plane.iter_mut().zip(&count) {
            *v /= n as f32;
        }
    };
    let Some(refinement) = opts.refine else {
        let mut labelling = PhotoLabels::new(layout.resized, layout.photo);
        for k in 0..c + 1 {
            class_plane(k, &mut plane);
            labelling.offer(k, &plane);
        }
        return Ok(labelling.finish(classes));
    };
    let guide = &layout.guide;
    let (gh, gw) = guide.size;
    // Cell-major, the labels' scores side by side (background is decided after).
    let mut scores = vec![0f32; gh * gw * c];
    for k in 1..c + 1 {
        class_plane(k, &mut plane);
        refine::area_mean(&plane, (h, w), guide.size, &mut scores[k - 1..], c);
    }
    drop(plane);
    Affinity::new(guide, &refinement.dilations_at(guide.scale)).refine(&mut scores, c, refinement.iterations());
    let best_group = windows.iter().map(|w| w.best_affinity).fold(0f32, f32::max);
    let mut labelling = PhotoLabels::new(guide.size, layout.photo);
    let mut plane = vec![background_score(opts.background, best_group); gh * gw];
    labelling.offer(0, &plane);
    for k in 1..c + 1 {
        for (p, cell) in plane.iter_mut().zip(scores.chunks_exact(c)) {
            *p = cell[k - 1];
        }
        labelling.offer(k, &plane);
    }
    Ok(labelling.finish(classes))
}

/// The background's score where labels are refined: the threshold, capped by the photo's best
/// group–label affinity as the official inference caps it, so some pixel keeps a label; 0 (never
/// above a label's) without background.
pub fn background_score(background: Background, best_affinity: f32) -> f32 {
    match background {
        Background::Below(t) => t.min(best_affinity),
        Background::Never => 0.0,
    }
}

/// The photo's label map, made class by class: each class's scores `(h, w)` are resized
/// bilinearly to the photo's `out_h × out_w` and kept where they beat the classes before (the
/// first on ties, as an argmax over all classes at once), without holding every class's.
pub struct PhotoLabels {
    grid: (usize, usize),
    out: (usize, usize),
    ty: Vec<resample::LinearTap>,
    tx: Vec<resample::LinearTap>,
    label_map: Vec<u16>,
    best_scores: Vec<f32>,
}

impl PhotoLabels {
    pub fn new(grid: (usize, usize), (out_h, out_w): (usize, usize)) -> Self {
        Self {
            grid,
            out: (out_h, out_w),
            ty: resample::linear_taps(grid.0, out_h),
            tx: resample::linear_taps(grid.1, out_w),
            label_map: vec![0; out_h * out_w],
            best_scores: vec![f32::NEG_INFINITY; out_h * out_w],
        }
    }

    /// Class `k`'s scores over the grid (classes offered in order from 0).
    pub fn offer(&mut self, k: usize, scores: &[f32]) {
        let w = self.grid.1;
        let out_w = self.out.1;
        for (y, a) in self.ty.iter().enumerate() {
            let (r0, r1) = (&scores[a.i0 * w..], &scores[a.i1 * w..]);
            let labels = &mut self.label_map[y * out_w..(y + 1) * out_w];
            let best = &mut self.best_scores[y * out_w..(y + 1) * out_w];
            for ((b, l), s) in best.iter_mut().zip(labels).zip(&self.tx) {
                let v = a.w0 * (s.w0 * r0[s.i0] + s.w1 * r0[s.i1]) + a.w1 * (s.w0 * r1[s.i0] + s.w1 * r1[s.i1]);
                if v > *b {
                    *b = v;
                    *l = k as u16;
                }
            }
        }
    }

    pub fn finish(self, classes: Vec<String>) -> Segmentation {
        summarize(self.label_map, self.best_scores, classes, self.out)
    }
}

/// Resizes class scores `(C, h, w)` bilinearly to the photo's `out_h × out_w` and takes the argmax
/// per pixel.
pub fn label_photo(scores: &[f32], classes: Vec<String>, grid: (usize, usize), out: (usize, usize)) -> Segmentation {
    let mut labelling = PhotoLabels::new(grid, out);
    for (k, plane) in scores.chunks_exact(grid.0 * grid.1).take(classes.len()).enumerate() {
        labelling.offer(k, plane);
    }
    labelling.finish(classes)
}

/// A [`Segmentation`] from a label map and the winning scores: each class's share, mean score and
/// bounding box.
impl Segmentation {
    /// The same with its last class made background: pixels labelled by the empty prompt (see
    /// [`LabelOptions::nothing_prompt`]) keep their scores but no label.
    pub(crate) fn last_class_as_background(self) -> Segmentation {
        let mut classes = self.classes;
        classes.pop();
        let last = classes.len() as u16;
        let map = self.label_map.into_iter().map(|l| if l == last { 0 } else { l }).collect();
        summarize(map, self.scores, classes, (self.height as usize, self.width as usize))
    }
}

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
        let official = SegmentOptions::default().geometry;
        assert_eq!((official.size.short_side, official.window_side, official.stride), (448, 448, 224));
        let small = SegmentOptions::for_image_size(64).geometry;
        assert_eq!((small.size.short_side, small.window_side, small.stride), (128, 128, 64));
    }

    #[test]
    fn options_out_of_range_are_refused_by_name() {
        let official = SegmentOptions::default();
        let refused = |o: SegmentOverrides, word: &str| {
            let e = official.with(&o).unwrap_err().to_string();
            assert!(e.contains(word), "{e}");
        };
        refused(SegmentOverrides { short_side: Some(1), ..Default::default() }, "short side");
        refused(SegmentOverrides { stride: Some(0), ..Default::default() }, "stride");
        refused(SegmentOverrides { background: Some(Background::Below(2.0)), ..Default::default() }, "threshold");
        refused(SegmentOverrides { background: Some(Background::Below(f32::NAN)), ..Default::default() }, "threshold");
        let never = official.with(&SegmentOverrides { background: Some(Background::Never), ..Default::default() });
        assert_eq!(never.unwrap().labelling.background, Background::Never);
    }

    #[test]
    fn switching_refinement_switches_to_the_models_threshold_for_it() {
        let model = SegmentOverrides { plain_threshold: Some(0.6), refined_threshold: Some(0.4), refine: Some(true), ..Default::default() };
        let opts = SegmentOptions::for_image_size(64).with(&model).unwrap();
        assert_eq!((opts.labelling.refine, opts.labelling.background), (Some(Refinement::TCL), Background::Below(0.4)));
        let off = opts.with(&SegmentOverrides { refine: Some(false), ..Default::default() }).unwrap();
        assert_eq!((off.labelling.refine, off.labelling.background), (None, Background::Below(0.6)));
        // A threshold the user names holds either way; iterations need refinement on.
        let mine = SegmentOverrides { refine: Some(false), background: Some(Background::Below(0.3)), ..Default::default() };
        assert_eq!(opts.with(&mine).unwrap().labelling.background, Background::Below(0.3));
        let five = opts.with(&SegmentOverrides { refine_iterations: Some(5), ..Default::default() }).unwrap();
        assert_eq!(five.labelling.refine.map(|r| r.iterations()), Some(5));
        let e = off.with(&SegmentOverrides { refine_iterations: Some(5), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("refinement off"), "{e}");
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
    fn the_window_budget_counts_what_windows_places_and_refuses_past_it() {
        for (h, w, win, stride) in [(448, 597, 448, 224), (896, 448, 448, 224), (300, 200, 448, 224), (97, 131, 16, 3), (64, 64, 64, 1)] {
            assert_eq!(window_count((h, w), win, stride), windows(h, w, win, stride).0.len(), "{h}×{w} {win}/{stride}");
        }
        let at = |short_side, window_side, stride| Geometry { size: SegmentationSize { short_side, ..Default::default() }, window_side, stride };
        // The official settings' largest photo (2048 × 2048: 81 windows) fits; the cases do not.
        assert!(check_window_budget((2048, 2048), &at(2048, 448, 224)).is_ok());
        for (resized, g) in [((2048, 1536), at(2048, 448, 1)), ((1024, 1365), at(1024, 448, 2)), ((1536, 2048), at(2048, 16, 3))] {
            let e = check_window_budget(resized, &g).unwrap_err().to_string();
            assert!(e.contains("stride") && e.contains(&MAX_WINDOWS.to_string()), "{e}");
        }
        // Huge counts are counted, not overflowed.
        assert_eq!(window_count((usize::MAX, usize::MAX), 1, 1), usize::MAX);
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
