//! The image encoder on an open GPU: device, compiled kernels, and the vision tower and visual
//! projection uploaded from their CPU twins. A forward is recorded into one command buffer;
//! segmenting records the composition after it, so only the label map comes back.

use candle_core::{Device, Tensor};

use super::buffer::GpuTensor;
use super::compose::{Compose, GpuEncoding};
use super::matmul::{BLayout, MatmulShape};
use super::projection::ProjectionHead;
use super::recorder::{Kernels, Recorder};
use super::vision::VisionTransformer;
use super::{AdapterSummary, Gpu};
use crate::error::{Error, Result};
use crate::model::{self, vision::VisionOutput, ImageFeatures};
use crate::segment::{LabelOptions, WindowLayout};

/// Windows recorded together at most: three 448-pixel windows' attention scores (50 MiB) fit the
/// storage binding every adapter must offer (`super::NEEDED_STORAGE_BINDING`).
const WINDOWS_PER_RECORDING: usize = 3;

/// A label per pixel of the photo (0 is background) and the winning class's score.
pub struct GpuLabels {
    pub label_map: Vec<u16>,
    pub scores: Vec<f32>,
}

/// GroupViT's image side on the GPU.
pub struct ImageEncoder {
    gpu: Gpu,
    kernels: Kernels,
    compose: Compose,
    tower: VisionTransformer,
    projection: ProjectionHead,
    weight_bytes: usize,
}

impl ImageEncoder {
    /// Opens the best GPU (see [`Gpu::new`] for `allow_software`) and uploads `cpu`'s weights; the
    /// CPU copy can be dropped afterwards.
    pub async fn open(cpu: &model::ImageEncoder, allow_software: bool) -> Result<Self> {
        let gpu = Gpu::new(allow_software).await?;
        let errors = gpu.catch_errors();
        let kernels = Kernels::new(&gpu);
        let compose = Compose::new(&gpu);
        let before = gpu.uploaded_bytes();
        let tower = VisionTransformer::from_cpu(&gpu, &cpu.vision_model);
        let projection = ProjectionHead::from_cpu(&gpu, &cpu.visual_projection);
        let weight_bytes = gpu.uploaded_bytes() - before;
        errors.check().await?;
        Ok(Self { gpu, kernels, compose, tower: tower?, projection: projection?, weight_bytes })
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.gpu.adapter
    }

    /// The device (for profiling).
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Bytes of the weights uploaded to the device.
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// Bytes of weights it keeps in CPU memory (the position embeddings).
    pub fn host_bytes(&self) -> usize {
        self.tower.host_bytes()
    }

    /// The vision tower's output read back, for the CPU's projection (classification, raw logits).
    pub async fn forward(&self, pixel_values: &Tensor) -> Result<VisionOutput> {
        let errors = self.gpu.catch_errors();
        let mut r = Recorder::new(&self.gpu, &self.kernels);
        let out = self.tower.record(&mut r, pixel_values);
        r.submit();
        errors.check().await?;
        let out = out?;
        let last_hidden_state = to_tensor(&self.gpu, &out.last_hidden_state).await?;
        let mut assignments = Vec::with_capacity(out.assignments.len());
        for soft in &out.assignments {
            assignments.push(to_tensor(&self.gpu, soft).await?);
        }
        let pooled = last_hidden_state.mean(1)?;
        Ok(VisionOutput { last_hidden_state, pooled, assignments, grid: out.grid })
    }

    /// The projected image (mean of the groups) and group embeddings, not normalised, and the soft
    /// assignments, read back (classification, raw logits).
    pub async fn features(&self, pixel_values: &Tensor) -> Result<ImageFeatures> {
        let errors = self.gpu.catch_errors();
        let mut r = Recorder::new(&self.gpu, &self.kernels);
        let recorded = self.tower.record(&mut r, pixel_values).and_then(|out| {
            let (groups, image) = self.project(&mut r, &out.last_hidden_state)?;
            Ok((out, groups, image))
        });
        r.submit();
        errors.check().await?;
        let (out, groups, image) = recorded?;
        let mut assignments = Vec::with_capacity(out.assignments.len());
        for soft in &out.assignments {
            assignments.push(to_tensor(&self.gpu, soft).await?);
        }
        Ok(ImageFeatures {
            image_embeds: to_tensor(&self.gpu, &image).await?,
            group_embeds: to_tensor(&self.gpu, &groups).await?,
            assignments,
            grid: out.grid,
        })
    }

    /// Records the projections of each group `(B, G, D)` and of their mean `(B, D)`.
    fn project(&self, r: &mut Recorder, last: &GpuTensor) -> Result<(GpuTensor, GpuTensor)> {
        let [b, g, d] = last.shape[..] else {
            return Err(Error::Gpu(format!("the encoder gave groups of shape {:?}", last.shape)));
        };
        let groups = self.projection.record(r, last)?;
        let mean = GpuTensor::upload(r.gpu, &vec![1.0 / g as f32; b * g], &[b, 1, g])?;
        let mut pooled = r.matmul(&mean, last, BLayout::Plain, MatmulShape { batch: b, m: 1, n: d, k: g, b_shared: false })?;
        pooled.shape = vec![b, d];
        let image = self.projection.record(r, &pooled)?;
        Ok((groups, image))
    }

    /// Encodes the windows `layout` places on a resized photo `(1, 3, H, W)` and keeps what
    /// composing needs on the GPU.
    pub async fn encode(&self, pixels: &Tensor, layout: &WindowLayout) -> Result<GpuEncoding> {
        let errors = self.gpu.catch_errors();
        let mut r = Recorder::new(&self.gpu, &self.kernels);
        let recorded = self.record_encoding(&mut r, pixels, layout);
        r.submit();
        errors.check().await?;
        recorded
    }

