//! Refinement on the GPU: `crate::refine`'s PAMR over the composition's averaged class sums, then the
//! label per pixel of the photo, recorded after `compose.wgsl` in the same command buffer.

use super::buffer::GpuTensor;
use super::recorder::Recorder;
use super::{dispatch, grid, pipeline, shader, shader_params, u32_of, uniform, Gpu, Kernel};
use crate::error::Result;
use crate::refine::{Refinement, MAX_DILATIONS};
use crate::segment::{Background, WindowLayout};

shader_params! {
    /// `refine.wgsl`'s parameters.
    RefineParams {
        /// The refinement grid.
        cells_h: u32,
        cells_w: u32,
        labels: u32,
        /// 8 a dilation.
        neighbours: u32,
        /// The resized photo the class sums cover, and the output (the photo's own size).
        height: u32,
        width: u32,
        out_h: u32,
        out_w: u32,
        batch: u32,
        has_background: u32,
        threshold: f32,
        _pad0: u32,
    }
}

/// Threads per workgroup in `refine.wgsl`.
const THREADS: u32 = 64;

/// The compiled kernels of `refine.wgsl`.
pub struct Refine {
    area: Kernel,
    affinity: Kernel,
    step: Kernel,
    label: Kernel,
}

impl Refine {
    pub fn new(gpu: &Gpu) -> Self {
        let constants = [("THREADS", THREADS), ("MAX_NEIGHBOURS", 8 * MAX_DILATIONS as u32)];
        let module = shader::<RefineParams>(gpu, "refine", &constants, include_str!("refine.wgsl"));
        Self {
            area: pipeline(gpu, &module, "area"),
            affinity: pipeline(gpu, &module, "affinity"),
            step: pipeline(gpu, &module, "step"),
            label: pipeline(gpu, &module, "label"),
        }
    }

    /// Records the refinement of `sums` (`(C + 1, h, w)`, averaged, class 0 unused) and the label
    /// per pixel; returns the label map (u32) and score buffers. `window_best` holds each window's
    /// best group–label affinity.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        r: &mut Recorder,
        sums: &GpuTensor,
        window_best: &GpuTensor,
        layout: &WindowLayout,
        labels: usize,
        refinement: &Refinement,
        background: Background,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let gpu = r.gpu;
        let guide = &layout.guide;
        let (gh, gw) = guide.size;
        let offsets: Vec<f32> = refinement
            .dilations_at(guide.scale)
            .into_iter()
            .flat_map(|d| crate::refine::ring(d).flat_map(|(dy, dx)| [dy as f32, dx as f32]))
            .collect();
        let neighbours = offsets.len() / 2;
        let (has_background, threshold) = match background {
            Background::Below(t) => (1, t),
            Background::Never => (0, 0.0),
        };
        let params = RefineParams {
            cells_h: u32_of(gh)?,
            cells_w: u32_of(gw)?,
            labels: u32_of(labels)?,
            neighbours: u32_of(neighbours)?,
            height: u32_of(layout.resized.0)?,
            width: u32_of(layout.resized.1)?,
            out_h: u32_of(layout.photo.0)?,
            out_w: u32_of(layout.photo.1)?,
            batch: u32_of(layout.origins.len())?,
            has_background,
            threshold,
            ..Default::default()
        };
        let u = uniform(gpu, &params);
        let cells = gh * gw;
        let guide_buf = GpuTensor::upload(gpu, &guide.pixels, &[3, gh, gw])?;
        let offsets = GpuTensor::upload(gpu, &offsets, &[neighbours, 2])?;
        let weights = r.empty(&[cells, neighbours]);
        let mut scores = r.empty(&[cells, labels]);
        let mut next = r.empty(&[cells, labels]);
        dispatch(gpu, &mut r.enc, &self.area, &[(0, &sums.buffer), (1, &scores.buffer), (9, &u)], grid(cells, THREADS));
        let bind = [(2, &guide_buf.buffer), (3, &offsets.buffer), (4, &weights.buffer), (9, &u)];
        dispatch(gpu, &mut r.enc, &self.affinity, &bind, grid(cells, THREADS));
        for _ in 0..refinement.iterations() {
            let bind = [(1, &next.buffer), (3, &offsets.buffer), (4, &weights.buffer), (5, &scores.buffer), (9, &u)];
            dispatch(gpu, &mut r.enc, &self.step, &bind, grid(cells, THREADS));
            std::mem::swap(&mut scores, &mut next);
        }
        let (oh, ow) = layout.photo;
        let label_map = r.empty(&[oh, ow]);
        let out_scores = r.empty(&[oh, ow]);
        let bind = [(5, &scores.buffer), (6, &window_best.buffer), (7, &label_map.buffer), (8, &out_scores.buffer), (9, &u)];
        dispatch(gpu, &mut r.enc, &self.label, &bind, grid(oh * ow, THREADS));
        Ok((label_map, out_scores))
    }
}
