//! The shapes demo model (`models/shapes-demo`, trained by `tools/shapes/train.py`) on 200 held-out
//! generated scenes (seeds 0–199): our pipeline's mean IoU and pixel accuracy on the CPU and on the
//! GPU (lavapipe in CI), with refinement (the default) and without it (NVlabs' inference, printed
//! beside transformers' figures for the same scenes, model and labels: `tools/shapes/evaluate.py`,
//! stored in `tests/fixtures/shapes-eval/transformers.json`); and detection and grounding against
//! the scenes' true boxes. Every setting was chosen on the validation scenes (seeds 500000 on,
//! `tools/shapes/tune.rs`), where refinement must beat the plain inference.
//!
//! Each scene is segmented with its own phrases plus two distractors, at the model's default
//! settings (what the page and the CLI do).

mod common;

use std::path::PathBuf;

use candle_core::Device;
use common::shapes::{self, EvalSet, Figures};
use groupseg::{BackendChoice, DetectOptions, SegmentOptions, SegmentOverrides, Segmenter};

/// Floors a little under what the shipped model reaches with refinement (mIoU 0.769, pixel accuracy
/// 0.962; the bar is 0.75 / 0.95).
const MIOU_FLOOR: f64 = 0.76;
const PIXEL_ACCURACY_FLOOR: f64 = 0.955;
/// Without refinement (0.543 / 0.884).
const PLAIN_MIOU_FLOOR: f64 = 0.53;
const PLAIN_PIXEL_ACCURACY_FLOOR: f64 = 0.87;
/// Detection (one-to-one matching at IoU ≥ 0.5) and grounding on the refined maps: floors under
/// what the shipped model reaches (recall 0.782, precision 0.949; grounding 0.758 with the phrases
/// against the empty prompt), which is short of the bar (0.85, 0.85; 0.80).
const DETECTION_RECALL_FLOOR: f64 = 0.77;
const DETECTION_PRECISION_FLOOR: f64 = 0.93;
const GROUNDING_RECALL_FLOOR: f64 = 0.74;
/// Same model, scenes, labels and threshold, unrefined: our figures must be transformers', up to a
/// pixel flipping on a near tie here and there.
const MAX_GAP_TO_TRANSFORMERS: f64 = 0.005;

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/shapes-demo")
}

fn transformers() -> Figures {
    let path = common::fixture("shapes-eval/transformers.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).expect("transformers.json")).expect("JSON");
    Figures { miou: v["miou"].as_f64().expect("miou"), pixel_accuracy: v["pixel_accuracy"].as_f64().expect("pixel_accuracy") }
}

fn unrefined(seg: &Segmenter) -> SegmentOptions {
    seg.default_options().with(&SegmentOverrides { refine: Some(false), ..Default::default() }).expect("options")
}

fn check(backend: BackendChoice, name: &str) {
    let set = EvalSet::load(&common::fixture("shapes-eval"));
    assert_eq!(set.scenes.len(), 200, "the held-out set has 200 scenes");
    let seg = Segmenter::load_on(&model_dir(), &Device::Cpu, backend).expect("the shapes demo model loads");
    eprintln!("{name}: {}", seg.backend());
    let opts = seg.default_options();
    assert!(opts.labelling.refine.is_some(), "refinement is the shipped model's default");
    let (ours, plain, boxes) = shapes::evaluate(&seg, &set, &opts, Some(&unrefined(&seg).labelling), &DetectOptions::default());
    let plain = plain.expect("the unrefined figures");
    let theirs = transformers();
    eprintln!(
        "shapes demo, 200 held-out scenes | mIoU  | pixel accuracy\n\
         {:<40} | {:.3} | {:.3}\n\
         {:<40} | {:.3} | {:.3}\n\
         {:<40} | {:.3} | {:.3}",
        format!("groupseg ({name}), refined"),
        ours.miou,
        ours.pixel_accuracy,
        format!("groupseg ({name}), NVlabs' inference"),
        plain.miou,
        plain.pixel_accuracy,
        "transformers (PyTorch), NVlabs' inference",
        theirs.miou,
        theirs.pixel_accuracy
    );
    eprintln!(
        "{name}: detection: {} of {} objects matched one to one at IoU >= 0.5 (recall {:.3}) by {} boxes (precision {:.3}); \
         grounding: {} of {} phrases at IoU >= 0.5 ({:.3})",
        boxes.detected,
        boxes.objects,
        boxes.detection_recall(),
        boxes.detections,
        boxes.detection_precision(),
        boxes.grounded,
        boxes.objects,
        boxes.grounding_recall()
    );
    assert!(ours.miou >= MIOU_FLOOR, "{name}: mIoU {:.3} under the floor {MIOU_FLOOR}", ours.miou);
    assert!(ours.pixel_accuracy >= PIXEL_ACCURACY_FLOOR, "{name}: pixel accuracy {:.3} under {PIXEL_ACCURACY_FLOOR}", ours.pixel_accuracy);
    assert!(plain.miou >= PLAIN_MIOU_FLOOR, "{name}: unrefined mIoU {:.3}", plain.miou);
    assert!(plain.pixel_accuracy >= PLAIN_PIXEL_ACCURACY_FLOOR, "{name}: unrefined pixel accuracy {:.3}", plain.pixel_accuracy);
    assert!(boxes.detection_recall() >= DETECTION_RECALL_FLOOR, "{name}: detection recall {:.3}", boxes.detection_recall());
    assert!(
        boxes.detection_precision() >= DETECTION_PRECISION_FLOOR,
        "{name}: detection precision {:.3}",
        boxes.detection_precision()
    );
    assert!(boxes.grounding_recall() >= GROUNDING_RECALL_FLOOR, "{name}: grounding recall {:.3}", boxes.grounding_recall());
    for (what, a, b) in [("mIoU", plain.miou, theirs.miou), ("pixel accuracy", plain.pixel_accuracy, theirs.pixel_accuracy)] {
        assert!((a - b).abs() <= MAX_GAP_TO_TRANSFORMERS, "{name}: unrefined {what} {a:.4} vs transformers' {b:.4}");
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

/// The default was chosen here: refinement must beat NVlabs' inference on the validation scenes.
#[test]
fn refinement_beats_the_plain_inference_on_validation_scenes() {
    let set = EvalSet::load(&common::fixture("shapes-val"));
    let seg = Segmenter::load_on(&model_dir(), &Device::Cpu, BackendChoice::Cpu).expect("the shapes demo model loads");
    let encoded = shapes::encode_all(&seg, &set, &seg.default_options());
    let refined = shapes::figures_encoded(&seg, &set, &encoded, &seg.default_options().labelling);
    let plain = shapes::figures_encoded(&seg, &set, &encoded, &unrefined(&seg).labelling);
    eprintln!(
        "validation scenes: refined mIoU {:.3}, pixel accuracy {:.3}; unrefined {:.3}, {:.3}",
        refined.miou, refined.pixel_accuracy, plain.miou, plain.pixel_accuracy
    );
    assert!(refined.miou > plain.miou + 0.1, "refined mIoU {:.3} vs unrefined {:.3}", refined.miou, plain.miou);
    assert!(refined.pixel_accuracy > plain.pixel_accuracy, "refined pixel accuracy {:.3} vs {:.3}", refined.pixel_accuracy, plain.pixel_accuracy);
}
