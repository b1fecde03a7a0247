//! A loaded checkpoint and what users ask of it: segment a photo by labels (at once, or encode it
//! once and label it as often as the labels change), classify it, or give transformers' raw
//! segmentation logits. The text side runs here; the image side is one `crate::backend`.

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::backend::{Backend, BackendChoice, Composition, Encoding, KernelTime, RunningBackend};
use crate::error::{Error, Result};
use crate::groups::{self, Groups};
use crate::checkpoint::weights::{WeightBytes, WeightRanges, Weights};
use crate::model::{self, l2_normalize, segmentation_logits, GroupViTConfig, ImageFeatures, TextEncoder};
use crate::preprocess::{self, PreprocessorConfig};
use crate::prompts::Templates;
use crate::refine;
use crate::segment::{self, Geometry, LabelOptions, SegmentOptions, SegmentOverrides, Segmentation, WindowLayout, BACKGROUND};
use crate::tokenize::TextTokenizer;

/// The tokenizer files a checkpoint comes with. `tokenizer.json` may be handed over owned, so that
/// its bytes (3.6 MB for CLIP's) are freed once the tokenizer is built rather than held while the
/// weights load (a WebAssembly memory keeps its high-water mark).
pub enum TokenizerFiles<'a> {
    Json(std::borrow::Cow<'a, [u8]>),
    VocabMerges { vocab: &'a [u8], merges: &'a str },
}

/// The contents of a checkpoint's files.
pub struct CheckpointFiles<'a> {
    pub config: &'a str,
    /// `model.safetensors` or `pytorch_model.bin`, read a tensor at a time.
    pub weights: Box<dyn WeightBytes>,
    pub tokenizer: TokenizerFiles<'a>,
    pub preprocessor: Option<&'a str>,
    /// The same weights file, read without blocking once the model is built (in the browser, the
    /// copy Cache Storage keeps on disk). Given for a safetensors file, the text encoder's token
    /// table stays there and the rows a prompt needs are read from it when labels are embedded.
    pub weight_ranges: Option<Box<dyn WeightRanges>>,
}

/// Labels one segmentation or classification takes at most: the composition holds a score plane
/// per label at the segmentation size (1 MB each at 448 × 597).
pub const MAX_LABELS: usize = 256;

/// Splits what a user typed ("cat, sofa ,, window") into labels: trimmed, non-empty, first
/// occurrence kept.
pub fn parse_labels(text: &str) -> Result<Vec<String>> {
    label_list(text.split([',', '\n']))
}

/// Bytes a weights file may have: four times the largest published GroupViT's f32 weights is
/// far beyond any of them.
#[cfg(native)]
pub const MAX_WEIGHTS_BYTES: u64 = 4 << 30;

/// Bytes a checkpoint's config, tokenizer or preprocessor file may have (CLIP's tokenizer.json is
/// about 2 MB).
#[cfg(native)]
const MAX_CHECKPOINT_TEXT_BYTES: u64 = 64 << 20;

/// Characters a label may have: a few words, which the prompt templates make a sentence (the text
/// encoder reads 77 tokens at most).
pub const MAX_LABEL_CHARS: usize = 300;

/// Labels given one by one: trimmed, non-empty, first occurrence (ignoring ASCII case) kept. Each
/// is checked against [`MAX_LABEL_CHARS`] and the count against [`MAX_LABELS`] as they come, so no
/// input, however long, costs more than one pass.
pub fn label_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>> {
    let mut labels: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for l in items.into_iter().map(str::trim).filter(|l| !l.is_empty()) {
        let chars = l.chars().count();
        if chars > MAX_LABEL_CHARS {
            let start: String = l.chars().take(24).collect();
            return Err(Error::InvalidInput(format!(
                "the label \"{start}…\" is {chars} characters long; a label has at most {MAX_LABEL_CHARS}: name what to find in a few words"
            )));
        }
        if seen.insert(l.to_ascii_lowercase()) {
            labels.push(l.to_owned());
            if labels.len() > MAX_LABELS {
                return Err(Error::InvalidInput(format!(
                    "more than {MAX_LABELS} labels: one segmentation takes at most {MAX_LABELS}; split them into several runs"
                )));
            }
        }
    }
    if labels.is_empty() {
        return Err(Error::InvalidInput("type at least one label, e.g. \"cat, sofa, window\"".into()));
    }
    Ok(labels)
}

