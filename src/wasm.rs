//! The JavaScript-facing API (wasm-bindgen), kept thin: bytes in, plain arrays out, promises for
//! everything that may run on the GPU. Errors become JS `Error`s carrying the library's message.

use std::rc::Rc;

use candle_core::Device;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::pipeline::{self, Backend, CheckpointFiles, TokenizerFiles};
use crate::preprocess;
use crate::segment::{SegmentOptions, SegmentOverrides};

fn js(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// A loaded GroupViT checkpoint.
#[wasm_bindgen]
pub struct Segmenter {
    // Shared with the futures behind the promises `segment` and `classify` return.
    inner: Rc<pipeline::Segmenter>,
}

/// A photo run through the image encoder once (`Segmenter.encode`): segmenting it again with
/// other labels or another threshold runs only the text encoder and the composition.
#[wasm_bindgen]
pub struct EncodedImage {
    inner: Rc<pipeline::EncodedPhoto>,
}

impl From<crate::Segmentation> for SegmentResult {
    fn from(s: crate::Segmentation) -> Self {
        SegmentResult {
            width: s.width,
            height: s.height,
            summary_json: serde_json::to_string(&s.summary).unwrap_or_default(),
            colours: (0..s.classes.len()).flat_map(crate::render::class_colour).collect(),
            classes: s.classes,
            label_map: s.label_map,
            scores: s.scores,
        }
    }
}

#[wasm_bindgen]
impl EncodedImage {
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.inner.size().0
    }

    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.inner.size().1
    }
}

/// A label per pixel of the photo; class 0 is background.
#[wasm_bindgen(getter_with_clone)]
pub struct SegmentResult {
    pub width: u32,
    pub height: u32,
    pub classes: Vec<String>,
    /// RGB of each class, three bytes a class: the same colours as the CLI's overlays.
    pub colours: Vec<u8>,
    #[wasm_bindgen(js_name = labelMap)]
    pub label_map: Vec<u16>,
    pub scores: Vec<f32>,
    /// JSON array of `{label, share, mean_score, bbox}`, one per class.
    #[wasm_bindgen(js_name = summaryJson)]
    pub summary_json: String,
}

/// `segment`'s options, as JSON from JS; every field optional.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsSegmentOptions {
    /// Default: the model's (0.95 for the published checkpoints); a negative threshold means no
    /// background.
    background_threshold: Option<f32>,
    /// Side the photo's short side is resized to (default: twice the model's training size, 448 for
    /// the published checkpoints; window and stride likewise 2× and 1×).
    short_side: Option<u32>,
    window: Option<usize>,
    stride: Option<usize>,
    /// Prompt templates with `{}` for the label (default "a photo of a {}.").
    templates: Option<Vec<String>>,
}

impl JsSegmentOptions {
    /// The options over `defaults` (the model's own, see `Segmenter::default_options`).
    fn parse(json: Option<&str>, defaults: SegmentOptions) -> crate::Result<(SegmentOptions, Vec<String>)> {
        let o: Self = match json {
            Some(j) if !j.trim().is_empty() => serde_json::from_str(j)
                .map_err(|e| crate::Error::InvalidInput(format!("segment options: {e}")))?,
            _ => Self::default(),
        };
        if let Some(s) = o.short_side.filter(|&s| s < 16) {
            return Err(crate::Error::InvalidInput(format!("shortSide {s} is too small (at least 16)")));
        }
        let overrides = SegmentOverrides {
            short_side: o.short_side,
            window: o.window,
            stride: o.stride,
            background_threshold: o.background_threshold,
        };
        let opts = defaults.with(&overrides)?;
        Ok((opts, o.templates.unwrap_or_default()))
    }
}

fn backend_of(name: Option<String>) -> Result<Backend, JsError> {
    match name.as_deref().unwrap_or("auto") {
        "auto" => Ok(Backend::Auto),
        "webgpu" => Ok(Backend::Gpu),
        "cpu" => Ok(Backend::Cpu),
        other => Err(JsError::new(&format!("backend {other:?} is not one of \"auto\", \"webgpu\", \"cpu\""))),
    }
}

#[wasm_bindgen]
impl Segmenter {
    /// Builds a segmenter from a checkpoint's files: `config.json` text, the weights
    /// (`model.safetensors` or `pytorch_model.bin`) bytes, `tokenizer.json` bytes, optionally
    /// `preprocessor_config.json` text, and the backend: `"auto"` (a hardware GPU through WebGPU,
    /// else the CPU), `"webgpu"` (any WebGPU adapter, software ones included) or `"cpu"`.
    pub async fn load(
        config: String,
        weights: Vec<u8>,
        tokenizer_json: Vec<u8>,
        preprocessor: Option<String>,
        backend: Option<String>,
    ) -> Result<Segmenter, JsError> {
        let files = CheckpointFiles {
            config: &config,
            weights,
            tokenizer: TokenizerFiles::Json(&tokenizer_json),
            preprocessor: preprocessor.as_deref(),
        };
        let inner = pipeline::Segmenter::from_files_on(files, &Device::Cpu, backend_of(backend)?).await.map_err(js)?;
        Ok(Segmenter { inner: Rc::new(inner) })
    }

