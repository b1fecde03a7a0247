//! The JavaScript-facing API (wasm-bindgen), kept thin: a `Photo` decoded once and taken by every
//! operation, options and results as plain objects (camelCase), labels parsed here only, promises
//! for everything that may run on the GPU. Errors become JS `Error`s carrying the library's message.

use std::ops::Range;
use std::rc::Rc;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::coco;
use crate::detect::{self, DetectOptions};
use crate::checkpoint::convert::{HeldBytes, StoredAs, StreamingConversion};
use crate::checkpoint::weights::{ArrivingBytes, RangesRead, WeightBytes, WeightRanges};
use crate::pipeline::{self, CheckpointFiles, TokenizerFiles};
use crate::segment::{self, Background, SegmentOptions, SegmentOverrides, Segmentation};
use crate::{ground, phrases, preprocess, BackendChoice, RunningBackend, Templates};

fn js(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// A weights file left in JavaScript's memory, copied in a tensor at a time (see [`WeightBytes`]).
/// A JS value belongs to the thread (worker) that made it: this one is read, and dropped, only on
/// the thread that loads the model, and refuses any other.
struct JsBytes {
    array: std::mem::ManuallyDrop<js_sys::Uint8Array>,
    len: usize,
    owner: std::thread::ThreadId,
}

impl JsBytes {
    fn new(array: js_sys::Uint8Array) -> Self {
        let len = array.length() as usize;
        JsBytes { array: std::mem::ManuallyDrop::new(array), len, owner: std::thread::current().id() }
    }
}

// SAFETY: the array is touched only on `owner`'s thread (`read_at` checks; `drop` leaks it elsewhere).
unsafe impl Send for JsBytes {}
unsafe impl Sync for JsBytes {}

impl WeightBytes for JsBytes {
    fn len(&self) -> usize {
        self.len
    }

    fn read_at(&self, start: usize, out: &mut [u8]) -> crate::Result<()> {
        if std::thread::current().id() != self.owner {
            return Err(crate::Error::Weights("the weights were read off the thread that holds them".into()));
        }
        self.array.subarray(start as u32, (start + out.len()) as u32).copy_to(out);
        Ok(())
    }
}

impl Drop for JsBytes {
    fn drop(&mut self) {
        if std::thread::current().id() == self.owner {
            // SAFETY: dropped once, here.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.array) };
        }
    }
}

/// The most bytes a weights file may have in the browser: a WebAssembly memory holds at most 4 GB,
/// the model's weights and its work together.
const MAX_WEIGHTS_BYTES: usize = 2 << 30;

/// A weights file streamed into the module as it downloads (or as a file or Cache Storage reads),
/// chunk by chunk, for `Segmenter.load`: no whole copy of it is ever held in JavaScript, and the
/// module releases its pieces as the model reads them ([`ArrivingBytes`]).
#[wasm_bindgen]
pub struct WeightsUpload {
    bytes: ArrivingBytes,
    cap: usize,
}

#[wasm_bindgen]
impl WeightsUpload {
    /// `cap`: the most bytes to accept, if fewer than [`max_weights_bytes`] (a page that would
    /// rather refuse a model than hold it).
    #[wasm_bindgen(constructor)]
    pub fn new(cap: Option<f64>) -> Result<WeightsUpload, JsError> {
        Ok(WeightsUpload { bytes: ArrivingBytes::new(), cap: weights_cap(cap)? })
    }

    /// Appends the file's next bytes as one piece, released once the model has read all of it
    /// (the package hands over pieces of a megabyte); refuses to grow past the cap.
    pub fn push(&mut self, piece: Vec<u8>) -> Result<(), JsError> {
        refuse_past_cap(self.bytes.len() + piece.len(), self.cap)?;
        self.bytes.push_piece(piece);
        Ok(())
    }

    /// Bytes received so far.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.bytes.len() as f64
    }
}

/// The most bytes of weights a load takes: `maxWeightsBytes` if given, never past [`MAX_WEIGHTS_BYTES`].
fn weights_cap(cap: Option<f64>) -> Result<usize, JsError> {
    match cap {
        None => Ok(MAX_WEIGHTS_BYTES),
        Some(c) if c.is_finite() && c >= 1.0 => Ok((c as usize).min(MAX_WEIGHTS_BYTES)),
        Some(c) => Err(JsError::new(&format!("maxWeightsBytes must be a positive number of bytes, not {c}"))),
    }
}