fn check_labels(labels: &[String]) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::InvalidInput("give at least one label".into()));
    }
    if labels.len() > MAX_LABELS {
        return Err(Error::InvalidInput(format!("{} labels are more than the {MAX_LABELS} one run takes", labels.len())));
    }
    Ok(())
}

/// A label and its probability (zero-shot classification).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// `labels` with their probabilities `probs`, best first, the first `top_k` (all when `None`).
pub fn rank(labels: &[String], probs: &[f32], top_k: Option<usize>) -> Vec<LabelScore> {
    let mut ranked: Vec<LabelScore> =
        labels.iter().zip(probs).map(|(l, &p)| LabelScore { label: l.clone(), score: p }).collect();
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
    ranked.truncate(top_k.unwrap_or(usize::MAX));
    ranked
}

/// A photo run through the image encoder ([`Segmenter::encode`]), with the windows it was cut into.
/// Only the segmenter that made it can label it.
pub struct EncodedPhoto {
    owner: u64,
    layout: WindowLayout,
    encoding: Encoding,
}

impl EncodedPhoto {
    /// The photo's size `(width, height)`.
    pub fn size(&self) -> (u32, u32) {
        (self.layout.photo.1 as u32, self.layout.photo.0 as u32)
    }

    /// The geometry it was encoded with.
    pub fn geometry(&self) -> &Geometry {
        &self.layout.geometry
    }
}

/// Bytes of model weights a segmenter keeps, on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResidentWeights {
    /// In CPU memory (the wasm heap in the browser): the text encoder, and the image encoder when
    /// it runs on the CPU (on the GPU, only its position embeddings stay here).
    pub cpu: usize,
    /// In GPU buffers: the image encoder when it runs on the GPU.
    pub gpu: usize,
    /// Left in the weights file, not held: the token table when it stayed there (its rows read so
    /// far count in `cpu`).
    pub in_file: usize,
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

/// Prompts run through the text encoder together at most.
const PROMPTS_PER_BATCH: usize = 64;

/// Tells segmenters apart, so that a photo is only labelled by the one that encoded it.
static NEXT_SEGMENTER: AtomicU64 = AtomicU64::new(0);

/// A GroupViT checkpoint ready to segment: the text side, and the image side on one backend.
pub struct Segmenter {
    id: u64,
    config: GroupViTConfig,
    text: TextEncoder,
    logit_scale: f32,
    tokenizer: TextTokenizer,
    preprocessor: PreprocessorConfig,
    device: Device,
    image: Backend,
    running: RunningBackend,
    resident: ResidentWeights,
    /// Where the token table's rows are read from, when it stayed in the weights file.
    weight_ranges: Option<Box<dyn WeightRanges>>,
    /// The last labels and templates embedded, and their embeddings: a batch of photos segmented
    /// by the same words runs the text encoder once.
    last_labels: std::sync::Mutex<Option<(Vec<String>, Templates, Tensor)>>,
    /// The empty prompt's embedding ([`LabelOptions::nothing_prompt`]), made once.
    nothing: std::sync::OnceLock<Tensor>,
}

