//! The segmentation composition on the GPU: the image encoder's groups projected and matched to the
//! label embeddings, the grouping maps chained across stages, resized, and turned into a label per
//! pixel — recorded after the encoder in the same command buffer, so only the label map and its
//! scores come back. The same steps as `crate::segment` on the CPU (NVlabs' inference).

use candle_core::Tensor;

use super::buffer::GpuTensor;
use super::matmul::{BLayout, MatmulShape};
use super::vision::{GpuImageEncoder, Recorder};
use super::{dispatch, grid, pipeline, shader, u32_of, uniform, Gpu, Kernel};
use crate::error::{Error, Result};

/// What to compose, besides the windows' pixels.
pub struct ComposeRequest<'a> {
    /// Top-left corner `(y, x)` of each window, in the batch's order.
    pub origins: &'a [(usize, usize)],
    /// Window size `(h, w)`.
    pub window: (usize, usize),
    /// The resized photo the windows slide over `(h, w)`.
    pub resized: (usize, usize),
    /// The photo's own size `(h, w)`, the output's.
    pub out: (usize, usize),
    /// L2-normalised label embeddings `(C, projection_dim)`.
    pub labels: &'a Tensor,
    /// Contrastive temperature, already capped.
    pub scale: f32,
    pub top_k: usize,
    pub background_threshold: Option<f32>,
}

/// A label per pixel of the photo (0 is background) and the winning class's score.
pub struct GpuLabels {
    pub label_map: Vec<u16>,
    pub scores: Vec<f32>,
}

/// The compiled kernels of `segment.wgsl`.
pub struct Compose {
    rank: Kernel,
    affinity: Kernel,
    best: Kernel,
    compose: Kernel,
    average: Kernel,
    label: Kernel,
}

/// The WGSL `Params` struct.
#[derive(Default, Clone, Copy)]
struct Params {
    batch: u32,
    groups: u32,
    labels: u32,
    top_k: u32,
    scale: f32,
    threshold: f32,
    window: u32,
    y0: u32,
    x0: u32,
    win_h: u32,
    win_w: u32,
    grid_h: u32,
    grid_w: u32,
    height: u32,
    width: u32,
    out_h: u32,
    out_w: u32,
}

impl Params {
    fn words(&self) -> [u32; 20] {
        [
            self.batch,
            self.groups,
            self.labels,
            self.top_k,
            self.scale.to_bits(),
            self.threshold.to_bits(),
            self.window,
            self.y0,
            self.x0,
            self.win_h,
            self.win_w,
            self.grid_h,
            self.grid_w,
            self.height,
            self.width,
            self.out_h,
            self.out_w,
            0,
            0,
            0,
        ]
    }
}

/// Threads per workgroup in `segment.wgsl`.
const THREADS: usize = 64;

impl Compose {
    pub fn new(gpu: &Gpu) -> Self {
        let module = shader(gpu, "segment", include_str!("segment.wgsl"));
        Self {
            rank: pipeline(gpu, &module, "rank"),
            affinity: pipeline(gpu, &module, "affinity_rows"),
            best: pipeline(gpu, &module, "best"),
            compose: pipeline(gpu, &module, "compose"),
            average: pipeline(gpu, &module, "average"),
            label: pipeline(gpu, &module, "label"),
        }
    }
}

/// A photo's windows encoded on the GPU and kept there: normalised group and whole-window
/// embeddings and the chained grouping maps, all that composing needs. New labels re-use it without
/// running the image encoder again.
pub struct GpuEncoded {
    /// `(B·G, D)`, L2-normalised.
    groups: GpuTensor,
    /// `(B, D)`, L2-normalised.
    image: GpuTensor,
    /// `(B, G, gh·gw)`: each final group's share of every patch.
    maps: GpuTensor,
    batch: usize,
    group_count: usize,
    grid: (usize, usize),
}

impl GpuImageEncoder {
    /// Segments the windows `crops (B, 3, h, w)` of one photo: encoder, projection, affinity and
    /// composition in one command buffer; reads back only the label map and scores.
    pub async fn segment(&self, crops: &Tensor, req: &ComposeRequest<'_>) -> Result<GpuLabels> {
        let gpu = &self.gpu;
        let errors = gpu.catch_errors();
        let mut r = Recorder::new(gpu, &self.kernels);
        let recorded = self.record_encoding(&mut r, crops).and_then(|enc| self.record_composition(&mut r, &enc, req));
        r.submit();
        errors.check().await?;
        let (label_map, scores) = recorded?;
        read_labels(gpu, label_map, scores).await
    }

    /// Encodes the windows `crops (B, 3, h, w)` and keeps what composing needs on the GPU.
    pub async fn encode(&self, crops: &Tensor) -> Result<GpuEncoded> {
        let errors = self.gpu.catch_errors();
        let mut r = Recorder::new(&self.gpu, &self.kernels);
        let recorded = self.record_encoding(&mut r, crops);
        r.submit();
        errors.check().await?;
        recorded
    }

    /// Labels the windows [`GpuImageEncoder::encode`] kept: affinity and composition only.
    pub async fn compose(&self, encoded: &GpuEncoded, req: &ComposeRequest<'_>) -> Result<GpuLabels> {
        let gpu = &self.gpu;
        let errors = gpu.catch_errors();
        let mut r = Recorder::new(gpu, &self.kernels);
        let recorded = self.record_composition(&mut r, encoded, req);
        r.submit();
        errors.check().await?;
        let (label_map, scores) = recorded?;
        read_labels(gpu, label_map, scores).await
    }

