//! A loaded checkpoint and what users ask of it: segment a photo by labels, classify it, or give
//! transformers' raw segmentation logits.

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::error::{Error, Result};
use crate::gpu::segment::{ComposeRequest, GpuEncoded};
use crate::gpu::vision::GpuImageEncoder;
use crate::model::{l2_normalize, segmentation_logits, weights, GroupViTConfig, GroupViTModel, ImageFeatures};
use crate::preprocess::{self, PreprocessorConfig};
use crate::segment::{self, SegmentOptions, Segmentation, BACKGROUND};
use crate::tokenize::TextTokenizer;

/// The prompt every label is put into unless others are given.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {}.";

/// The tokenizer files a checkpoint comes with.
pub enum TokenizerFiles<'a> {
    Json(&'a [u8]),
    VocabMerges { vocab: &'a [u8], merges: &'a str },
}

/// The contents of a checkpoint's files.
pub struct CheckpointFiles<'a> {
    pub config: &'a str,
    /// `model.safetensors` or `pytorch_model.bin`.
    pub weights: Vec<u8>,
    pub tokenizer: TokenizerFiles<'a>,
    pub preprocessor: Option<&'a str>,
}

/// Splits what a user typed ("cat, sofa ,, window") into labels: trimmed, non-empty, first
/// occurrence kept.
pub fn parse_labels(text: &str) -> Result<Vec<String>> {
    let mut labels: Vec<String> = Vec::new();
    for l in text.split([',', '\n']).map(str::trim).filter(|l| !l.is_empty()) {
        if !labels.iter().any(|x| x.eq_ignore_ascii_case(l)) {
            labels.push(l.to_owned());
        }
    }
    if labels.is_empty() {
        return Err(Error::InvalidInput("type at least one label, e.g. \"cat, sofa, window\"".into()));
    }
    if labels.len() >= u16::MAX as usize {
        return Err(Error::InvalidInput(format!("{} labels are more than this tool handles", labels.len())));
    }
    Ok(labels)
}

fn check_labels(labels: &[String]) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::InvalidInput("give at least one label".into()));
    }
    Ok(())
}

/// Where the image encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A hardware GPU when one is usable, else the CPU (saying why).
    Auto,
    /// Any GPU adapter, software emulation included.
    Gpu,
    Cpu,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Backend::Auto),
            "gpu" => Ok(Backend::Gpu),
            "cpu" => Ok(Backend::Cpu),
            _ => Err(Error::InvalidInput(format!("backend {s:?} is not one of auto, gpu, cpu"))),
        }
    }
}

/// Where a photo's windows lie, and the options that put them there.
struct Windows {
    origins: Vec<(usize, usize)>,
    /// Window size `(h, w)`.
    window: (usize, usize),
    /// The resized photo `(h, w)`.
    resized: (usize, usize),
    /// The photo's own size `(h, w)`.
    out: (usize, usize),
    size: preprocess::SegmentationSize,
    window_side: usize,
    stride: usize,
}

impl Windows {
    fn request<'a>(&'a self, labels: &'a Tensor, scale: f32, opts: &SegmentOptions) -> ComposeRequest<'a> {
        ComposeRequest {
            origins: &self.origins,
            window: self.window,
            resized: self.resized,
            out: self.out,
            labels,
            scale,
            top_k: opts.top_k,
            background_threshold: opts.background_threshold,
        }
    }
}

enum Encoded {
    Cpu(ImageFeatures),
    Gpu(GpuEncoded),
}

/// A photo run through the image encoder ([`Segmenter::encode`]), on the device that ran it.
pub struct EncodedPhoto {
    features: Encoded,
    windows: Windows,
}

impl EncodedPhoto {
    /// The photo's size `(width, height)`.
    pub fn size(&self) -> (u32, u32) {
        (self.windows.out.1 as u32, self.windows.out.0 as u32)
    }
}

fn classes(labels: &[String]) -> Vec<String> {
    std::iter::once(BACKGROUND.to_owned()).chain(labels.iter().cloned()).collect()
}

fn check_embeddings(labels: &[String], embeddings: &Tensor) -> Result<()> {
    check_labels(labels)?;
    if embeddings.dims2()?.0 != labels.len() {
        return Err(Error::InvalidInput(format!(
            "{} label embeddings were given for {} labels",
            embeddings.dims2()?.0,
            labels.len()
        )));
    }
    Ok(())
}