/// Refuses a weights file announced (by its download's length or a file's size) as larger than the
/// module loads or `cap` (`maxWeightsBytes`), before any of it is read.
#[wasm_bindgen(js_name = refuseWeightsOver)]
pub fn refuse_weights_over(bytes: f64, cap: Option<f64>) -> Result<(), JsError> {
    let cap = weights_cap(cap)?;
    if bytes > cap as f64 {
        return Err(JsError::new(&too_large_weights(bytes as usize, cap, false)));
    }
    Ok(())
}

/// Refuses a file that has grown to `bytes` past `cap` as it arrives.
fn refuse_past_cap(bytes: usize, cap: usize) -> Result<(), JsError> {
    if bytes > cap {
        return Err(JsError::new(&too_large_weights(bytes, cap, true)));
    }
    Ok(())
}

fn too_large_weights(bytes: usize, cap: usize, growing: bool) -> String {
    let mb = |b: usize| format!("{:.1}", b as f64 / (1u64 << 20) as f64);
    let whose = if cap < MAX_WEIGHTS_BYTES { "this load takes (maxWeightsBytes)" } else { "the browser loads" };
    format!(
        "the weights file is {}{} MB; {whose} weights files of at most {} MB: use a smaller model or an int8 copy (groupseg convert --to int8)",
        if growing { "over " } else { "" },
        mb(bytes),
        mb(cap)
    )
}

/// The most bytes a weights file may have (`WeightsUpload.push` refuses more); a download whose
/// announced size is past it is refused before it starts.
#[wasm_bindgen(js_name = maxWeightsBytes)]
pub fn max_weights_bytes() -> f64 {
    MAX_WEIGHTS_BYTES as f64
}

/// The weights file again, as `readRange(start, end)` → `Promise<Uint8Array>` (the page slices the
/// Blob Cache Storage keeps on disk): where the token table's rows are read once the model is built.
struct JsRanges {
    read_range: js_sys::Function,
}

impl WeightRanges for JsRanges {
    fn read_ranges(&self, ranges: Vec<Range<usize>>) -> RangesRead<'_> {
        let failed = |e: JsValue| {
            crate::Error::WeightsFile(match e.dyn_ref::<js_sys::Error>() {
                Some(error) => String::from(error.message()),
                None => e.as_string().unwrap_or_else(|| format!("{e:?}")),
            })
        };
        Box::pin(async move {
            // Every read is asked for before the first is awaited: the browser runs them together.
            let pending = ranges
                .iter()
                .map(|r| {
                    let promise = self.read_range.call2(&JsValue::NULL, &(r.start as f64).into(), &(r.end as f64).into()).map_err(failed)?;
                    Ok(wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&promise)))
                })
                .collect::<crate::Result<Vec<_>>>()?;
            let mut out = Vec::with_capacity(ranges.len());
            for (read, range) in pending.into_iter().zip(&ranges) {
                let bytes = js_sys::Uint8Array::new(&read.await.map_err(failed)?).to_vec();
                if bytes.len() != range.len() {
                    return Err(crate::Error::WeightsFile(format!("bytes {}..{} came back as {} bytes", range.start, range.end, bytes.len())));
                }
                out.push(bytes);
            }
            Ok(out)
        })
    }
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| JsError::new(&e.to_string()))
}

/// A photo, decoded (EXIF orientation applied) once for every operation on it.
#[wasm_bindgen]
pub struct Photo {
    inner: Rc<image::RgbImage>,
}

#[wasm_bindgen]
impl Photo {
    /// From an encoded file's bytes (JPEG, PNG, WebP, GIF, BMP).
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(bytes: &[u8]) -> Result<Photo, JsError> {
        if bytes.len() as u64 > preprocess::MAX_PHOTO_BYTES {
            return Err(JsError::new(&format!("the file is over {} MB, more than photos may have", preprocess::MAX_PHOTO_BYTES >> 20)));
        }
        Ok(Photo { inner: Rc::new(preprocess::decode(bytes).map_err(js)?) })
    }