impl Segmenter {
    /// Builds a segmenter whose image encoder and composition run on `choice`. The CPU image
    /// encoder is built either way (the GPU's is uploaded from it) and dropped once on the GPU.
    pub async fn from_files_on(files: CheckpointFiles<'_>, device: &Device, choice: BackendChoice) -> Result<Self> {
        let config = GroupViTConfig::from_json(files.config)?;
        // The `segmentation` section over the official geometry must make working options: one that
        // does not is an error naming the field, not a section quietly dropped.
        SegmentOptions::for_image_size(config.vision_config.image_size)
            .with(&SegmentOverrides::from(&config.segmentation))
            .map_err(|e| Error::Config(format!("its segmentation section: {e}")))?;
        let preprocessor = match files.preprocessor {
            Some(json) => PreprocessorConfig::from_json(json)?,
            None => PreprocessorConfig::default(),
        };
        let weights = Weights::read(files.weights, device)?;
        let vb = weights.var_builder();
        let text = TextEncoder::leaving_token_table(vb.clone(), &config, files.weight_ranges.as_ref().map(|_| &weights))?;
        // A PyTorch zip has no table at a place to read rows from: then it was read whole.
        let weight_ranges = files.weight_ranges.filter(|_| text.token_rows().is_some());
        let logit_scale = model::logit_scale(&vb)?;
        let text_bytes = weights.fetched_bytes();
        let cpu_image = model::ImageEncoder::new(vb, &config)?;
        let image_bytes = weights.fetched_bytes() - text_bytes;
        drop(weights);
        // Parsed once the weights file is read and let go: in the browser the file's pieces and
        // the tokenizer's tables are then never in the module's memory together.
        let context = config.text_config.max_position_embeddings;
        let tokenizer = match files.tokenizer {
            TokenizerFiles::Json(json) => TextTokenizer::from_tokenizer_json(&json, context)?,
            TokenizerFiles::VocabMerges { vocab, merges } => TextTokenizer::from_vocab_merges(vocab, merges, context)?,
        };
        let (image, running) = Backend::open(cpu_image, choice).await?;
        let (image_cpu, image_gpu) = image.weight_bytes(image_bytes);
        let resident = ResidentWeights { cpu: text_bytes + image_cpu, gpu: image_gpu, in_file: 0 };
        Ok(Self {
            id: NEXT_SEGMENTER.fetch_add(1, Ordering::Relaxed),
            config,
            text,
            logit_scale,
            tokenizer,
            preprocessor,
            device: device.clone(),
            image,
            running,
            resident,
            weight_ranges,
            last_labels: Default::default(),
            nothing: Default::default(),
        })
    }

    /// Loads a checkpoint directory (`config.json`, `model.safetensors` or `pytorch_model.bin`,
    /// `tokenizer.json` or `vocab.json` + `merges.txt`, optionally `preprocessor_config.json`), or a
    /// weights file with those files beside it.
    #[cfg(native)]
    pub fn load(path: &std::path::Path, device: &Device) -> Result<Self> {
        Self::load_on(path, device, BackendChoice::Cpu)
    }

