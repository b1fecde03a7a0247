//! Helpers shared by the integration tests: fixture paths and tolerant comparison.
#![allow(dead_code)]

pub mod shapes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use groupseg::checkpoint::weights;
use groupseg::model::{GroupViTConfig, GroupViTModel};
use groupseg::{Background, SegmentOptions, SegmentOverrides};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The whole model (both encoders) of a fixture directory, or of a weights file in one.
pub fn model(path: &Path) -> GroupViTModel {
    let (dir, file) = if path.is_dir() { (path, path.join("model.safetensors")) } else { (path.parent().unwrap(), path.to_owned()) };
    let config = GroupViTConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let vb = weights::var_builder(std::fs::read(file).unwrap(), &Device::Cpu).unwrap();
    GroupViTModel::new(vb, &config).unwrap()
}

/// The official options (NVlabs' inference, unrefined) with this geometry and background.
pub fn options(short_side: u32, window: usize, stride: usize, background: Background) -> SegmentOptions {
    let o = SegmentOverrides {
        short_side: Some(short_side),
        window_side: Some(window),
        stride: Some(stride),
        background: Some(background),
        refine: Some(false),
        ..Default::default()
    };
    SegmentOptions::default().with(&o).unwrap()
}

/// The reference's outputs stored beside a fixture model.
pub fn expected(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("expected.safetensors"), &Device::Cpu).expect("expected.safetensors")
}

/// Asserts `|a - b| <= tol · max(1, |b|)` everywhere, naming the worst element.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let values = |t: &Tensor| t.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_close_values(what, &values(got), &values(want), tol);
}

/// [`assert_close`] on flat values.
pub fn assert_close_values(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (mut worst, mut at) = (0f32, 0);
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let err = (a - b).abs() / b.abs().max(1.0);
        if err.is_nan() || err > worst {
            worst = if err.is_nan() { f32::INFINITY } else { err };
            at = i;
        }
    }
    assert!(worst <= tol, "{what}: relative error {worst:e} at {at} (got {}, want {})", got[at], want[at]);
}
