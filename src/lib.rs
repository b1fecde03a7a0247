//! groupseg: open-vocabulary segmentation with GroupViT, natively and in the browser.
//!
//! From the bottom up: `checkpoint` reads weights files; `cpu` is the CPU compute wing (kernels,
//! weight matrices as stored); `model` is GroupViT's architecture in candle on it; `segment` is NVlabs' inference (group
//! assignments to a label per pixel); `gpu` runs the image encoder and that composition on wgpu;
//! `backend` is the seam between a segmenter and its image side (CPU or GPU); `tokenize` and
//! `preprocess` turn prompts and photos into inputs, `prompts` labels into template ensembles;
//! `pipeline` ties a checkpoint to those steps; the family on top of a segmentation: `detect` (boxes),
//! `coco` (results as COCO annotations),
//! `phrases` and `ground` (a caption's phrases and where they are), `groups` (the groups themselves);
//! `render` paints a result; `wasm` and `bin/` are the JavaScript and command-line faces.
//! See docs/architecture.md.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod alloc;
pub mod backend;
pub mod coco;
pub mod detect;
pub mod error;
#[cfg(native)]
pub mod files;
pub mod gpu;
pub mod ground;
pub mod groups;
pub mod checkpoint;
pub mod cpu;
pub mod model;
pub mod phrases;
pub mod pil_resize;
pub mod pipeline;
pub mod preprocess;
pub mod prompts;
pub mod render;
pub mod refine;
pub mod resample;
pub mod segment;
pub mod tokenize;

#[cfg(all(web, feature = "threads"))]
pub mod thread_pool;
#[cfg(web)]
pub mod wasm;

pub use error::{Error, Result};
pub use backend::{BackendChoice, RunningBackend};
pub use detect::{BoundingBox, DetectOptions, Detection};
pub use pipeline::{parse_labels, rank, CheckpointFiles, LabelScore, EncodedPhoto, ResidentWeights, Segmenter, TokenizerFiles};
pub use prompts::{Templates, DEFAULT_TEMPLATE};
pub use refine::Refinement;
pub use segment::{Background, Geometry, LabelOptions, SegmentOptions, SegmentOverrides, Segmentation, Thresholds};

/// Runs one of the library's futures to completion (native callers; the browser awaits them).
#[cfg(native)]
pub use pollster::block_on;