    /// From RGBA pixels (`ImageData.data`) of a `width × height` image.
    #[wasm_bindgen(js_name = fromPixels)]
    pub fn from_pixels(rgba: &[u8], width: u32, height: u32) -> Result<Photo, JsError> {
        Ok(Photo { inner: Rc::new(preprocess::from_rgba(rgba, width, height).map_err(js)?) })
    }

    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.inner.width()
    }

    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.inner.height()
    }
}

/// A photo run through the image encoder once (`Segmenter.encode`): segmenting it again with
/// other labels or another threshold runs only the text encoder and the composition.
#[wasm_bindgen]
pub struct EncodedImage {
    inner: Rc<pipeline::EncodedPhoto>,
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

/// One class's part of a segmentation, as JS sees it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClassSummary<'a> {
    label: &'a str,
    share: f32,
    mean_score: f32,
    /// `[x0, y0, x1, y1]`, exclusive ends; null when the class has no pixel.
    bbox: Option<[u32; 4]>,
    /// The same as `{xmin, ymin, xmax, ymax}`, the shape of detection boxes.
    #[serde(rename = "box")]
    bounds: Option<detect::BoundingBox>,
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
    summary: Vec<crate::segment::ClassSummary>,
}

#[wasm_bindgen]
impl SegmentResult {
    /// `[{label, share, meanScore, bbox, box}]`, one per class.
    #[wasm_bindgen(getter)]
    pub fn summary(&self) -> Result<JsValue, JsError> {
        let list: Vec<ClassSummary> = self
            .summary
            .iter()
            .map(|c| ClassSummary {
                label: &c.label,
                share: c.share,
                mean_score: c.mean_score,
                bbox: c.bbox,
                bounds: c.bbox.map(|[xmin, ymin, xmax, ymax]| detect::BoundingBox { xmin, ymin, xmax, ymax }),
            })
            .collect();
        to_js(&list)
    }
}

impl From<crate::Segmentation> for SegmentResult {
    fn from(s: crate::Segmentation) -> Self {
        SegmentResult {
            width: s.width,
            height: s.height,
            colours: (0..s.classes.len()).flat_map(crate::render::class_colour).collect(),
            classes: s.classes,
            label_map: s.label_map,
            scores: s.scores,
            summary: s.summary,
        }
    }
}

/// The options of `segment`, `encode` and `classify`; every field optional.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Options {
    /// Default: the model's (0.95 for the published checkpoints); `null` means no background.
    #[serde(default, deserialize_with = "given")]
    background_threshold: Option<Option<f32>>,
    /// Side the photo's short side is resized to (default: twice the model's training size, 448 for
    /// the published checkpoints; window and stride likewise 2× and 1×).
    short_side: Option<u32>,
    window: Option<usize>,
    stride: Option<usize>,
    /// Refine the labels' scores over the photo's colours (default: the model's, else on).
    refine: Option<bool>,
    /// Refinement passes, 1–50 (default 10).
    refine_iterations: Option<u32>,
    /// The groups also compete with the empty prompt, whose pixels are background (default off;
    /// `ground` turns it on).
    nothing_prompt: Option<bool>,
    /// Prompt templates with `{}` for the label, or a preset's name: "single" (the default, "a
    /// photo of a {}."), "nvlabs" (NVlabs' 7) or "imagenet" (CLIP's 80).
    templates: Option<TemplatesOption>,
    /// classify: the best this many labels; detect: at most this many boxes.
    top_k: Option<usize>,
    /// detect / ground: regions scoring under this (0–1) are dropped (default 0.1).
    threshold: Option<f32>,
    /// detect / ground: regions under this share of the photo are dropped (default 0.001).
    min_area: Option<f32>,
    /// detect: a box overlapping a better one by more than this IoU is dropped (default 0.5).
    nms_iou: Option<f32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TemplatesOption {
    Preset(String),
    List(Vec<String>),
}

