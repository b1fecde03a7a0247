//! The seam between a segmenter and its image backend. The CPU (candle) and the GPU (wgpu) each
//! encode a photo's windows and compose label maps from what they encoded; a `Segmenter` holds the
//! text side and exactly one of them.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::gpu::compose::GpuEncoding;
use crate::gpu::{encoder, AdapterSummary};
/// A GPU kernel's time in a profiled run ([`Backend::profile_features`]).
pub use crate::gpu::profile::KernelTime;
use crate::model::{self, ImageFeatures};
use crate::segment::{self, LabelOptions, Segmentation, WindowLayout};

/// Where the image encoder should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// A hardware GPU when one is usable, else the CPU (saying why).
    #[default]
    Auto,
    /// Any GPU adapter, software emulation included.
    Gpu,
    Cpu,
}

impl std::str::FromStr for BackendChoice {
    type Err = Error;
    /// `auto`, `gpu` (or `webgpu`, as the browser calls it) or `cpu`.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "gpu" | "webgpu" => Ok(Self::Gpu),
            "cpu" => Ok(Self::Cpu),
            _ => Err(Error::InvalidInput(format!("backend {s:?} is not one of auto, gpu, cpu (webgpu is gpu's name in the browser)"))),
        }
    }
}

/// Where the image encoder does run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunningBackend {
    Gpu(AdapterSummary),
    /// With the reason a GPU was not used, when one was asked for.
    Cpu { why_not_gpu: Option<String> },
}

impl std::fmt::Display for RunningBackend {
    /// "GPU: llvmpipe (…) through Vulkan, software emulation", "CPU", "CPU (this browser has no WebGPU)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gpu(adapter) => write!(f, "GPU: {}", adapter.describe()),
            Self::Cpu { why_not_gpu: None } => write!(f, "CPU"),
            Self::Cpu { why_not_gpu: Some(why) } => write!(f, "CPU ({why})"),
        }
    }
}

/// What composing a label map needs besides the encoding.
pub struct Composition<'a> {
    pub layout: &'a WindowLayout,
    /// L2-normalised label embeddings `(C, D)`.
    pub labels: &'a Tensor,
    /// Class names, background first.
    pub classes: &'a [String],
    /// The model's contrastive temperature (capped by the options).
    pub logit_scale: f32,
    pub options: &'a LabelOptions,
}

impl Composition<'_> {
    /// The temperature, capped as the official inference does.
    fn scale(&self) -> f32 {
        self.logit_scale.min(self.options.max_logit_scale)
    }
}

/// An image backend: the image encoder and the composition, on one device.
// The futures are awaited where they are made (the browser's one thread, or `block_on`), so their
// `Send`-ness does not matter.
#[allow(async_fn_in_trait)]
pub trait ImageBackend {
    /// What encoding a photo leaves for composing, on this backend's device.
    type Encoding;

    /// Runs the image encoder over the windows `layout` places on a resized, normalised photo
    /// `(1, 3, H, W)`, cutting them as it goes.
    async fn encode(&self, pixels: &Tensor, layout: &WindowLayout) -> Result<Self::Encoding>;

    /// A label per pixel of the photo, from an encoding of its windows.
    async fn compose(&self, encoding: &Self::Encoding, job: &Composition<'_>) -> Result<Segmentation>;

    /// [`ImageBackend::encode`] then [`ImageBackend::compose`].
    async fn segment(&self, pixels: &Tensor, job: &Composition<'_>) -> Result<Segmentation> {
        let encoding = self.encode(pixels, job.layout).await?;
        self.compose(&encoding, job).await
    }

    /// The projected image and group embeddings of `pixel_values` (classification, raw logits).
    async fn features(&self, pixel_values: &Tensor) -> Result<ImageFeatures>;

    /// Each grouping block's soft maps, chained from the patches up to it, `(windows, groups,
    /// patches)` on the CPU, and the patch grid: what the groups view shows.
    async fn stage_maps(&self, encoding: &Self::Encoding) -> Result<(Vec<Tensor>, (usize, usize))>;
}

/// The image side on the CPU: `crate::model`'s encoder, `crate::segment`'s composition.
pub struct CpuBackend {
    encoder: model::ImageEncoder,
}

impl CpuBackend {
    pub fn new(encoder: model::ImageEncoder) -> Self {
        Self { encoder }
    }
}

/// Windows encoded together at most: one, so a photo's memory does not grow with its window count
/// (each 448-pixel window in a batch adds about 20 MB to a WebAssembly heap, which keeps its
/// high-water mark for good). Natively, batches of four ran no faster than one at a time.
pub const WINDOWS_PER_BATCH: usize = 1;

impl ImageBackend for CpuBackend {
    type Encoding = ImageFeatures;