    /// [`Segmenter::load`] with the image encoder on `choice`.
    #[cfg(native)]
    pub fn load_on(path: &std::path::Path, device: &Device, choice: BackendChoice) -> Result<Self> {
        let bounded = |p: &std::path::Path, cap: u64, what: &str| {
            crate::files::read_bounded(p, cap, what).map_err(|e| match e {
                Error::InvalidInput(m) => Error::InvalidInput(format!("{}: {m}", p.display())),
                e => e,
            })
        };
        let read = |p: &std::path::Path| bounded(p, MAX_CHECKPOINT_TEXT_BYTES, "checkpoint files");
        let text = |p: &std::path::Path| {
            String::from_utf8(read(p)?).map_err(|_| Error::InvalidInput(format!("{} is not UTF-8 text", p.display())))
        };
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
        let (vocab, merges);
        let tokenizer = if tok_json.is_file() {
            TokenizerFiles::Json(read(&tok_json)?.into())
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
        let files = CheckpointFiles {
            config: &config,
            weights: Box::new(bounded(&weights_path, MAX_WEIGHTS_BYTES, "weights files")?),
            tokenizer,
            preprocessor: preprocessor.as_deref(),
            weight_ranges: None,
        };
        pollster::block_on(Self::from_files_on(files, device, choice))
    }

    /// The segmentation settings this model was made for: its config's `segmentation` section over
    /// the official geometry scaled to its training size (see [`SegmentOptions::for_image_size`]).
    pub fn default_options(&self) -> SegmentOptions {
        let official = SegmentOptions::for_image_size(self.config.vision_config.image_size);
        // The section was checked when the model was loaded (`from_files_on`).
        official.with(&SegmentOverrides::from(&self.config.segmentation)).unwrap_or(official)
    }

    /// Says which option cannot work with this model (windows and photos smaller than a patch).
    pub fn check_options(&self, opts: &SegmentOptions) -> Result<()> {
        opts.check()?;
        let patch = self.config.vision_config.patch_size;
        let g = &opts.geometry;
        if g.window_side < patch || (g.size.short_side as usize) < patch {
            return Err(Error::InvalidInput(format!(
                "the window ({}) and the short side ({}) must be at least this model's patch size, {patch} pixels",
                g.window_side, g.size.short_side
            )));
        }
        Ok(())
    }

    /// Where the image encoder runs.
    pub fn backend(&self) -> &RunningBackend {
        &self.running
    }

    /// The image features of `pixel_values` with each GPU kernel's time (timestamp queries), for
    /// benchmarks and tests: an error where the image encoder runs on the CPU or the GPU cannot time.
    pub async fn profile_image_features(&self, pixel_values: &Tensor) -> Result<(ImageFeatures, Vec<KernelTime>)> {
        self.image.profile_features(pixel_values).await
    }

    /// Bytes of weights kept in CPU memory and on the GPU.
    pub fn resident_weights(&self) -> ResidentWeights {
        match self.text.token_rows() {
            Some(rows) => ResidentWeights { cpu: self.resident.cpu + rows.held_bytes(), in_file: rows.table_bytes(), ..self.resident },
            None => self.resident,
        }
    }

    pub fn config(&self) -> &GroupViTConfig {
        &self.config
    }

    /// `exp(logit_scale)`, the contrastive temperature.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
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

    /// The projected image and group embeddings of model inputs, on the backend.
    pub async fn image_features(&self, pixel_values: &Tensor) -> Result<ImageFeatures> {
        self.image.features(pixel_values).await
    }

    /// Token ids `(T, context)` of `prompts`.
    pub fn tokenize(&self, prompts: &[String]) -> Result<Tensor> {
        let ids = self.tokenizer.encode(prompts)?;
        let cols = self.tokenizer.context_length();
        Ok(Tensor::from_vec(ids.concat(), (prompts.len(), cols), &self.device)?)
    }

    /// Projected, not normalised, text embeddings of `prompts` (`get_text_features`).
    pub async fn text_features(&self, prompts: &[String]) -> Result<Tensor> {
        let ids = self.tokenize(prompts)?;
        self.read_token_rows(&ids).await?;
        self.text.forward(&ids)
    }

    /// Reads the token table's rows that `ids` need and were not read yet, where the table stayed
    /// in the weights file.
    async fn read_token_rows(&self, ids: &Tensor) -> Result<()> {
        let (Some(rows), Some(file)) = (self.text.token_rows(), &self.weight_ranges) else {
            return Ok(());
        };
        let missing = rows.missing(&ids.flatten_all()?.to_vec1::<u32>()?)?;
        if missing.is_empty() {
            return Ok(());
        }
        let read = file.read_ranges(missing.iter().map(|&id| rows.file_range(id)).collect()).await?;
        for (id, bytes) in missing.into_iter().zip(read) {
            rows.insert(id, bytes)?;
        }
        Ok(())
    }

    /// One normalised embedding per label `(C, projection_dim)`: each label's prompts (see
    /// [`Templates::prompts`]) embedded, normalised, averaged and normalised again.
    pub async fn label_embeddings(&self, labels: &[String], templates: &Templates) -> Result<Tensor> {
        check_labels(labels)?;
        // Not held across the reads of token rows below: another call may run meanwhile.
        if let Some((l, t, embeddings)) = self.last_labels.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if l == labels && t == templates {
                return Ok(embeddings.clone());
            }
        }
        let embeddings = self.embed_labels(labels, templates).await?;
        *self.last_labels.lock().unwrap_or_else(|e| e.into_inner()) = Some((labels.to_vec(), templates.clone(), embeddings.clone()));
        Ok(embeddings)
    }