/// A field that is there, `null` included (`Some(None)`), as opposed to one left out (`None`).
fn given<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl Options {
    fn from_js(value: JsValue) -> Result<Self, JsError> {
        if value.is_undefined() || value.is_null() {
            return Ok(Self::default());
        }
        serde_wasm_bindgen::from_value(value).map_err(|e| JsError::new(&format!("options: {e}")))
    }

    /// The options over `defaults` (the model's own), checked.
    fn over(&self, defaults: SegmentOptions) -> crate::Result<SegmentOptions> {
        let overrides = SegmentOverrides {
            short_side: self.short_side,
            window_side: self.window,
            stride: self.stride,
            background: self.background_threshold.map(|t| t.map_or(Background::Never, Background::Below)),
            refine: self.refine,
            refine_iterations: self.refine_iterations,
            nothing_prompt: self.nothing_prompt,
            ..Default::default()
        };
        defaults.with(&overrides)
    }

    fn templates(&self) -> crate::Result<Templates> {
        match &self.templates {
            None => Ok(Templates::Single),
            Some(TemplatesOption::Preset(name)) => name.parse(),
            Some(TemplatesOption::List(list)) => Templates::custom(list.clone()),
        }
    }

    fn detection(&self) -> crate::Result<DetectOptions> {
        let d = DetectOptions::default();
        let opts = DetectOptions {
            threshold: self.threshold.unwrap_or(d.threshold),
            top_k: self.top_k.or(d.top_k),
            min_area: self.min_area.unwrap_or(d.min_area),
            nms_iou: self.nms_iou.unwrap_or(d.nms_iou),
            ..d
        };
        opts.check()?;
        Ok(opts)
    }
}

/// A label map handed back from JS (a `Segmentation`'s fields), as the library's type.
fn segmentation_of(width: u32, height: u32, label_map: Vec<u16>, scores: Vec<f32>, classes: Vec<String>) -> Result<Segmentation, JsError> {
    // Checked: on wasm32 a crafted size's product wraps to a small number (a trap further on).
    let n = (width as usize)
        .checked_mul(height as usize)
        .filter(|&n| n as u64 <= preprocess::PIXEL_BUDGET)
        .ok_or_else(|| JsError::new(&format!("a {width}×{height} segmentation is larger than any photo segmented here")))?;
    if label_map.len() != n || scores.len() != n {
        return Err(JsError::new(&format!(
            "a {width}×{height} segmentation needs {n} labels and scores, not {} and {}",
            label_map.len(),
            scores.len()
        )));
    }
    if label_map.iter().any(|&k| k as usize >= classes.len()) {
        return Err(JsError::new("the label map names a class the classes do not list"));
    }
    Ok(segment::summarize(label_map, scores, classes, (height as usize, width as usize)))
}

/// The boxes of a segmentation's objects (`Segmentation.detect`): `[{label, score, box: {xmin, ymin,
/// xmax, ymax}}]`, best first. `options`: `{threshold, topK, minArea, nmsIou}`.
#[wasm_bindgen(js_name = detectIn)]
pub fn detect_in(
    width: u32,
    height: u32,
    label_map: Vec<u16>,
    scores: Vec<f32>,
    classes: Vec<String>,
    options: JsValue,
) -> Result<JsValue, JsError> {
    let seg = segmentation_of(width, height, label_map, scores, classes)?;
    let opts = Options::from_js(options)?.detection().map_err(js)?;
    to_js(&detect::detect(&seg, &opts).into_iter().map(JsDetection::from).collect::<Vec<_>>())
}

/// A detection as JS gets it: transformers.js's `{label, score, box}`, and where its name fits.
#[derive(Serialize)]
struct JsDetection {
    label: String,
    score: f32,
    #[serde(rename = "box")]
    bounds: detect::BoundingBox,
    /// The region's pixel nearest its centroid (inside it even when the region is a ring).
    anchor: Point,
}

#[derive(Serialize)]
struct Point {
    x: u32,
    y: u32,
}

impl From<detect::Detection> for JsDetection {
    fn from(d: detect::Detection) -> Self {
        let (x, y) = d.anchor;
        Self { label: d.label, score: d.score, bounds: d.bounds, anchor: Point { x, y } }
    }
}

/// A segmentation as a COCO file of one photo (`Segmentation.toCoco`): `{images, categories,
/// annotations}`, one annotation per label with pixels, masks in COCO's compressed run-length
/// encoding.
#[wasm_bindgen(js_name = cocoIn)]
pub fn coco_in(
    width: u32,
    height: u32,
    label_map: Vec<u16>,
    scores: Vec<f32>,
    classes: Vec<String>,
    file_name: String,
) -> Result<JsValue, JsError> {
    let seg = segmentation_of(width, height, label_map, scores, classes)?;
    let mut file = coco::Dataset::new(&seg.classes[1..]);
    file.add_segmentation(coco::Image { id: 1, file_name, width, height }, &seg).map_err(js)?;
    to_js(&file)
}