    async fn encode(&self, pixels: &Tensor, layout: &WindowLayout) -> Result<ImageFeatures> {
        let n = layout.origins.len();
        let chunks = (0..n)
            .step_by(WINDOWS_PER_BATCH)
            .map(|i| self.encoder.forward(layout.cut(pixels, i, WINDOWS_PER_BATCH.min(n - i))?))
            .collect::<Result<Vec<_>>>()?;
        if chunks.len() == 1 {
            return Ok(chunks.into_iter().next().expect("one chunk"));
        }
        ImageFeatures::cat(&chunks)
    }

    async fn compose(&self, features: &ImageFeatures, job: &Composition<'_>) -> Result<Segmentation> {
        segment::compose(features, job.layout, job.labels, job.classes.to_vec(), job.logit_scale, job.options)
    }

    async fn features(&self, pixel_values: &Tensor) -> Result<ImageFeatures> {
        self.encoder.forward(pixel_values.clone())
    }

    async fn stage_maps(&self, features: &ImageFeatures) -> Result<(Vec<Tensor>, (usize, usize))> {
        let chained = (1..=features.assignments.len())
            .map(|k| model::chain_assignments(&features.assignments[..k]))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok((chained, features.grid))
    }
}

/// The image side on the GPU: `crate::gpu`'s encoder and composition, in one command buffer.
pub struct GpuBackend {
    encoder: encoder::ImageEncoder,
}

impl GpuBackend {
    /// Uploads `cpu`'s weights to the best GPU (software adapters only when `allow_software`).
    pub async fn open(cpu: &model::ImageEncoder, allow_software: bool) -> Result<Self> {
        Ok(Self { encoder: encoder::ImageEncoder::open(cpu, allow_software).await? })
    }

    pub fn encoder(&self) -> &encoder::ImageEncoder {
        &self.encoder
    }

    fn summarize(job: &Composition<'_>, out: encoder::GpuLabels) -> Segmentation {
        segment::summarize(out.label_map, out.scores, job.classes.to_vec(), job.layout.photo)
    }
}

impl ImageBackend for GpuBackend {
    type Encoding = GpuEncoding;

    async fn encode(&self, pixels: &Tensor, layout: &WindowLayout) -> Result<GpuEncoding> {
        self.encoder.encode(pixels, layout).await
    }

    async fn compose(&self, encoding: &GpuEncoding, job: &Composition<'_>) -> Result<Segmentation> {
        let out = self.encoder.compose(encoding, job.layout, job.labels, job.scale(), job.options).await?;
        Ok(Self::summarize(job, out))
    }

    async fn segment(&self, pixels: &Tensor, job: &Composition<'_>) -> Result<Segmentation> {
        let out = self.encoder.segment(pixels, job.layout, job.labels, job.scale(), job.options).await?;
        Ok(Self::summarize(job, out))
    }

    async fn features(&self, pixel_values: &Tensor) -> Result<ImageFeatures> {
        self.encoder.features(pixel_values).await
    }