    async fn embed_labels(&self, labels: &[String], templates: &Templates) -> Result<Tensor> {
        // A label that is a sentence has one prompt, the others one per template: embedded in one
        // batch, averaged per label.
        let per_label: Vec<Vec<String>> = labels.iter().map(|l| templates.prompts(l)).collect();
        let prompts: Vec<String> = per_label.iter().flatten().cloned().collect();
        // In batches: CLIP's 80 templates over many labels would otherwise hold thousands of
        // prompts' activations at once.
        let mut embeds = Vec::with_capacity(prompts.len().div_ceil(PROMPTS_PER_BATCH));
        for chunk in prompts.chunks(PROMPTS_PER_BATCH) {
            embeds.push(l2_normalize(&self.text_features(chunk).await?)?);
        }
        let embeds = Tensor::cat(&embeds, 0)?;
        let mut start = 0;
        let mut means = Vec::with_capacity(labels.len());
        for p in &per_label {
            means.push(embeds.narrow(0, start, p.len())?.mean_keepdim(0)?);
            start += p.len();
        }
        Ok(l2_normalize(&Tensor::cat(&means, 0)?)?)
    }

    /// Segments `photo` into `labels` (plus background) at the photo's resolution.
    pub async fn segment(
        &self,
        photo: &RgbImage,
        labels: &[String],
        templates: &Templates,
        opts: &SegmentOptions,
    ) -> Result<Segmentation> {
        let embeddings = self.label_embeddings(labels, templates).await?;
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
        self.check_options(opts)?;
        let (pixels, layout) = self.windows(photo, &opts.geometry)?;
        let (embeddings, classes) = self.with_nothing(embeddings.clone(), labels, &opts.labelling).await?;
        let job = self.composition(&layout, &embeddings, &classes, &opts.labelling);
        let seg = self.image.segment(&pixels, &job).await?;
        Ok(if opts.labelling.nothing_prompt { seg.last_class_as_background() } else { seg })
    }

    /// Runs the image encoder over a photo's windows once, for [`Segmenter::segment_encoded`] to
    /// label as often as the labels or label options change.
    pub async fn encode(&self, photo: &RgbImage, geometry: &Geometry) -> Result<EncodedPhoto> {
        self.check_options(&SegmentOptions { geometry: *geometry, ..self.default_options() })?;
        let (pixels, layout) = self.windows(photo, geometry)?;
        let encoding = self.image.encode(&pixels, &layout).await?;
        Ok(EncodedPhoto { owner: self.id, layout, encoding })
    }

    /// Segments an encoded photo by labels: only the text encoder (when the labels are new) and the
    /// composition run.
    pub async fn segment_encoded(
        &self,
        encoded: &EncodedPhoto,
        labels: &[String],
        templates: &Templates,
        opts: &LabelOptions,
    ) -> Result<Segmentation> {
        if encoded.owner != self.id {
            return Err(Error::InvalidInput("the photo was encoded by another segmenter: encode it with this one".into()));
        }
        let embeddings = self.label_embeddings(labels, templates).await?;
        let (embeddings, classes) = self.with_nothing(embeddings, labels, opts).await?;
        let job = self.composition(&encoded.layout, &embeddings, &classes, opts);
        let seg = self.image.compose(&encoded.encoding, &job).await?;
        Ok(if opts.nothing_prompt { seg.last_class_as_background() } else { seg })
    }

    /// The labels' embeddings and the segmentation's classes, with the empty prompt's after them
    /// where `opts.nothing_prompt`.
    async fn with_nothing(&self, embeddings: Tensor, labels: &[String], opts: &LabelOptions) -> Result<(Tensor, Vec<String>)> {
        let mut classes = classes(labels);
        if !opts.nothing_prompt {
            return Ok((embeddings, classes));
        }
        if labels.len() >= MAX_LABELS {
            return Err(Error::InvalidInput(format!("{} labels and the empty prompt are more than the {MAX_LABELS} one run takes", labels.len())));
        }
        let nothing = match self.nothing.get() {
            Some(t) => t.clone(),
            None => {
                let t = self.embed_labels(&[String::new()], &Templates::default()).await?;
                self.nothing.get_or_init(|| t).clone()
            }
        };
        classes.push(String::new());
        Ok((Tensor::cat(&[&embeddings, &nothing], 0)?, classes))
    }

