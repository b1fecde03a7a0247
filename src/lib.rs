//! groupseg: open-vocabulary segmentation with GroupViT, natively and in the browser.
//!
//! `model` is GroupViT in candle; `tokenize` and `preprocess` turn prompts and photos into inputs;
//! `segment` turns group assignments into a label per pixel; `render` paints it; `pipeline` ties a
//! checkpoint to those steps; `wasm` is the JavaScript-facing surface.

#[cfg(not(target_arch = "wasm32"))]
pub mod alloc;
pub mod error;
pub mod gpu;
pub mod model;
pub mod pil_resize;
pub mod pipeline;
pub mod preprocess;
pub mod render;
pub mod resample;
pub mod segment;
pub mod tokenize;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, Result};
pub use pipeline::{parse_labels, Backend, CheckpointFiles, EncodedPhoto, Segmenter, TokenizerFiles, DEFAULT_TEMPLATE};
pub use segment::{SegmentOptions, Segmentation};

/// Runs one of the library's futures to completion (native callers; the browser awaits them).
#[cfg(not(target_arch = "wasm32"))]
pub use pollster::block_on;
