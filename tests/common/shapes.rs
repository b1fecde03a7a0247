//! The shapes demo's evaluation scenes (`tools/shapes/evalset.py`: test scenes in
//! `tests/fixtures/shapes-eval`, validation scenes in `tests/fixtures/shapes-val`) and how results
//! are scored against their truth: mean IoU and pixel accuracy of label maps, and boxes matched one
//! to one with the scenes' objects. Shared by `tests/accuracy.rs` and `tools/shapes/tune.rs`.
#![allow(dead_code)]

use std::path::Path;

use groupseg::detect::{self, BoundingBox, DetectOptions};
use groupseg::{ground, phrases, EncodedPhoto, LabelOptions, SegmentOptions, Segmentation, Segmenter, Templates};

pub struct Scene {
    pub photo: image::RgbImage,
    /// The scene's phrases, then two distractors.
    pub labels: Vec<String>,
    /// Global class id per pixel (0 = background).
    pub truth: Vec<u8>,
}

impl Scene {
    /// The scene's own phrases (its labels without the two distractors).
    pub fn phrases(&self) -> &[String] {
        &self.labels[..self.labels.len() - 2]
    }
}

pub struct EvalSet {
    pub classes: Vec<String>,
    pub scenes: Vec<Scene>,
}

impl EvalSet {
    pub fn load(dir: &Path) -> Self {
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
        Self { classes, scenes }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub miou: f64,
    pub pixel_accuracy: f64,
}

/// Intersections and unions summed over all scenes per class (background and every colour–shape
/// phrase); mIoU is their mean over the classes in the truth or the prediction.
pub fn figures(set: &EvalSet, predictions: &[Vec<usize>]) -> Figures {
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

/// How well boxes find the scenes' objects, each true object matched to one box at most.
#[derive(Debug, Default, Clone, Copy)]
pub struct BoxFigures {
    pub objects: usize,
    /// Objects matched by a detection of their label at IoU ≥ 0.5.
    pub detected: usize,
    pub detections: usize,
    /// Phrases of the scenes' captions grounded at IoU ≥ 0.5.
    pub grounded: usize,
}

impl BoxFigures {
    pub fn detection_recall(&self) -> f64 {
        self.detected as f64 / self.objects as f64
    }
    /// Matched detections over all detections: a second box on a matched object counts as wrong.
    pub fn detection_precision(&self) -> f64 {
        self.detected as f64 / self.detections.max(1) as f64
    }
    /// One scene's objects (`truth`), found by detection in `s` (segmented by the scene's labels)
    /// and by grounding its phrases (`chunks` of their caption) in `g` (segmented by them).
    pub fn add(
        &mut self,
        truth: &[(String, BoundingBox)],
        s: &Segmentation,
        chunks: &[phrases::Phrase],
        g: &Segmentation,
        phrases: &[String],
        opts: &DetectOptions,
    ) {
        let found: Vec<_> = detect::detect(s, opts).into_iter().map(|d| (d.label, d.score, d.bounds)).collect();
        self.objects += truth.len();
        self.detections += found.len();
        self.detected += match_one_to_one(truth, &found);
        let grounded: Vec<_> = ground::ground(chunks, g, opts)
            .iter()
            .zip(phrases)
            .filter_map(|(gr, p)| gr.bounds.map(|b| (p.clone(), gr.score, b)))
            .collect();
        self.grounded += match_one_to_one(truth, &grounded);
    }

    pub fn grounding_recall(&self) -> f64 {
        self.grounded as f64 / self.objects as f64
    }
}

/// Each object's true box: the bounding box of its class's pixels in the truth (a scene holds one
/// object of each of its phrases).
pub fn truth_boxes(scene: &Scene, set: &EvalSet, w: u32) -> Vec<(String, BoundingBox)> {
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

/// Detections matched one to one with true objects, best score first: each takes the unmatched
/// object of its label it overlaps most at IoU ≥ 0.5. Returns the number matched.
pub fn match_one_to_one(truth: &[(String, BoundingBox)], found: &[(String, f32, BoundingBox)]) -> usize {
    let mut order: Vec<usize> = (0..found.len()).collect();
    order.sort_by(|&a, &b| found[b].1.total_cmp(&found[a].1));
    let mut taken = vec![false; truth.len()];
    let mut matched = 0;
    for i in order {
        let (label, _, b) = &found[i];
        let best = (0..truth.len())
            .filter(|&t| !taken[t] && &truth[t].0 == label)
            .map(|t| (t, truth[t].1.iou(b)))
            .filter(|&(_, iou)| iou >= 0.5)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((t, _)) = best {
            taken[t] = true;
            matched += 1;
        }
    }
    matched
}

/// A caption naming the scene's objects ("a red circle next to a blue star and a green bar").
pub fn caption(phrases: &[String]) -> String {
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

/// Each scene encoded once and labelled with `opts`, by its phrases against the empty prompt
/// (grounding) and, where given, with `other` labelling. Returns the figures of `opts`'s maps, of
/// `other`'s, and the boxes of `opts`'s maps. `tests/gpu.rs` checks that labelling an
/// encoded photo gives what segmenting it whole gives.
pub fn evaluate(
    seg: &Segmenter,
    set: &EvalSet,
    opts: &SegmentOptions,
    other: Option<&LabelOptions>,
    detect_opts: &DetectOptions,
) -> (Figures, Option<Figures>, BoxFigures) {
    let mut boxes = BoxFigures::default();
    let mut maps = Vec::with_capacity(set.scenes.len());
    let mut plain_maps = Vec::with_capacity(set.scenes.len());
    for scene in &set.scenes {
        let e = groupseg::block_on(seg.encode(&scene.photo, &opts.geometry)).expect("encode");
        let label = |labels: &[String], labelling: &LabelOptions| {
            groupseg::block_on(seg.segment_encoded(&e, labels, &Templates::default(), labelling)).expect("segment")
        };
        let s = label(&scene.labels, &opts.labelling);
        let phrases = scene.phrases().to_vec();
        let caption = caption(&phrases);
        let chunks = phrases::chunk(&caption);
        assert_eq!(ground::labels(&chunks), phrases, "the chunker finds the scene's phrases in {caption:?}");
        let g = label(&phrases, &LabelOptions { nothing_prompt: true, ..opts.labelling });
        boxes.add(&truth_boxes(scene, set, s.width), &s, &chunks, &g, &phrases, detect_opts);

        maps.push(global_ids(set, &s));
        if let Some(other) = other {
            plain_maps.push(global_ids(set, &label(&scene.labels, other)));
        }
    }
    (figures(set, &maps), other.map(|_| figures(set, &plain_maps)), boxes)
}

/// A label map in the set's class ids.
pub fn global_ids(set: &EvalSet, s: &Segmentation) -> Vec<usize> {
    let ids: Vec<usize> = s
        .classes
        .iter()
        .map(|c| set.classes.iter().position(|x| x == c).expect("every label is a known class"))
        .collect();
    s.label_map.iter().map(|&l| ids[l as usize]).collect()
}

/// Every scene run through the image encoder once, for [`figures_encoded`] to label again and again.
pub fn encode_all(seg: &Segmenter, set: &EvalSet, opts: &SegmentOptions) -> Vec<EncodedPhoto> {
    set.scenes.iter().map(|s| groupseg::block_on(seg.encode(&s.photo, &opts.geometry)).expect("encode")).collect()
}

/// mIoU and pixel accuracy of the encoded scenes labelled with `labelling`.
pub fn figures_encoded(seg: &Segmenter, set: &EvalSet, encoded: &[EncodedPhoto], labelling: &LabelOptions) -> Figures {
    let maps: Vec<Vec<usize>> = set
        .scenes
        .iter()
        .zip(encoded)
        .map(|(scene, e)| {
            let s = groupseg::block_on(seg.segment_encoded(e, &scene.labels, &Templates::default(), labelling)).expect("segment");
            global_ids(set, &s)
        })
        .collect();
    figures(set, &maps)
}

/// Detection and grounding of the encoded scenes' objects labelled with `labelling`, for each of
/// `detect_opts` (each scene is labelled once, by its labels and by its phrases).
pub fn box_figures_encoded(
    seg: &Segmenter,
    set: &EvalSet,
    encoded: &[EncodedPhoto],
    labelling: &LabelOptions,
    detect_opts: &[DetectOptions],
) -> Vec<BoxFigures> {
    let mut out = vec![BoxFigures::default(); detect_opts.len()];
    for (scene, e) in set.scenes.iter().zip(encoded) {
        let s = groupseg::block_on(seg.segment_encoded(e, &scene.labels, &Templates::default(), labelling)).expect("segment");
        let truth = truth_boxes(scene, set, s.width);
        let phrases = scene.phrases().to_vec();
        let chunks = phrases::chunk(&caption(&phrases));
        let grounding = LabelOptions { nothing_prompt: true, ..*labelling };
        let g = groupseg::block_on(seg.segment_encoded(e, &phrases, &Templates::default(), &grounding)).expect("segment");
        for (b, d) in out.iter_mut().zip(detect_opts) {
            b.add(&truth, &s, &chunks, &g, &phrases, d);
        }
    }
    out
}
