//! The shapes demo model (`models/shapes-demo`, trained by `tools/shapes/train.py`) on 200 held-out
//! generated scenes: our pipeline's mean IoU and pixel accuracy on the CPU and on the GPU (lavapipe in
//! CI), printed beside transformers' figures for the same scenes, model and labels
//! (`tools/shapes/evaluate.py`, stored in `tests/fixtures/shapes-eval/transformers.json`).
//!
//! Each scene is segmented with its own phrases plus two distractors, at the model's default
//! settings (what the page and the CLI do). Intersections and unions are summed over all scenes per
//! class (background + every colour–shape phrase); mIoU is their mean over the classes that occur in
//! the truth or the prediction.

mod common;

use std::path::PathBuf;

use candle_core::Device;
use groupseg::{BackendChoice, Segmenter};

/// Floors a little under what the committed model reaches (mIoU 0.397, pixel accuracy 0.775; the
/// issue's bar of 0.5 / 0.8 is not reached, see the README).
const MIOU_FLOOR: f64 = 0.385;
const PIXEL_ACCURACY_FLOOR: f64 = 0.76;
/// Same model, scenes, labels and threshold: our figures must be transformers', up to a pixel flipping
/// on a near tie here and there.
const MAX_GAP_TO_TRANSFORMERS: f64 = 0.005;

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/shapes-demo")
}

struct Scene {
    photo: image::RgbImage,
    labels: Vec<String>,
    /// Global class id per pixel (0 = background).
    truth: Vec<u8>,
}

struct EvalSet {
    classes: Vec<String>,
    scenes: Vec<Scene>,
}

fn eval_set() -> EvalSet {
    let dir = common::fixture("shapes-eval");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("labels.json")).expect("labels.json")).expect("labels.json is JSON");
    let classes: Vec<String> = serde_json::from_value(meta["classes"].clone()).expect("classes");
    let scenes = meta["scenes"]
        .as_array()
        .expect("scenes")
        .iter()
        .enumerate()
        .map(|(i, s)| Scene {
            photo: image::open(dir.join(format!("{i:03}.png"))).expect("scene png").to_rgb8(),
            labels: serde_json::from_value(s["labels"].clone()).expect("labels"),
            truth: image::open(dir.join(format!("{i:03}-mask.png"))).expect("mask png").to_luma8().into_raw(),
        })
        .collect();
    EvalSet { classes, scenes }
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    miou: f64,
    pixel_accuracy: f64,
}

fn figures(set: &EvalSet, predictions: &[Vec<usize>]) -> Figures {
    let n = set.classes.len();
    let (mut inter, mut union) = (vec![0u64; n], vec![0u64; n]);
    let (mut correct, mut total) = (0u64, 0u64);
    for (scene, pred) in set.scenes.iter().zip(predictions) {
        assert_eq!(pred.len(), scene.truth.len(), "prediction at the scene's size");
        for (&p, &t) in pred.iter().zip(&scene.truth) {
            let t = t as usize;
            total += 1;
            if p == t {
                correct += 1;
                inter[p] += 1;
                union[p] += 1;
            } else {
                union[p] += 1;
                union[t] += 1;
            }
        }
    }
    let ious: Vec<f64> = (0..n).filter(|&c| union[c] > 0).map(|c| inter[c] as f64 / union[c] as f64).collect();
    Figures { miou: ious.iter().sum::<f64>() / ious.len() as f64, pixel_accuracy: correct as f64 / total as f64 }
}

/// Segments every scene; label maps in global class ids.
fn segment_all(seg: &Segmenter, set: &EvalSet) -> Vec<Vec<usize>> {
    let opts = seg.default_options();
    set.scenes
        .iter()
        .map(|scene| {
            let s = groupseg::block_on(seg.segment(&scene.photo, &scene.labels, &[], &opts)).expect("segment");
            let ids: Vec<usize> = s
                .classes
                .iter()
                .map(|c| set.classes.iter().position(|x| x == c).expect("every label is a known class"))
                .collect();
            s.label_map.iter().map(|&l| ids[l as usize]).collect()
        })
        .collect()
}

fn transformers() -> Figures {
    let path = common::fixture("shapes-eval/transformers.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).expect("transformers.json")).expect("JSON");
    Figures { miou: v["miou"].as_f64().expect("miou"), pixel_accuracy: v["pixel_accuracy"].as_f64().expect("pixel_accuracy") }
}

fn check(backend: BackendChoice, name: &str) {
    let set = eval_set();
    assert_eq!(set.scenes.len(), 200, "the held-out set has 200 scenes");
    let seg = Segmenter::load_on(&model_dir(), &Device::Cpu, backend).expect("the shapes demo model loads");
    eprintln!("{name}: {}", seg.backend());
    let ours = figures(&set, &segment_all(&seg, &set));
    let theirs = transformers();
    eprintln!(
        "shapes demo, 200 held-out scenes | mIoU  | pixel accuracy\n\
         {:<32} | {:.3} | {:.3}\n\
         {:<32} | {:.3} | {:.3}",
        format!("groupseg ({name})"),
        ours.miou,
        ours.pixel_accuracy,
        "transformers (PyTorch)",
        theirs.miou,
        theirs.pixel_accuracy
    );
    assert!(ours.miou >= MIOU_FLOOR, "{name}: mIoU {:.3} under the floor {MIOU_FLOOR}", ours.miou);
    assert!(
        ours.pixel_accuracy >= PIXEL_ACCURACY_FLOOR,
        "{name}: pixel accuracy {:.3} under the floor {PIXEL_ACCURACY_FLOOR}",
        ours.pixel_accuracy
    );
    for (what, a, b) in [("mIoU", ours.miou, theirs.miou), ("pixel accuracy", ours.pixel_accuracy, theirs.pixel_accuracy)] {
        assert!((a - b).abs() <= MAX_GAP_TO_TRANSFORMERS, "{name}: {what} {a:.4} vs transformers' {b:.4}");
    }
}

#[test]
fn shapes_demo_segments_held_out_scenes_on_the_cpu() {
    check(BackendChoice::Cpu, "CPU");
}

#[test]
fn shapes_demo_segments_held_out_scenes_on_the_gpu() {
    check(BackendChoice::Gpu, "GPU");
}