    /// The groups each grouping block formed in an encoded photo, with no labels (the groups view):
    /// read from the encoding, the encoder does not run again.
    pub async fn groups(&self, encoded: &EncodedPhoto) -> Result<Groups> {
        if encoded.owner != self.id {
            return Err(Error::InvalidInput("the photo was encoded by another segmenter: encode it with this one".into()));
        }
        let (maps, grid) = self.image.stage_maps(&encoded.encoding).await?;
        groups::hard_groups(&maps, grid, &encoded.layout)
    }

    fn composition<'a>(
        &self,
        layout: &'a WindowLayout,
        labels: &'a Tensor,
        classes: &'a [String],
        options: &'a LabelOptions,
    ) -> Composition<'a> {
        Composition { layout, labels, classes, logit_scale: self.logit_scale, options }
    }

    /// The photo resized and normalised for segmentation `(1, 3, H, W)` and where its windows lie
    /// (the backends cut them as they encode), once the windows are known to be within budget.
    fn windows(&self, photo: &RgbImage, geometry: &Geometry) -> Result<(Tensor, WindowLayout)> {
        let (w, h) = geometry.size.fit(photo.width(), photo.height());
        segment::check_window_budget((h as usize, w as usize), geometry)?;
        let patch = self.config.vision_config.patch_size as u32;
        if w.min(h) < patch {
            return Err(Error::InvalidInput(format!(
                "the photo is {}×{}: resized to at most {} pixels long it is {w}×{h}, narrower than one {patch}-pixel patch",
                photo.width(),
                photo.height(),
                geometry.size.max_long_side
            )));
        }
        let pixels = preprocess::segmentation_input(photo, &self.preprocessor, &geometry.size, &self.device)?;
        let (_, _, h, w) = pixels.dims4()?;
        let size = (photo.height() as usize, photo.width() as usize);
        let (grid, scale) = refine::grid_size((h, w), size, patch as usize);
        let guide = preprocess::refinement_guide(photo, &self.preprocessor, grid, scale);
        let layout = WindowLayout::new((h, w), size, *geometry, guide)?;
        Ok((pixels, layout))
    }

    /// Zero-shot classification: softmax over `logits_per_image` for the labels.
    pub async fn classify(&self, photo: &RgbImage, labels: &[String], templates: &Templates) -> Result<Vec<f32>> {
        let embeddings = self.label_embeddings(labels, templates).await?;
        let pixels = preprocess::classification_input(photo, &self.preprocessor, &self.device)?;
        let image = l2_normalize(&self.image_features(&pixels).await?.image_embeds)?;
        let logits = (image.matmul(&embeddings.t()?)? * self.logit_scale as f64)?;
        Ok(candle_nn::ops::softmax_last_dim(&logits)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// transformers' `segmentation_logits` `(labels, H, W)` for the photo resized to the segmentation
    /// size as one input: no windows, no background, no top-k, the logit scale applied twice uncapped.
    /// `embeddings` come from [`Segmenter::label_embeddings`].
    pub async fn raw_logits(&self, photo: &RgbImage, embeddings: &Tensor, geometry: &Geometry) -> Result<Tensor> {
        let pixels = preprocess::segmentation_input(photo, &self.preprocessor, &geometry.size, &self.device)?;
        let (_, _, h, w) = pixels.dims4()?;
        let image = self.image_features(&pixels).await?;
        let scale = self.logit_scale as f64;
        let logits = segmentation_logits(&image.group_embeds, &image.assignments, embeddings, scale, (h, w))?;
        Ok(logits.squeeze(0)?)
    }
}