    /// Records the encoder, the projections and the grouping maps chained across stages.
    fn record_encoding(&self, r: &mut Recorder, crops: &Tensor) -> Result<GpuEncoded> {
        let gpu = &self.gpu;
        let out = self.tower.record(r, crops)?;
        let [b, g, d] = out.last.shape[..] else {
            return Err(Error::Gpu(format!("the encoder gave groups of shape {:?}", out.last.shape)));
        };
        let (gh, gw) = out.grid;

        // Projected, normalised group and whole-image embeddings.
        let groups = r.projection(&out.last, &self.projection)?;
        let mean = GpuTensor::upload(gpu, &vec![1.0 / g as f32; b * g], &[b, 1, g])?;
        let mut pooled = r.matmul(&mean, &out.last, BLayout::Plain, MatmulShape { batch: b, m: 1, n: d, k: g, b_shared: false })?;
        pooled.shape = vec![b, d];
        let image = r.projection(&pooled, &self.projection)?;
        r.l2_normalize(&groups)?;
        r.l2_normalize(&image)?;

        // Soft maps chained: (B, groups, patches) of the last stage over the first stage's tokens.
        let mut stages = out.soft_maps.into_iter();
        let mut maps = stages.next().ok_or_else(|| Error::Config("the model has no grouping block".into()))?;
        for a in stages {
            let (g2, g1, n) = (a.shape[1], a.shape[2], maps.shape[2]);
            maps = r.matmul(&a, &maps, BLayout::Plain, MatmulShape { batch: b, m: g2, n, k: g1, b_shared: false })?;
        }
        if maps.shape[1] != g || maps.shape[2] != gh * gw {
            return Err(Error::Gpu(format!("grouping maps {:?} do not match {g} groups on {gh}×{gw}", maps.shape)));
        }
        Ok(GpuEncoded { groups, image, maps, batch: b, group_count: g, grid: (gh, gw) })
    }

    /// Records the labels' affinity to the kept groups and the composition into a label per pixel;
    /// returns the label map and score buffers.
    fn record_composition(&self, r: &mut Recorder, enc: &GpuEncoded, req: &ComposeRequest<'_>) -> Result<(GpuTensor, GpuTensor)> {
        let gpu = &self.gpu;
        let (b, g, (gh, gw)) = (enc.batch, enc.group_count, enc.grid);
        if req.origins.len() != b {
            return Err(Error::InvalidInput(format!("{} window origins for {b} windows", req.origins.len())));
        }
        let (c, dim) = req.labels.dims2()?;
        let labels = GpuTensor::from_tensor(gpu, req.labels)?;
        let shared = |m: usize| MatmulShape { batch: 1, m, n: c, k: dim, b_shared: true };
        let group_logits = r.matmul(&enc.groups, &labels, BLayout::Transposed, shared(b * g))?;
        let image_logits = r.matmul(&enc.image, &labels, BLayout::Transposed, shared(b))?;
        let maps = &enc.maps;

        let k = &self.kernels.compose;
        let (h, w) = req.resized;
        let (oh, ow) = req.out;
        let mut params = Params {
            batch: u32_of(b)?,
            groups: u32_of(g)?,
            labels: u32_of(c)?,
            top_k: u32_of(req.top_k.clamp(1, c))?,
            scale: req.scale,
            threshold: req.background_threshold.unwrap_or(-1.0),
            win_h: u32_of(req.window.0)?,
            win_w: u32_of(req.window.1)?,
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
        let label_map = r.empty(&[oh, ow]);
        let scores = r.empty(&[oh, ow]);
        r.enc.clear_buffer(&sums.buffer, 0, None);
        r.enc.clear_buffer(&counts.buffer, 0, None);
        let u = uniform(gpu, &params.words());
        dispatch(gpu, &mut r.enc, &k.rank, &[(0, &image_logits.buffer), (2, &allowed.buffer), (9, &u)], grid(b * c, THREADS));
        let bind = [(1, &group_logits.buffer), (2, &allowed.buffer), (3, &affinity.buffer), (9, &u)];
        dispatch(gpu, &mut r.enc, &k.affinity, &bind, grid(b * g, THREADS));
        dispatch(gpu, &mut r.enc, &k.best, &[(3, &affinity.buffer), (9, &u), (10, &best.buffer)], grid(b, THREADS));
        // Windows overlap: one dispatch each, so their additions to the sums are ordered.
        for (i, &(y0, x0)) in req.origins.iter().enumerate() {
            params.window = u32_of(i)?;
            params.y0 = u32_of(y0)?;
            params.x0 = u32_of(x0)?;
            let u = uniform(gpu, &params.words());
            let bind = [
                (3, &affinity.buffer),
                (4, &maps.buffer),
                (5, &sums.buffer),
                (6, &counts.buffer),
                (9, &u),
                (10, &best.buffer),
            ];
            dispatch(gpu, &mut r.enc, &k.compose, &bind, grid(req.window.0 * req.window.1, THREADS));
        }
        dispatch(gpu, &mut r.enc, &k.average, &[(5, &sums.buffer), (6, &counts.buffer), (9, &u)], grid(h * w, THREADS));
        let bind = [(5, &sums.buffer), (7, &label_map.buffer), (8, &scores.buffer), (9, &u)];
        dispatch(gpu, &mut r.enc, &k.label, &bind, grid(oh * ow, THREADS));
        Ok((label_map, scores))
    }
}

async fn read_labels(gpu: &Gpu, label_map: GpuTensor, scores: GpuTensor) -> Result<GpuLabels> {
    let label_map = label_map.read_u32(gpu).await?;
    let scores = scores.read(gpu).await?;
    Ok(GpuLabels { label_map: label_map.into_iter().map(|l| l as u16).collect(), scores })
}