/// COCO files of one label list joined into one, photos and annotations numbered in order.
#[wasm_bindgen(js_name = mergeCoco)]
pub fn merge_coco(files: JsValue) -> Result<JsValue, JsError> {
    let files: Vec<coco::Dataset> =
        serde_wasm_bindgen::from_value(files).map_err(|e| JsError::new(&format!("not a list of COCO files groupseg wrote: {e}")))?;
    let all = coco::merge(files).map_err(|(k, e)| JsError::new(&format!("COCO file {} of the list: {e}", k + 1)))?;
    to_js(&all)
}

/// A checkpoint's weights file (safetensors or `pytorch_model.bin` bytes) rewritten smaller, as
/// `groupseg convert` does: `to` is "f16" (every tensor) or "int8" (weight matrices, per-row scales).
/// Both files stay in JavaScript's memory; the module holds a block of each at a time.
#[wasm_bindgen(js_name = convertWeights)]
pub fn convert_weights(bytes: js_sys::Uint8Array, to: &str) -> Result<js_sys::Uint8Array, JsError> {
    let stored: StoredAs = to.parse().map_err(js)?;
    let mut out = JsArrayOut(js_sys::Uint8Array::new_with_length(0));
    crate::checkpoint::convert::convert_into(&JsBytes::new(bytes), stored, &mut out).map_err(js)?;
    Ok(out.0)
}

/// A weights file converted as it downloads (or as Cache Storage or a file reads it), for keeping a
/// model as int8 (or f16): the original is never held, here or in JavaScript; only the converted
/// file, in JavaScript's memory (`finish`). A file already in int8 comes back as it is.
#[wasm_bindgen]
pub struct WeightsConversion {
    conversion: StreamingConversion,
    out: JsArrayOut,
    cap: usize,
    received: usize,
}

#[wasm_bindgen]
impl WeightsConversion {
    /// `to`: "int8" or "f16"; `cap` as for `WeightsUpload`.
    #[wasm_bindgen(constructor)]
    pub fn new(to: &str, cap: Option<f64>) -> Result<WeightsConversion, JsError> {
        let stored: StoredAs = to.parse().map_err(js)?;
        let cap = weights_cap(cap)?;
        Ok(WeightsConversion { conversion: StreamingConversion::new(stored, cap), out: JsArrayOut(js_sys::Uint8Array::new_with_length(0)), cap, received: 0 })
    }

    /// Converts what the file's next bytes complete; refuses to grow past the cap.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), JsError> {
        self.received += bytes.len();
        refuse_past_cap(self.received, self.cap)?;
        self.conversion.push(bytes, &mut self.out).map_err(js)
    }

    /// Whether the file was in int8 already (and comes back as it is); undefined until its header
    /// has arrived.
    #[wasm_bindgen(getter, js_name = alreadyInt8)]
    pub fn already_int8(&self) -> Option<bool> {
        self.conversion.already_int8()
    }

    /// The converted file, once every byte has arrived (an error for a truncated one).
    pub fn finish(self) -> Result<js_sys::Uint8Array, JsError> {
        self.conversion.finish().map_err(js)?;
        Ok(self.out.0)
    }
}

/// Bytes a model built from a safetensors file would hold for its weights, from the file's first
/// bytes: `{asItIs, asInt8, storedInt8}`, or undefined until `head` holds the whole header (or for
/// a file that is not safetensors).
#[wasm_bindgen(js_name = weightsHeld)]
pub fn weights_held(head: &[u8]) -> Result<JsValue, JsError> {
    HeldBytes::from_head(head).map_or(Ok(JsValue::UNDEFINED), |held| to_js(&held))
}

/// Whether `bytes` more can be allocated in the module's memory now, making room for them where
/// the browser lets the memory grow ([`crate::alloc::reserve`]).
#[wasm_bindgen(js_name = reserveMemory)]
pub fn reserve_memory(bytes: f64) -> bool {
    bytes.is_finite() && bytes >= 0.0 && bytes < u32::MAX as f64 && crate::alloc::reserve(bytes as usize)
}

