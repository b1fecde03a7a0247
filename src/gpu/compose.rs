//! The segmentation composition on the GPU: an encoding's groups matched to the label embeddings,
//! the grouping maps resized, and a label per pixel of the photo — the steps of `crate::segment`
//! (NVlabs' inference), recorded after the encoder or on their own for new labels, so only the
//! label map and its scores come back.

use candle_core::Tensor;

use super::buffer::GpuTensor;
use super::matmul::{BLayout, MatmulShape};
use super::recorder::Recorder;
use super::refine::Refine;
use super::{dispatch, grid, pipeline, shader, shader_params, u32_of, uniform, Gpu, Kernel};
use crate::error::{Error, Result};
use crate::segment::{Background, LabelOptions, WindowLayout};

shader_params! {
    /// `compose.wgsl`'s parameters.
    ComposeParams {
        batch: u32,
        groups: u32,
        /// Labels, background not included.
        labels: u32,
        top_k: u32,
        /// The contrastive temperature, capped.
        scale: f32,
        /// 1 when pixels under `threshold` are background.
        has_background: u32,
        threshold: f32,
        /// compose: which window of the batch, where it lies, and its size.
        window: u32,
        y0: u32,
        x0: u32,
        win_h: u32,
        win_w: u32,
        grid_h: u32,
        grid_w: u32,
        /// The resized photo the windows slide over, and the output (the photo's own size).
        height: u32,
        width: u32,
        out_h: u32,
        out_w: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// Threads per workgroup in `compose.wgsl`.
const THREADS: u32 = 64;

/// A photo's windows encoded on the GPU and kept there: normalised group and whole-window
/// embeddings and the chained grouping maps, all that composing needs. New labels re-use it
/// without running the image encoder again.
pub struct GpuEncoding {
    /// `(B·G, D)`, L2-normalised.
    pub(crate) groups: GpuTensor,
    /// `(B, D)`, L2-normalised.
    pub(crate) image: GpuTensor,
    /// Per grouping block `(B, G_k, gh·gw)`: each group's share of every patch, chained up to that
    /// block; the last are the final groups'.
    pub(crate) stage_maps: Vec<GpuTensor>,
    pub(crate) batch: usize,
    pub(crate) group_count: usize,
    pub(crate) grid: (usize, usize),
}

/// The compiled kernels of `compose.wgsl`.
pub struct Compose {
    rank: Kernel,
    affinity: Kernel,
    best: Kernel,
    compose: Kernel,
    average: Kernel,
    label: Kernel,
    refine: Refine,
}

impl Compose {
    pub fn new(gpu: &Gpu) -> Self {
        let module = shader::<ComposeParams>(gpu, "compose", &[("THREADS", THREADS)], include_str!("compose.wgsl"));
        Self {
            rank: pipeline(gpu, &module, "rank"),
            affinity: pipeline(gpu, &module, "affinity_rows"),
            best: pipeline(gpu, &module, "best"),
            compose: pipeline(gpu, &module, "compose"),
            average: pipeline(gpu, &module, "average"),
            label: pipeline(gpu, &module, "label"),
            refine: Refine::new(gpu),
        }
    }

    /// Records the labels' affinity to the encoding's groups and the composition into a label per
    /// pixel of the photo (refined when the options say so); returns the label map (u32) and score buffers. `labels` are the
    /// L2-normalised label embeddings `(C, D)`, `scale` the capped temperature.
    pub(crate) fn record(
        &self,
        r: &mut Recorder,
        enc: &GpuEncoding,
        layout: &WindowLayout,
        labels: &Tensor,
        scale: f32,
        opts: &LabelOptions,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let gpu = r.gpu;
        let (b, g, (gh, gw)) = (enc.batch, enc.group_count, enc.grid);
        if layout.origins.len() != b {
            return Err(Error::InvalidInput(format!("{} window origins for {b} windows", layout.origins.len())));
        }
        let (c, dim) = labels.dims2()?;
        let labels = GpuTensor::from_tensor(gpu, labels)?;
        let shared = |m: usize| MatmulShape { batch: 1, m, n: c, k: dim, b_shared: true };
        let group_logits = r.matmul(&enc.groups, &labels, BLayout::Transposed, shared(b * g))?;
        let image_logits = r.matmul(&enc.image, &labels, BLayout::Transposed, shared(b))?;
        let maps = enc.stage_maps.last().ok_or_else(|| Error::Gpu("an encoding without grouping maps".into()))?;

        let (h, w) = layout.resized;
        let (oh, ow) = layout.photo;
        let (has_background, threshold) = match opts.background {
            Background::Below(t) => (1, t),
            Background::Never => (0, 0.0),
        };
        let mut params = ComposeParams {
            batch: u32_of(b)?,
            groups: u32_of(g)?,
            labels: u32_of(c)?,
            top_k: u32_of(opts.top_k.clamp(1, c))?,
            scale,
            has_background,
            threshold,
            win_h: u32_of(layout.window.0)?,
            win_w: u32_of(layout.window.1)?,
            grid_h: u32_of(gh)?,
            grid_w: u32_of(gw)?,
            height: u32_of(h)?,
            width: u32_of(w)?,
            out_h: u32_of(oh)?,
            out_w: u32_of(ow)?,
            ..Default::default()
        };
        let allowed = r.empty(&[b, c]);
        let affinity = r.empty(&[b, g, c]);
        let best = r.empty(&[b]);
        let sums = r.empty(&[c + 1, h, w]);
        let counts = r.empty(&[h, w]);
        r.enc.clear_buffer(&sums.buffer, 0, None);
        r.enc.clear_buffer(&counts.buffer, 0, None);
        let u = uniform(gpu, &params);
        dispatch(gpu, &mut r.enc, &self.rank, &[(0, &image_logits.buffer), (2, &allowed.buffer), (9, &u)], grid(b * c, THREADS));
        let bind = [(1, &group_logits.buffer), (2, &allowed.buffer), (3, &affinity.buffer), (9, &u)];
        dispatch(gpu, &mut r.enc, &self.affinity, &bind, grid(b * g, THREADS));
        dispatch(gpu, &mut r.enc, &self.best, &[(3, &affinity.buffer), (9, &u), (10, &best.buffer)], grid(b, THREADS));
        // Windows overlap: one dispatch each, so their additions to the sums are ordered.
        for (i, &(y0, x0)) in layout.origins.iter().enumerate() {
            params.window = u32_of(i)?;
            params.y0 = u32_of(y0)?;
            params.x0 = u32_of(x0)?;
            let u = uniform(gpu, &params);
            let bind = [
                (3, &affinity.buffer),
                (4, &maps.buffer),
                (5, &sums.buffer),
                (6, &counts.buffer),
                (9, &u),
                (10, &best.buffer),
            ];
            dispatch(gpu, &mut r.enc, &self.compose, &bind, grid(layout.window.0 * layout.window.1, THREADS));
        }
        dispatch(gpu, &mut r.enc, &self.average, &[(5, &sums.buffer), (6, &counts.buffer), (9, &u)], grid(h * w, THREADS));
        if let Some(refinement) = &opts.refine {
            return self.refine.record(r, &sums, &best, layout, c, refinement, opts.background);
        }
        let label_map = r.empty(&[oh, ow]);
        let scores = r.empty(&[oh, ow]);
        let bind = [(5, &sums.buffer), (7, &label_map.buffer), (8, &scores.buffer), (9, &u)];
        dispatch(gpu, &mut r.enc, &self.label, &bind, grid(oh * ow, THREADS));
        Ok((label_map, scores))
    }
}