/// A GroupViT checkpoint ready to segment.
pub struct Segmenter {
    model: GroupViTModel,
    tokenizer: TextTokenizer,
    preprocessor: PreprocessorConfig,
    device: Device,
    gpu: Option<GpuImageEncoder>,
    backend: String,
    /// The last labels and templates embedded, and their embeddings: a batch of photos segmented
    /// by the same words runs the text encoder once.
    last_labels: std::sync::Mutex<Option<(Vec<String>, Vec<String>, Tensor)>>,
}

impl Segmenter {
    /// Builds a segmenter that runs on the CPU.
    pub fn from_files(files: CheckpointFiles, device: &Device) -> Result<Self> {
        let (segmenter, _) = Self::cpu_parts(files, device)?;
        Ok(segmenter)
    }

    /// Builds a segmenter whose image encoder and segmentation run on `backend`.
    pub async fn from_files_on(files: CheckpointFiles<'_>, device: &Device, backend: Backend) -> Result<Self> {
        let (mut segmenter, vb) = Self::cpu_parts(files, device)?;
        if backend == Backend::Cpu {
            return Ok(segmenter);
        }
        let vision = &segmenter.model.config().vision_config;
        let projection = segmenter.model.visual_projection();
        match GpuImageEncoder::open(vb.pp("vision_model"), vision, projection, backend == Backend::Gpu).await {
            Ok(g) => {
                segmenter.backend = format!("GPU: {}", g.adapter().describe());
                segmenter.gpu = Some(g);
            }
            Err(e) if backend == Backend::Auto => segmenter.backend = format!("CPU ({e})"),
            Err(e) => return Err(e),
        }
        Ok(segmenter)
    }