/// A converted file written into an array in JavaScript's memory.
struct JsArrayOut(js_sys::Uint8Array);

impl crate::checkpoint::convert::ConvertedFile for JsArrayOut {
    fn allocate(&mut self, len: usize) -> crate::Result<()> {
        self.0 = js_sys::Uint8Array::new_with_length(len as u32);
        Ok(())
    }

    fn write_at(&mut self, at: usize, bytes: &[u8]) -> crate::Result<()> {
        self.0.subarray(at as u32, (at + bytes.len()) as u32).copy_from(bytes);
        Ok(())
    }
}

/// A caption's phrases (`[{text, label, start, end}]`, offsets in UTF-16 units as JS strings count):
/// `label` is what gets segmented for it.
#[wasm_bindgen(js_name = captionPhrases)]
pub fn caption_phrases(caption: &str) -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Found {
        text: String,
        label: String,
        start: usize,
        end: usize,
    }
    phrases::check_caption(caption).map_err(js)?;
    let found: Vec<Found> = phrases::chunk(caption)
        .into_iter()
        .map(|p| Found {
            label: p.label(),
            start: phrases::utf16_offset(caption, p.start),
            end: phrases::utf16_offset(caption, p.end),
            text: p.text,
        })
        .collect();
    to_js(&found)
}

/// The most bytes an encoded photo may have (`Photo.fromBytes`), as the CLI reads files.
#[wasm_bindgen(js_name = maxPhotoBytes)]
pub fn max_photo_bytes() -> f64 {
    preprocess::MAX_PHOTO_BYTES as f64
}

/// Whether this module was built with relaxed SIMD (its matrix products use fused multiply-adds).
#[wasm_bindgen(js_name = relaxedSimd)]
pub fn relaxed_simd() -> bool {
    cfg!(target_feature = "relaxed-simd")
}

/// The labels a caption is segmented by: each phrase's label once (ignoring ASCII case), in order.
#[wasm_bindgen(js_name = captionLabels)]
pub fn caption_labels(caption: &str) -> Result<Vec<String>, JsError> {
    phrases::check_caption(caption).map_err(js)?;
    Ok(ground::labels(&phrases::chunk(caption)))
}

/// Where each phrase of `caption` is in a segmentation by its phrases' labels (`Segmenter.ground`):
/// `[{phrase, start, end, score, box}]`, offsets in UTF-16 units, `box` null where it is nowhere.
#[wasm_bindgen(js_name = groundIn)]
#[allow(clippy::too_many_arguments)]
pub fn ground_in(
    width: u32,
    height: u32,
    label_map: Vec<u16>,
    scores: Vec<f32>,
    classes: Vec<String>,
    caption: &str,
    options: JsValue,
) -> Result<JsValue, JsError> {
    let seg = segmentation_of(width, height, label_map, scores, classes)?;
    let opts = Options::from_js(options)?.detection().map_err(js)?;
    phrases::check_caption(caption).map_err(js)?;
    let found = ground::ground(&phrases::chunk(caption), &seg, &opts);
    to_js(&found.iter().map(|g| g.with_offsets(caption, phrases::utf16_offset)).collect::<Vec<_>>())
}

/// One grouping block's groups over the photo (`Segmenter.groups`).
#[wasm_bindgen(getter_with_clone)]
pub struct StageGroups {
    /// Per pixel, row-major: window × groupsPerWindow + group.
    pub map: Vec<u32>,
    #[wasm_bindgen(js_name = groupsPerWindow)]
    pub groups_per_window: u32,
    /// Distinct groups the photo shows.
    pub count: u32,
    /// RGB per group id (3 bytes an id, up to the largest in `map`), as the CLI paints groups.
    pub colours: Vec<u8>,
}

/// Labels as JS gives them: a comma-separated string, or an array of strings.
fn labels_of(value: &JsValue) -> Result<Vec<String>, JsError> {
    if let Some(text) = value.as_string() {
        return pipeline::parse_labels(&text).map_err(js);
    }
    let list: Vec<String> = serde_wasm_bindgen::from_value(value.clone())
        .map_err(|_| JsError::new("labels must be a comma-separated string or an array of strings"))?;
    pipeline::label_list(list.iter().map(String::as_str)).map_err(js)
}

