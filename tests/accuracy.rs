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
use groupseg::detect::{self, BoundingBox, DetectOptions};
use groupseg::{ground, phrases, BackendChoice, Segmenter};

/// Floors a little under what the committed model reaches (mIoU 0.543, pixel accuracy 0.884; the
/// issue's bar is 0.5 / 0.8).
const MIOU_FLOOR: f64 = 0.53;
const PIXEL_ACCURACY_FLOOR: f64 = 0.87;
/// Detection and grounding on the same scenes (issue 13's bar: most objects at IoU >= 0.5). Floors
/// a little under what the committed model reaches (detection recall 0.756, precision 0.888;
/// grounding recall 0.661 on the CPU; see the README).
const DETECTION_RECALL_FLOOR: f64 = 0.74;
const DETECTION_PRECISION_FLOOR: f64 = 0.87;
const GROUNDING_RECALL_FLOOR: f64 = 0.64;
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

/// How well boxes find the scenes' objects.
#[derive(Debug, Default, Clone, Copy)]
struct BoxFigures {
    objects: usize,
    /// Objects with a detection of their label at IoU ≥ 0.5.
    detected: usize,
    detections: usize,
    /// Detections at IoU ≥ 0.5 with an object of their label.
    correct_detections: usize,
    /// Phrases of the scenes' captions grounded at IoU ≥ 0.5.
    grounded: usize,
}

impl BoxFigures {
    fn detection_recall(&self) -> f64 {
        self.detected as f64 / self.objects as f64
    }
    fn detection_precision(&self) -> f64 {
        self.correct_detections as f64 / self.detections.max(1) as f64
    }
    fn grounding_recall(&self) -> f64 {
        self.grounded as f64 / self.objects as f64
    }
}

/// Each object's true box: the bounding box of its class's pixels in the truth.
fn truth_boxes(scene: &Scene, set: &EvalSet, w: u32) -> Vec<(String, BoundingBox)> {
    let mut boxes: Vec<Option<BoundingBox>> = vec![None; set.classes.len()];
    for (i, &t) in scene.truth.iter().enumerate() {
        if t == 0 {
            continue;
        }
        let (x, y) = (i as u32 % w, i as u32 / w);
        let b = boxes[t as usize].get_or_insert(BoundingBox { xmin: x, ymin: y, xmax: x + 1, ymax: y + 1 });
        *b = BoundingBox { xmin: b.xmin.min(x), ymin: b.ymin.min(y), xmax: b.xmax.max(x + 1), ymax: b.ymax.max(y + 1) };
    }
    boxes.into_iter().enumerate().filter_map(|(k, b)| b.map(|b| (set.classes[k].clone(), b))).collect()
}

/// A caption naming the scene's objects ("a red circle next to a blue star and a green bar").
fn caption(phrases: &[String]) -> String {
    let mut out = String::new();
    for (i, p) in phrases.iter().enumerate() {
        let joint = match i {
            0 => "",
            1 => " next to ",
            _ if i + 1 == phrases.len() => " and ",
            _ => ", ",
        };
        let article = if p.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        out.push_str(&format!("{joint}{article} {p}"));
    }
    out
}

/// Segments every scene (label maps in global class ids), and scores detection and grounding of
/// its objects: detection with the scene's labels (its phrases and two distractors), grounding of a
/// caption made of its phrases.
fn segment_all(seg: &Segmenter, set: &EvalSet) -> (Vec<Vec<usize>>, BoxFigures) {
    let opts = seg.default_options();
    let mut boxes = BoxFigures::default();
    let maps = set
        .scenes
        .iter()
        .map(|scene| {
            let s = groupseg::block_on(seg.segment(&scene.photo, &scene.labels, &Default::default(), &opts)).expect("segment");
            let truth = truth_boxes(scene, set, s.width);
            let found = detect::detect(&s, &DetectOptions::default());
            let hit = |label: &str, b: &BoundingBox| truth.iter().any(|(l, t)| l == label && t.iou(b) >= 0.5);
            boxes.objects += truth.len();
            boxes.detected += truth.iter().filter(|(l, t)| found.iter().any(|d| &d.label == l && d.bounds.iou(t) >= 0.5)).count();
            boxes.detections += found.len();
            boxes.correct_detections += found.iter().filter(|d| hit(&d.label, &d.bounds)).count();

            let phrases: Vec<String> = scene.labels[..scene.labels.len() - 2].to_vec();
            let caption = caption(&phrases);
            let chunks = phrases::chunk(&caption);
            assert_eq!(ground::labels(&chunks), phrases, "the chunker finds the scene's phrases in {caption:?}");
            let g = groupseg::block_on(seg.segment(&scene.photo, &phrases, &Default::default(), &opts)).expect("segment");
            let grounded = ground::ground(&chunks, &g, &DetectOptions::default());
            boxes.grounded += grounded
                .iter()
                .zip(&phrases)
                .filter(|(gr, p)| gr.bounds.is_some_and(|b| hit(p, &b)))
                .count();

            let ids: Vec<usize> = s
                .classes
                .iter()
                .map(|c| set.classes.iter().position(|x| x == c).expect("every label is a known class"))
                .collect();
            s.label_map.iter().map(|&l| ids[l as usize]).collect()
        })
        .collect();
    (maps, boxes)
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
    let (maps, boxes) = segment_all(&seg, &set);
    let ours = figures(&set, &maps);
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
    eprintln!(
        "{name}: detection: {} of {} objects found at IoU >= 0.5 ({:.3}), {} of {} detections right ({:.3}); \
         grounding: {} of {} phrases at IoU >= 0.5 ({:.3})",
        boxes.detected,
        boxes.objects,
        boxes.detection_recall(),
        boxes.correct_detections,
        boxes.detections,
        boxes.detection_precision(),
        boxes.grounded,
        boxes.objects,
        boxes.grounding_recall()
    );
    assert!(boxes.detection_recall() >= DETECTION_RECALL_FLOOR, "{name}: detection recall {:.3}", boxes.detection_recall());
    assert!(
        boxes.detection_precision() >= DETECTION_PRECISION_FLOOR,
        "{name}: detection precision {:.3}",
        boxes.detection_precision()
    );
    assert!(boxes.grounding_recall() >= GROUNDING_RECALL_FLOOR, "{name}: grounding recall {:.3}", boxes.grounding_recall());
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