    /// Where segmentation runs, in words: "GPU: …" or "CPU (why not the GPU)".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.inner.backend().to_owned()
    }

    /// Segments an encoded photo (JPEG, PNG, WebP, GIF, BMP) by comma-separated `labels`; resolves
    /// to a `SegmentResult`. `options` is JSON: `{backgroundThreshold, shortSide, window, stride,
    /// templates}`, each optional (a negative `backgroundThreshold` means no background).
    pub fn segment(&self, photo: Vec<u8>, labels: String, options: Option<String>) -> js_sys::Promise {
        self.segment_photo(preprocess::decode(&photo), labels, options)
    }

    /// As `segment`, for raw RGBA pixels (`ImageData.data`) of a `width × height` image.
    #[wasm_bindgen(js_name = segmentPixels)]
    pub fn segment_pixels(&self, rgba: Vec<u8>, width: u32, height: u32, labels: String, options: Option<String>) -> js_sys::Promise {
        self.segment_photo(preprocess::from_rgba(&rgba, width, height), labels, options)
    }

    /// Runs the image encoder over an encoded photo once; resolves to an `EncodedImage` for
    /// `segmentEncoded`. `options` as for `segment`; its size, window and stride are fixed here.
    pub fn encode(&self, photo: Vec<u8>, options: Option<String>) -> js_sys::Promise {
        self.encode_photo(preprocess::decode(&photo), options)
    }

    /// As `encode`, for raw RGBA pixels of a `width × height` image.
    #[wasm_bindgen(js_name = encodePixels)]
    pub fn encode_pixels(&self, rgba: Vec<u8>, width: u32, height: u32, options: Option<String>) -> js_sys::Promise {
        self.encode_photo(preprocess::from_rgba(&rgba, width, height), options)
    }

    /// Segments an `EncodedImage` by `labels` without running the image encoder again; resolves to
    /// a `SegmentResult`. `options` must keep the size, window and stride it was encoded with.
    #[wasm_bindgen(js_name = segmentEncoded)]
    pub fn segment_encoded(&self, encoded: &EncodedImage, labels: String, options: Option<String>) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        let encoded = Rc::clone(&encoded.inner);
        future_to_promise(async move {
            let labels = pipeline::parse_labels(&labels).map_err(js)?;
            let (opts, templates) = JsSegmentOptions::parse(options.as_deref(), inner.default_options()).map_err(js)?;
            let s = inner.segment_encoded(&encoded, &labels, &templates, &opts).await.map_err(js)?;
            Ok(SegmentResult::from(s).into())
        })
    }

    /// Zero-shot classification: resolves to one probability per label (a `Float32Array`), in
    /// the order given.
    pub fn classify(&self, photo: Vec<u8>, labels: String) -> js_sys::Promise {
        self.classify_photo(preprocess::decode(&photo), labels)
    }

    /// As `classify`, for raw RGBA pixels of a `width × height` image.
    #[wasm_bindgen(js_name = classifyPixels)]
    pub fn classify_pixels(&self, rgba: Vec<u8>, width: u32, height: u32, labels: String) -> js_sys::Promise {
        self.classify_photo(preprocess::from_rgba(&rgba, width, height), labels)
    }
}

impl Segmenter {
    fn segment_photo(&self, photo: crate::Result<image::RgbImage>, labels: String, options: Option<String>) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        future_to_promise(async move {
            let labels = pipeline::parse_labels(&labels).map_err(js)?;
            let (opts, templates) = JsSegmentOptions::parse(options.as_deref(), inner.default_options()).map_err(js)?;
            let photo = photo.map_err(js)?;
            let s = inner.segment(&photo, &labels, &templates, &opts).await.map_err(js)?;
            Ok(SegmentResult::from(s).into())
        })
    }

    fn encode_photo(&self, photo: crate::Result<image::RgbImage>, options: Option<String>) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        future_to_promise(async move {
            let (opts, _) = JsSegmentOptions::parse(options.as_deref(), inner.default_options()).map_err(js)?;
            let photo = photo.map_err(js)?;
            let encoded = inner.encode(&photo, &opts).await.map_err(js)?;
            Ok(EncodedImage { inner: Rc::new(encoded) }.into())
        })
    }

    fn classify_photo(&self, photo: crate::Result<image::RgbImage>, labels: String) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        future_to_promise(async move {
            let labels = pipeline::parse_labels(&labels).map_err(js)?;
            let photo = photo.map_err(js)?;
            let probs = inner.classify(&photo, &labels, &[]).await.map_err(js)?;
            Ok(js_sys::Float32Array::from(probs.as_slice()).into())
        })
    }
}