/// Splits labels as the library reads them (a comma-separated string or an array): trimmed,
/// non-empty, the first of repeats that differ only in ASCII case.
#[wasm_bindgen(js_name = parseLabels)]
pub fn parse_labels(labels: JsValue) -> Result<Vec<String>, JsError> {
    labels_of(&labels)
}

/// A loaded GroupViT checkpoint: what the package's `Segmenter` (and its worker's) wraps, under a
/// name of its own.
#[wasm_bindgen]
pub struct LoadedModel {
    // Shared with the futures behind the promises the methods return.
    inner: Rc<pipeline::Segmenter>,
}

#[wasm_bindgen]
impl LoadedModel {
    /// Builds a segmenter from a checkpoint's files: `config.json` text, the weights
    /// (`model.safetensors` or `pytorch_model.bin`) streamed into a `WeightsUpload`, `tokenizer.json` bytes, optionally
    /// `preprocessor_config.json` text, the backend: `"auto"` (a hardware GPU through WebGPU,
    /// else the CPU), `"webgpu"` (any WebGPU adapter, software ones included) or `"cpu"`, and
    /// optionally `readRange(start, end)` → `Promise<Uint8Array>` over the same weights file kept
    /// on disk (a Blob from Cache Storage or a File): the token table then stays there, its rows
    /// read as labels need them.
    pub async fn load(
        config: String,
        weights: WeightsUpload,
        tokenizer_json: Vec<u8>,
        preprocessor: Option<String>,
        backend: Option<String>,
        read_range: Option<js_sys::Function>,
    ) -> Result<LoadedModel, JsError> {
        let choice: BackendChoice = backend.as_deref().unwrap_or("auto").parse().map_err(js)?;
        let files = CheckpointFiles {
            config: &config,
            weights: Box::new(weights.bytes),
            tokenizer: TokenizerFiles::Json(tokenizer_json.into()),
            preprocessor: preprocessor.as_deref(),
            weight_ranges: read_range.map(|read_range| Box::new(JsRanges { read_range }) as Box<dyn WeightRanges>),
        };
        let inner = pipeline::Segmenter::from_files_on(files, &Device::Cpu, choice).await.map_err(js)?;
        Ok(LoadedModel { inner: Rc::new(inner) })
    }