    /// The model, tokenizer and preprocessing on the CPU, and the weights for a GPU to upload.
    fn cpu_parts<'a>(files: CheckpointFiles, device: &Device) -> Result<(Self, candle_nn::VarBuilder<'a>)> {
        let config = GroupViTConfig::from_json(files.config)?;
        let context = config.text_config.max_position_embeddings;
        let tokenizer = match files.tokenizer {
            TokenizerFiles::Json(json) => TextTokenizer::from_tokenizer_json(json, context)?,
            TokenizerFiles::VocabMerges { vocab, merges } => TextTokenizer::from_vocab_merges(vocab, merges, context)?,
        };
        let preprocessor = match files.preprocessor {
            Some(json) => PreprocessorConfig::from_json(json)?,
            None => PreprocessorConfig::default(),
        };
        let vb = weights::var_builder(files.weights, device)?;
        let model = GroupViTModel::new(vb.clone(), &config)?;
        let segmenter =
            Self {
                model,
                tokenizer,
                preprocessor,
                device: device.clone(),
                gpu: None,
                backend: "CPU".to_owned(),
                last_labels: Default::default(),
            };
        Ok((segmenter, vb))
    }

    /// Loads a checkpoint directory (`config.json`, `model.safetensors` or `pytorch_model.bin`,
    /// `tokenizer.json` or `vocab.json` + `merges.txt`, optionally `preprocessor_config.json`), or a
    /// weights file with those files beside it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &std::path::Path, device: &Device) -> Result<Self> {
        Self::load_on(path, device, Backend::Cpu)
    }

    /// [`Segmenter::load`] with the image encoder on `backend`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_on(path: &std::path::Path, device: &Device, backend: Backend) -> Result<Self> {
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| Error::io(p, e));
        let text = |p: &std::path::Path| std::fs::read_to_string(p).map_err(|e| Error::io(p, e));
        let (dir, weights_path) = if path.is_dir() {
            let found = ["model.safetensors", "pytorch_model.bin"].iter().map(|n| path.join(n)).find(|p| p.is_file());
            let weights = found.ok_or_else(|| {
                Error::InvalidInput(format!("{} has neither model.safetensors nor pytorch_model.bin", path.display()))
            })?;
            (path.to_path_buf(), weights)
        } else {
            (path.parent().unwrap_or(std::path::Path::new(".")).to_path_buf(), path.to_path_buf())
        };
        let config = text(&dir.join("config.json"))?;
        let preprocessor = dir.join("preprocessor_config.json");
        let preprocessor = if preprocessor.is_file() { Some(text(&preprocessor)?) } else { None };
        let tok_json = dir.join("tokenizer.json");
        let (tok_bytes, vocab, merges);
        let tokenizer = if tok_json.is_file() {
            tok_bytes = read(&tok_json)?;
            TokenizerFiles::Json(&tok_bytes)
        } else if dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file() {
            vocab = read(&dir.join("vocab.json"))?;
            merges = text(&dir.join("merges.txt"))?;
            TokenizerFiles::VocabMerges { vocab: &vocab, merges: &merges }
        } else {
            return Err(Error::InvalidInput(format!(
                "{} has no tokenizer.json (nor vocab.json and merges.txt)",
                dir.display()
            )));
        };
        let files =
            CheckpointFiles { config: &config, weights: read(&weights_path)?, tokenizer, preprocessor: preprocessor.as_deref() };
        pollster::block_on(Self::from_files_on(files, device, backend))
    }

    /// The segmentation settings this model was made for: its config's `segmentation` section over
    /// the official geometry scaled to its training size (see [`SegmentOptions::for_image_size`]).
    pub fn default_options(&self) -> SegmentOptions {
        let cfg = self.model.config();
        let official = SegmentOptions::for_image_size(cfg.vision_config.image_size);
        // The section was checked when the config was read.
        official.with(&cfg.segmentation).unwrap_or(official)
    }

    /// Where the image encoder runs, in words ("GPU: …" or "CPU (why not the GPU)").
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The image encoder on the chosen backend, projected.
    pub async fn image_features(&self, pixel_values: &Tensor) -> Result<ImageFeatures> {
        match &self.gpu {
            Some(g) => self.model.project(g.forward(pixel_values).await?),
            None => self.model.image_features(pixel_values),
        }
    }

    /// The GPU encoder, when the GPU backend runs.
    pub fn gpu(&self) -> Option<&GpuImageEncoder> {
        self.gpu.as_ref()
    }

    pub fn model(&self) -> &GroupViTModel {
        &self.model
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn preprocessor(&self) -> &PreprocessorConfig {
        &self.preprocessor
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Token ids `(T, context)` of `prompts`.
    pub fn tokenize(&self, prompts: &[String]) -> Result<Tensor> {
        let ids = self.tokenizer.encode(prompts)?;
        let cols = self.tokenizer.context_length();
        Ok(Tensor::from_vec(ids.concat(), (prompts.len(), cols), &self.device)?)
    }

    /// One normalised embedding per label `(C, projection_dim)`: each template filled with the
    /// label, embedded, normalised, averaged over templates and normalised again.
    pub fn label_embeddings(&self, labels: &[String], templates: &[String]) -> Result<Tensor> {
        check_labels(labels)?;
        let mut last = self.last_labels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((l, t, embeddings)) = last.as_ref() {
            if l == labels && t == templates {
                return Ok(embeddings.clone());
            }
        }
        let embeddings = self.embed_labels(labels, templates)?;
        *last = Some((labels.to_vec(), templates.to_vec(), embeddings.clone()));
        Ok(embeddings)
    }

    fn embed_labels(&self, labels: &[String], templates: &[String]) -> Result<Tensor> {
        let templates: Vec<&str> =
            if templates.is_empty() { vec![DEFAULT_TEMPLATE] } else { templates.iter().map(String::as_str).collect() };
        if let Some(t) = templates.iter().find(|t| !t.contains("{}")) {
            return Err(Error::InvalidInput(format!("the prompt template {t:?} has no {{}} for the label")));
        }
        let prompts: Vec<String> =
            labels.iter().flat_map(|l| templates.iter().map(move |t| t.replace("{}", l))).collect();
        let embeds = l2_normalize(&self.model.text_features(&self.tokenize(&prompts)?)?)?;
        let embeds = embeds.reshape((labels.len(), templates.len(), ()))?.mean(1)?;
        Ok(l2_normalize(&embeds)?)
    }

    /// Segments `photo` into `labels` (plus background) at the photo's resolution.
    pub async fn segment(
        &self,
        photo: &RgbImage,
        labels: &[String],
        templates: &[String],
        opts: &SegmentOptions,
    ) -> Result<Segmentation> {
        let embeddings = self.label_embeddings(labels, templates)?;
        self.segment_with_embeddings(photo, labels, &embeddings, opts).await
    }

    /// As [`Segmenter::segment`] with label embeddings computed beforehand (and reusable across photos).
    pub async fn segment_with_embeddings(
        &self,
        photo: &RgbImage,
        labels: &[String],
        embeddings: &Tensor,
        opts: &SegmentOptions,
    ) -> Result<Segmentation> {
        check_embeddings(labels, embeddings)?;
        let (pixels, windows) = self.windows(photo, opts)?;
        match &self.gpu {
            // Encoder and composition in one submission.
            Some(g) => {
                let request = windows.request(embeddings, self.scale(opts), opts);
                let out = g.segment(&pixels, &request).await?;
                Ok(segment::summarize(out.label_map, out.scores, classes(labels), windows.out))
            }
            None => {
                let encoded = EncodedPhoto { features: Encoded::Cpu(self.model.image_features(&pixels)?), windows };
                self.label_encoded(&encoded, labels, embeddings, opts).await
            }
        }
    }

    /// Runs the image encoder over a photo's windows once, for [`Segmenter::segment_encoded`] to
    /// label as often as the labels change. The geometry in `opts` (size, window, stride) is fixed
    /// here; the threshold and labels are not.
    pub async fn encode(&self, photo: &RgbImage, opts: &SegmentOptions) -> Result<EncodedPhoto> {
        let (pixels, windows) = self.windows(photo, opts)?;
        let features = match &self.gpu {
            Some(g) => Encoded::Gpu(g.encode(&pixels).await?),
            None => Encoded::Cpu(self.model.image_features(&pixels)?),
        };
        Ok(EncodedPhoto { features, windows })
    }

    /// Segments an encoded photo by labels: only the text encoder (when the labels are new) and the
    /// composition run. `opts` must have the geometry the photo was encoded with.
    pub async fn segment_encoded(
        &self,
        encoded: &EncodedPhoto,
        labels: &[String],
        templates: &[String],
        opts: &SegmentOptions,
    ) -> Result<Segmentation> {
        let embeddings = self.label_embeddings(labels, templates)?;
        self.label_encoded(encoded, labels, &embeddings, opts).await
    }

    /// The composition over kept features; `embeddings` are the labels' (checked by the callers).
    async fn label_encoded(&self, encoded: &EncodedPhoto, labels: &[String], embeddings: &Tensor, opts: &SegmentOptions) -> Result<Segmentation> {
        let w = &encoded.windows;
        if (w.size, w.window_side, w.stride) != (opts.size, opts.window, opts.stride) {
            return Err(Error::InvalidInput(
                "the photo was encoded with another size, window or stride: encode it again with these options".into(),
            ));
        }
        let scale = self.scale(opts);
        match (&encoded.features, &self.gpu) {
            (Encoded::Gpu(e), Some(g)) => {
                let out = g.compose(e, &w.request(embeddings, scale, opts)).await?;
                Ok(segment::summarize(out.label_map, out.scores, classes(labels), w.out))
            }
            (Encoded::Cpu(features), _) => {
                let scores = segment::slide(features, &w.origins, w.window, w.resized, embeddings, scale, opts)?;
                Ok(segment::label_photo(&scores, classes(labels), w.resized, w.out))
            }
            (Encoded::Gpu(_), None) => Err(Error::InvalidInput("the photo was encoded by another segmenter".into())),
        }
    }

    /// The photo resized for segmentation and cut into its windows `(B, 3, h, w)`.
    fn windows(&self, photo: &RgbImage, opts: &SegmentOptions) -> Result<(Tensor, Windows)> {
        let pixels = preprocess::segmentation_input(photo, &self.preprocessor, &opts.size, &self.device)?;
        let (_, _, h, w) = pixels.dims4()?;
        let (crops, origins, window) = segment::crop_windows(&pixels, opts)?;
        let windows = Windows {
            origins,
            window,
            resized: (h, w),
            out: (photo.height() as usize, photo.width() as usize),
            size: opts.size,
            window_side: opts.window,
            stride: opts.stride,
        };
        Ok((crops, windows))
    }

    fn scale(&self, opts: &SegmentOptions) -> f32 {
        self.model.logit_scale().min(opts.max_logit_scale)
    }

    /// Zero-shot classification: softmax over `logits_per_image` for the labels.
    pub async fn classify(&self, photo: &RgbImage, labels: &[String], templates: &[String]) -> Result<Vec<f32>> {
        let embeddings = self.label_embeddings(labels, templates)?;
        let pixels = preprocess::classification_input(photo, &self.preprocessor, &self.device)?;
        let image = l2_normalize(&self.image_features(&pixels).await?.image_embeds)?;
        let logits = (image.matmul(&embeddings.t()?)? * self.model.logit_scale() as f64)?;
        Ok(candle_nn::ops::softmax_last_dim(&logits)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// transformers' `segmentation_logits` `(labels, H, W)` for the photo resized to the segmentation
    /// size as one input: no windows, no background, no top-k, the logit scale applied twice uncapped.
    /// `embeddings` come from [`Segmenter::label_embeddings`].
    pub async fn raw_logits(&self, photo: &RgbImage, embeddings: &Tensor, opts: &SegmentOptions) -> Result<Tensor> {
        let pixels = preprocess::segmentation_input(photo, &self.preprocessor, &opts.size, &self.device)?;
        let (_, _, h, w) = pixels.dims4()?;
        let image = self.image_features(&pixels).await?;
        let scale = self.model.logit_scale() as f64;
        let logits = segmentation_logits(&image.group_embeds, &image.assignments, embeddings, scale, (h, w))?;
        Ok(logits.squeeze(0)?)
    }
}
