//! The JavaScript-facing API (wasm-bindgen), kept thin: bytes in, plain arrays out. Errors become
//! JS `Error`s carrying the library's message.

use candle_core::Device;
use wasm_bindgen::prelude::*;

use crate::pipeline::{self, CheckpointFiles, TokenizerFiles};
use crate::preprocess;
use crate::segment::SegmentOptions;

fn js(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// A loaded GroupViT checkpoint.
#[wasm_bindgen]
pub struct Segmenter {
    inner: pipeline::Segmenter,
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

#[wasm_bindgen]
impl Segmenter {
    /// Builds a segmenter from a checkpoint's files: `config.json` text, the weights
    /// (`model.safetensors` or `pytorch_model.bin`) bytes, `tokenizer.json` bytes and, optionally,
    /// `preprocessor_config.json` text.
    #[wasm_bindgen(js_name = fromFiles)]
    pub fn from_files(
        config: &str,
        weights: Vec<u8>,
        tokenizer_json: &[u8],
        preprocessor: Option<String>,
    ) -> Result<Segmenter, JsError> {
        let files = CheckpointFiles {
            config,
            weights,
            tokenizer: TokenizerFiles::Json(tokenizer_json),
            preprocessor: preprocessor.as_deref(),
        };
        Ok(Segmenter { inner: pipeline::Segmenter::from_files(files, &Device::Cpu).map_err(js)? })
    }

    /// Segments an encoded photo (JPEG, PNG, WebP, GIF, BMP) by comma-separated `labels`.
    /// `backgroundThreshold` defaults to 0.95; pass a negative number for no background.
    pub fn segment(&self, photo: &[u8], labels: &str, background_threshold: Option<f32>) -> Result<SegmentResult, JsError> {
        let labels = pipeline::parse_labels(labels).map_err(js)?;
        let photo = preprocess::decode(photo).map_err(js)?;
        let threshold = background_threshold.unwrap_or(0.95);
        let opts = SegmentOptions { background_threshold: (threshold >= 0.0).then_some(threshold), ..Default::default() };
        let s = self.inner.segment(&photo, &labels, &[], &opts).map_err(js)?;
        Ok(SegmentResult {
            width: s.width,
            height: s.height,
            summary_json: serde_json::to_string(&s.summary).unwrap_or_default(),
            colours: (0..s.classes.len()).flat_map(crate::render::class_colour).collect(),
            classes: s.classes,
            label_map: s.label_map,
            scores: s.scores,
        })
    }

    /// Zero-shot classification: one probability per label, in the order given.
    pub fn classify(&self, photo: &[u8], labels: &str) -> Result<Vec<f32>, JsError> {
        let labels = pipeline::parse_labels(labels).map_err(js)?;
        let photo = preprocess::decode(photo).map_err(js)?;
        self.inner.classify(&photo, &labels, &[]).map_err(js)
    }
}