    /// Where segmentation runs, in words: "GPU: …" or "CPU (why not the GPU)".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.inner.backend().to_string()
    }

    /// Where segmentation runs, as a typed object: `{device: 'gpu' | 'cpu', adapter, software,
    /// whyNotGpu}` (the adapter's description on the GPU; on the CPU, in one sentence, why not the
    /// GPU when one was asked for).
    #[wasm_bindgen(getter, js_name = backendInfo)]
    pub fn backend_info(&self) -> Result<JsValue, JsError> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Info {
            device: &'static str,
            adapter: Option<String>,
            software: bool,
            why_not_gpu: Option<String>,
        }
        let info = match self.inner.backend() {
            RunningBackend::Gpu(a) => Info { device: "gpu", adapter: Some(a.describe()), software: a.is_software(), why_not_gpu: None },
            RunningBackend::Cpu { why_not_gpu } => Info { device: "cpu", adapter: None, software: false, why_not_gpu: why_not_gpu.clone() },
        };
        to_js(&info)
    }

    /// Bytes held: `{heap, live, peakLive, weights: {cpu, gpu, inFile}}`. `heap` is this module's
    /// WebAssembly memory, which grows and never shrinks, so it is also the most it has needed so
    /// far (loading included); `live` the bytes allocated in it now, `peakLive` the most ever at
    /// once (the rest of `heap` is static data, the stack and free space as the allocator left it);
    /// `weights` are the model's, in that memory and in GPU buffers, and `inFile` those left in the
    /// weights file on disk (the token table, when `load` was given `readRange`).
    pub fn memory(&self) -> Result<JsValue, JsError> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Weights {
            cpu: usize,
            gpu: usize,
            in_file: usize,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Memory {
            heap: usize,
            live: usize,
            peak_live: usize,
            weights: Weights,
        }
        let resident = self.inner.resident_weights();
        let live = crate::alloc::live_bytes().unwrap_or(crate::alloc::LiveBytes { now: 0, peak: 0 });
        to_js(&Memory {
            heap: core::arch::wasm32::memory_size(0) * 65536,
            live: live.now,
            peak_live: live.peak,
            weights: Weights { cpu: resident.cpu, gpu: resident.gpu, in_file: resident.in_file },
        })
    }

    /// Segments `photo` by `labels` (a comma-separated string or an array); resolves to a
    /// `SegmentResult`. `options`: `{backgroundThreshold, shortSide, window, stride, templates}`,
    /// each optional (`backgroundThreshold: null` means no background).
    pub fn segment(&self, photo: &Photo, labels: JsValue, options: JsValue) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        let photo = Rc::clone(&photo.inner);
        future_to_promise(async move {
            let labels = labels_of(&labels)?;
            let options = Options::from_js(options)?;
            let opts = options.over(inner.default_options()).map_err(js)?;
            let s = inner.segment(&photo, &labels, &options.templates().map_err(js)?, &opts).await.map_err(js)?;
            Ok(SegmentResult::from(s).into())
        })
    }

    /// Runs the image encoder over `photo` once; resolves to an `EncodedImage` for
    /// `segmentEncoded`. The size options (`shortSide`, `window`, `stride`) are fixed here.
    pub fn encode(&self, photo: &Photo, options: JsValue) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        let photo = Rc::clone(&photo.inner);
        future_to_promise(async move {
            let opts = Options::from_js(options)?.over(inner.default_options()).map_err(js)?;
            let encoded = inner.encode(&photo, &opts.geometry).await.map_err(js)?;
            Ok(EncodedImage { inner: Rc::new(encoded) }.into())
        })
    }

    /// Segments an `EncodedImage` by `labels` without running the image encoder again; resolves to
    /// a `SegmentResult`. Size options are the encoding's; `backgroundThreshold` and `templates`
    /// apply.
    #[wasm_bindgen(js_name = segmentEncoded)]
    pub fn segment_encoded(&self, encoded: &EncodedImage, labels: JsValue, options: JsValue) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        let encoded = Rc::clone(&encoded.inner);
        future_to_promise(async move {
            let labels = labels_of(&labels)?;
            let options = Options::from_js(options)?;
            if options.short_side.is_some() || options.window.is_some() || options.stride.is_some() {
                return Err(JsError::new("shortSide, window and stride are fixed when a photo is encoded: encode it again to change them").into());
            }
            let opts = options.over(inner.default_options()).map_err(js)?;
            let s = inner.segment_encoded(&encoded, &labels, &options.templates().map_err(js)?, &opts.labelling).await.map_err(js)?;
            Ok(SegmentResult::from(s).into())
        })
    }

    /// Zero-shot classification: resolves to `[{label, score}]`, most probable first (the first
    /// `options.topK` when given). `options.templates` as for `segment`.
    pub fn classify(&self, photo: &Photo, labels: JsValue, options: JsValue) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        let photo = Rc::clone(&photo.inner);
        future_to_promise(async move {
            let labels = labels_of(&labels)?;
            let options = Options::from_js(options)?;
            if options.top_k == Some(0) {
                return Err(JsError::new("topK must be at least 1").into());
            }
            let probs = inner.classify(&photo, &labels, &options.templates().map_err(js)?).await.map_err(js)?;
            Ok(to_js(&pipeline::rank(&labels, &probs, options.top_k))?)
        })
    }

    /// GroupViT's own groups in an encoded photo, one `StageGroups` per grouping block, first to
    /// last; the encoder does not run again.
    pub fn groups(&self, encoded: &EncodedImage) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        let encoded = Rc::clone(&encoded.inner);
        future_to_promise(async move {
            let groups = inner.groups(&encoded).await.map_err(js)?;
            let stages = js_sys::Array::new();
            for s in groups.stages {
                let count = s.distinct() as u32;
                let ids = s.map.iter().max().map_or(0, |&m| m + 1);
                let colours = (0..ids).flat_map(crate::render::group_colour).collect();
                stages.push(&StageGroups { map: s.map, groups_per_window: s.groups_per_window as u32, count, colours }.into());
            }
            Ok(stages.into())
        })
    }
}