    /// Labels an encoding: affinity and composition only.
    pub async fn compose(
        &self,
        encoding: &GpuEncoding,
        layout: &WindowLayout,
        labels: &Tensor,
        scale: f32,
        opts: &LabelOptions,
    ) -> Result<GpuLabels> {
        let errors = self.gpu.catch_errors();
        let mut r = Recorder::new(&self.gpu, &self.kernels);
        let recorded = self.compose.record(&mut r, encoding, layout, labels, scale, opts);
        r.submit();
        errors.check().await?;
        let (label_map, scores) = recorded?;
        read_labels(&self.gpu, label_map, scores).await
    }

    /// Encoder and composition in one command buffer; reads back only the label map and scores.
    pub async fn segment(
        &self,
        pixels: &Tensor,
        layout: &WindowLayout,
        labels: &Tensor,
        scale: f32,
        opts: &LabelOptions,
    ) -> Result<GpuLabels> {
        let errors = self.gpu.catch_errors();
        let mut r = Recorder::new(&self.gpu, &self.kernels);
        let recorded = self
            .record_encoding(&mut r, pixels, layout)
            .and_then(|enc| self.compose.record(&mut r, &enc, layout, labels, scale, opts));
        r.submit();
        errors.check().await?;
        let (label_map, scores) = recorded?;
        read_labels(&self.gpu, label_map, scores).await
    }

    /// Each grouping block's chained soft maps of an encoding `(windows, groups, patches)`, read back
    /// (the groups view).
    pub async fn stage_maps(&self, encoding: &GpuEncoding) -> Result<Vec<Tensor>> {
        let mut out = Vec::with_capacity(encoding.stage_maps.len());
        for m in &encoding.stage_maps {
            out.push(to_tensor(&self.gpu, m).await?);
        }
        Ok(out)
    }

    /// Records the tower, the projections and the grouping maps chained across stages, a few
    /// windows at a time (one batch's attention scores must fit one storage binding), joined.
    fn record_encoding(&self, r: &mut Recorder, pixels: &Tensor, layout: &WindowLayout) -> Result<GpuEncoding> {
        let n = layout.origins.len();
        let parts = (0..n)
            .step_by(WINDOWS_PER_RECORDING)
            .map(|i| self.record_windows(r, &layout.cut(pixels, i, WINDOWS_PER_RECORDING.min(n - i))?))
            .collect::<Result<Vec<_>>>()?;
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().expect("one part"));
        }
        let (g, grid) = (parts[0].group_count, parts[0].grid);
        let groups = r.stack(&parts.iter().map(|p| &p.groups).collect::<Vec<_>>())?;
        let image = r.stack(&parts.iter().map(|p| &p.image).collect::<Vec<_>>())?;
        let stage_maps = (0..parts[0].stage_maps.len())
            .map(|k| r.stack(&parts.iter().map(|p| &p.stage_maps[k]).collect::<Vec<_>>()))
            .collect::<Result<Vec<_>>>()?;
        Ok(GpuEncoding { groups, image, stage_maps, batch: n, group_count: g, grid })
    }

    /// [`ImageEncoder::record_encoding`] of one batch of windows.
    fn record_windows(&self, r: &mut Recorder, windows: &Tensor) -> Result<GpuEncoding> {
        let out = self.tower.record(r, windows)?;
        let (b, g) = (out.last_hidden_state.shape[0], out.last_hidden_state.shape[1]);
        let (gh, gw) = out.grid;

        // Projected, normalised group and whole-image (mean of the groups) embeddings.
        let (groups, image) = self.project(r, &out.last_hidden_state)?;
        r.l2_normalize(&groups)?;
        r.l2_normalize(&image)?;

        // Soft maps chained stage by stage: (B, groups, patches) of each grouping block over the
        // first block's tokens; the last are the final groups composing reads, the others are kept
        // for the groups view (200 KB a 448-pixel window of the published checkpoints).
        let mut stages = out.assignments.into_iter();
        let first = stages.next().ok_or_else(|| Error::Config("the model has no grouping block".into()))?;
        let mut stage_maps = vec![first];
        for a in stages {
            let prev = stage_maps.last().expect("the first stage is there");
            let (g2, g1, n) = (a.shape[1], a.shape[2], prev.shape[2]);
            let next = r.matmul(&a, prev, BLayout::Plain, MatmulShape { batch: b, m: g2, n, k: g1, b_shared: false })?;
            stage_maps.push(next);
        }
        let maps = stage_maps.last().expect("the first stage is there");
        if maps.shape[1] != g || maps.shape[2] != gh * gw {
            return Err(Error::Gpu(format!("grouping maps {:?} do not match {g} groups on {gh}×{gw}", maps.shape)));
        }
        Ok(GpuEncoding { groups, image, stage_maps, batch: b, group_count: g, grid: (gh, gw) })
    }
}

async fn to_tensor(gpu: &Gpu, t: &GpuTensor) -> Result<Tensor> {
    Ok(Tensor::from_vec(t.read(gpu).await?, t.shape.clone(), &Device::Cpu)?)
}

async fn read_labels(gpu: &Gpu, label_map: GpuTensor, scores: GpuTensor) -> Result<GpuLabels> {
    let label_map = label_map.read_u32(gpu).await?;
    let scores = scores.read(gpu).await?;
    Ok(GpuLabels { label_map: label_map.into_iter().map(|l| l as u16).collect(), scores })
}