    async fn stage_maps(&self, encoding: &GpuEncoding) -> Result<(Vec<Tensor>, (usize, usize))> {
        Ok((self.encoder.stage_maps(encoding).await?, encoding.grid))
    }
}

/// The image backend a segmenter holds: the one place the CPU/GPU choice is made and matched. Its
/// holders see encodings only as opaque [`Encoding`]s.
pub enum Backend {
    Cpu(CpuBackend),
    Gpu(GpuBackend),
}

/// A photo's encoding, on the device of the backend that made it.
pub struct Encoding(EncodingOn);

enum EncodingOn {
    Cpu(ImageFeatures),
    Gpu(GpuEncoding),
}

impl Backend {
    /// The image side on `choice`, built from the CPU encoder (uploaded and dropped for a GPU), and
    /// where it runs.
    pub async fn open(cpu: model::ImageEncoder, choice: BackendChoice) -> Result<(Self, RunningBackend)> {
        match choice {
            BackendChoice::Cpu => Ok((Self::Cpu(CpuBackend::new(cpu)), RunningBackend::Cpu { why_not_gpu: None })),
            BackendChoice::Gpu | BackendChoice::Auto => match GpuBackend::open(&cpu, choice == BackendChoice::Gpu).await {
                Ok(g) => {
                    let running = RunningBackend::Gpu(g.encoder().adapter().clone());
                    Ok((Self::Gpu(g), running))
                }
                Err(e) if choice == BackendChoice::Auto => {
                    // The reason alone, one plain sentence ("this browser has no WebGPU").
                    let why = match e {
                        Error::GpuUnavailable(why) => why,
                        e => e.to_string(),
                    };
                    Ok((Self::Cpu(CpuBackend::new(cpu)), RunningBackend::Cpu { why_not_gpu: Some(why) }))
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Bytes of the image side's weights `(in CPU memory, on the GPU)`, given what the CPU
    /// encoder's weights take.
    pub fn weight_bytes(&self, cpu_encoder_bytes: usize) -> (usize, usize) {
        match self {
            Self::Cpu(_) => (cpu_encoder_bytes, 0),
            Self::Gpu(g) => (g.encoder().host_bytes(), g.encoder().weight_bytes()),
        }
    }

    /// [`ImageBackend::features`] with each GPU kernel's time (timestamp queries), for benchmarks
    /// and tests; an error on the CPU, or on a GPU without timestamp queries.
    pub async fn profile_features(&self, pixel_values: &Tensor) -> Result<(ImageFeatures, Vec<KernelTime>)> {
        let Self::Gpu(g) = self else {
            return Err(Error::GpuUnavailable("kernel times need the GPU backend: this segmenter runs on the CPU".into()));
        };
        let device = g.encoder().gpu();
        device.start_profile()?;
        let features = g.features(pixel_values).await;
        // Finished whatever the run gave, so that no profile is left on.
        let kernels = device.finish_profile().await;
        Ok((features?, kernels?))
    }

    /// [`ImageBackend::encode`] on the backend held.
    pub async fn encode(&self, pixels: &Tensor, layout: &WindowLayout) -> Result<Encoding> {
        Ok(Encoding(match self {
            Self::Cpu(b) => EncodingOn::Cpu(b.encode(pixels, layout).await?),
            Self::Gpu(b) => EncodingOn::Gpu(b.encode(pixels, layout).await?),
        }))
    }

    /// [`ImageBackend::compose`] of an encoding this backend made.
    pub async fn compose(&self, encoding: &Encoding, job: &Composition<'_>) -> Result<Segmentation> {
        match (self, &encoding.0) {
            (Self::Cpu(b), EncodingOn::Cpu(e)) => b.compose(e, job).await,
            (Self::Gpu(b), EncodingOn::Gpu(e)) => b.compose(e, job).await,
            _ => Err(Self::foreign()),
        }
    }

    /// [`ImageBackend::segment`] on the backend held.
    pub async fn segment(&self, pixels: &Tensor, job: &Composition<'_>) -> Result<Segmentation> {
        match self {
            Self::Cpu(b) => b.segment(pixels, job).await,
            Self::Gpu(b) => b.segment(pixels, job).await,
        }
    }

    /// [`ImageBackend::features`] on the backend held.
    pub async fn features(&self, pixel_values: &Tensor) -> Result<ImageFeatures> {
        match self {
            Self::Cpu(b) => b.features(pixel_values).await,
            Self::Gpu(b) => b.features(pixel_values).await,
        }
    }

    /// [`ImageBackend::stage_maps`] of an encoding this backend made.
    pub async fn stage_maps(&self, encoding: &Encoding) -> Result<(Vec<Tensor>, (usize, usize))> {
        match (self, &encoding.0) {
            (Self::Cpu(b), EncodingOn::Cpu(e)) => b.stage_maps(e).await,
            (Self::Gpu(b), EncodingOn::Gpu(e)) => b.stage_maps(e).await,
            _ => Err(Self::foreign()),
        }
    }

    /// An encoding from the other backend: segmenters check that they made an encoding before
    /// handing it here, and a segmenter keeps its backend, so only a mixed-up caller gets this.
    fn foreign() -> Error {
        Error::InvalidInput("the photo was encoded on another backend: encode it with this segmenter".into())
    }
}
