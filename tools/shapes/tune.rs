//! Chooses the shapes demo's labelling settings on the validation scenes (seeds 500000–500199,
//! `tests/fixtures/shapes-val`), never on the test scenes: for refinement off and on (with each
//! dilation set and iteration count given), every background threshold of a sweep, mIoU and pixel
//! accuracy, then detection and grounding at the best threshold.
//!
//! cargo run --release --example tune-shapes -- [--iterations 5,10,20] [--dilations 1,2,4,8,12,24;2,4,8,16,24,48]
//!
//! With `--why`, the model's own settings only: why each object detection or grounding missed
//! (`--show` prints each grounding box over twice its object's size, with its scene's shares).
//! With `--detect`, refinement on: detection and grounding for each background threshold, merge
//! gap and fragment share of a sweep.

#[path = "../../tests/common/shapes.rs"]
mod shapes;

use std::path::PathBuf;

use candle_core::Device;
use groupseg::{Background, BackendChoice, DetectOptions, Refinement, Segmenter};

fn list<T: std::str::FromStr>(s: &str, sep: char) -> Vec<T> {
    s.split(sep).map(|v| v.trim().parse().ok().expect("a number")).collect()
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let iterations: Vec<u32> = arg("--iterations").map_or(vec![10], |s| list(&s, ','));
    let dilations: Vec<Vec<u32>> =
        arg("--dilations").map_or(vec![vec![1, 2, 4, 8, 12, 24]], |s| s.split(';').map(|d| list(d, ',')).collect());
    let thresholds: Vec<f32> = arg("--thresholds").map_or((4..=18).map(|i| i as f32 * 0.05).collect(), |s| list(&s, ','));

    let set = shapes::EvalSet::load(&root.join("tests/fixtures/shapes-val"));
    let seg = Segmenter::load_on(&root.join("models/shapes-demo"), &Device::Cpu, BackendChoice::Cpu).expect("model");
    let mut base = seg.default_options();
    // `--nothing`: the labels (not only grounding's phrases) compete with the empty prompt.
    base.labelling.nothing_prompt = args.iter().any(|a| a == "--nothing");
    if args.iter().any(|a| a == "--why") {
        return why(&seg, &set, base, args.iter().any(|a| a == "--show"));
    }
    let encoded = shapes::encode_all(&seg, &set, &base);
    if args.iter().any(|a| a == "--detect") {
        return detect_sweep(&seg, &set, &encoded, &thresholds, base.labelling.nothing_prompt);
    }
    let mut settings: Vec<(String, Option<Refinement>)> = vec![("off".into(), None)];
    for d in &dilations {
        for &n in &iterations {
            settings.push((format!("on, {n} iterations, dilations {d:?}"), Some(Refinement::new(n, d).expect("refinement"))));
        }
    }
    for (name, refine) in settings {
        let mut best: Option<(f32, shapes::Figures)> = None;
        for &t in &thresholds {
            let labelling = groupseg::LabelOptions { refine, background: Background::Below(t), ..base.labelling };
            let f = shapes::figures_encoded(&seg, &set, &encoded, &labelling);
            println!("refine {name}: threshold {t:.2}: mIoU {:.4}, pixel accuracy {:.4}", f.miou, f.pixel_accuracy);
            if best.is_none_or(|(_, b)| f.miou > b.miou) {
                best = Some((t, f));
            }
        }
        let (t, f) = best.expect("a threshold");
        let mut opts = base;
        opts.labelling.refine = refine;
        opts.labelling.background = Background::Below(t);
        let (_, _, b) = shapes::evaluate(&seg, &set, &opts, None, &DetectOptions::default());
        println!(
            "BEST refine {name}: threshold {t:.2}: mIoU {:.4}, pixel accuracy {:.4}; detection recall {:.3}, precision {:.3} (one to one); grounding recall {:.3}",
            f.miou,
            f.pixel_accuracy,
            b.detection_recall(),
            b.detection_precision(),
            b.grounding_recall()
        );
    }
}

/// Why an object was missed, first cause that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Miss {
    /// No pixel took its label; most of its pixels are background.
    AbsentAsBackground,
    /// No pixel took its label; most of its pixels took other labels.
    AbsentAsOthers,
    /// Its label's regions cover under half of it: other labels or background took it.
    Mislabelled,
    /// A region of its label matches it (IoU >= 0.5) but the score, area or fragment filters dropped it.
    Filtered,
    /// A matching region passed the filters but a better box of another label suppressed it.
    Suppressed,
    /// Its label's best region overlaps it but its box is over twice the object's: merged with more.
    TooLarge,
    /// Its label's best region's box is smaller or elsewhere: fragmented.
    TooSmall,
}

fn why(seg: &Segmenter, set: &shapes::EvalSet, opts: groupseg::SegmentOptions, show: bool) {
    use groupseg::detect::{self, BoundingBox};
    use groupseg::{ground, phrases, Templates};
    use std::collections::BTreeMap;
    let detect_opts = DetectOptions::default();
    let (mut det, mut gr): (BTreeMap<Miss, usize>, BTreeMap<Miss, usize>) = Default::default();
    let (mut objects, mut boxes_total) = (0, 0);
    let mut wrong: BTreeMap<&str, usize> = BTreeMap::new();
    let classify = |s: &groupseg::Segmentation, label: &str, truth: &BoundingBox, mask: &[bool], found: &[(String, f32, BoundingBox)]| -> Option<Miss> {
        if found.iter().any(|(l, _, b)| l == label && b.iou(truth) >= 0.5) {
            return None;
        }
        let class = s.classes.iter().position(|c| c == label)?;
        let inside = s.label_map.iter().zip(mask).filter(|&(&l, &m)| m && l as usize == class).count();
        let area = mask.iter().filter(|&&m| m).count();
        if !s.label_map.iter().any(|&l| l as usize == class) {
            let background = s.label_map.iter().zip(mask).filter(|&(&l, &m)| m && l == 0).count();
            return Some(if background * 2 > area { Miss::AbsentAsBackground } else { Miss::AbsentAsOthers });
        }
        if inside * 2 < area {
            return Some(Miss::Mislabelled);
        }
        let regions: Vec<_> = detect::regions(s, detect_opts.merge_gap).into_iter().filter(|r| r.class == class).collect();
        if regions.iter().any(|r| r.bounds.iou(truth) >= 0.5) {
            return Some(Miss::Filtered);
        }
        let best = regions.iter().max_by(|a, b| a.bounds.iou(truth).total_cmp(&b.bounds.iou(truth)))?;
        Some(if best.bounds.area() > 2 * truth.area() { Miss::TooLarge } else { Miss::TooSmall })
    };
    for (scene_index, scene) in set.scenes.iter().enumerate() {
        let s = groupseg::block_on(seg.segment(&scene.photo, &scene.labels, &Templates::default(), &opts)).expect("segment");
        let truth = shapes::truth_boxes(scene, set, s.width);
        let found: Vec<_> = detect::detect(&s, &detect_opts).into_iter().map(|d| (d.label, d.score, d.bounds)).collect();
        let all: Vec<_> = detect::detect(&s, &DetectOptions { nms_iou: 1.0, ..detect_opts }).into_iter().map(|d| (d.label, d.score, d.bounds)).collect();
        objects += truth.len();
        boxes_total += found.len();
        for (l, _, b) in &found {
            if !truth.iter().any(|(t, x)| t == l && x.iou(b) >= 0.5) {
                let kind = if truth.iter().any(|(t, _)| t == l) { "wrong box of a present label" } else { "a label not in the scene" };
                *wrong.entry(kind).or_default() += 1;
            }
        }
        let phrases = scene.phrases().to_vec();
        let caption = shapes::caption(&phrases);
        let chunks = phrases::chunk(&caption);
        let mut grounding = opts;
        grounding.labelling.nothing_prompt = true;
        let g = groupseg::block_on(seg.segment(&scene.photo, &phrases, &Templates::default(), &grounding)).expect("segment");
        let grounded: Vec<_> = ground::ground(&chunks, &g, &detect_opts)
            .iter()
            .zip(&phrases)
            .filter_map(|(gr, p)| gr.bounds.map(|b| (p.clone(), gr.score, b)))
            .collect();
        for (label, b) in &truth {
            let k = set.classes.iter().position(|c| c == label).expect("class") as u8;
            let mask: Vec<bool> = scene.truth.iter().map(|&t| t == k).collect();
            if let Some(mut m) = classify(&s, label, b, &mask, &found) {
                if m == Miss::Filtered && all.iter().any(|(l, _, x)| l == label && x.iou(b) >= 0.5) {
                    m = Miss::Suppressed;
                }
                *det.entry(m).or_default() += 1;
            }
            if let Some(m) = classify(&g, label, b, &mask, &grounded) {
                if m == Miss::TooLarge && show {
                    let class = g.classes.iter().position(|c| c == label).expect("class");
                    let regions: Vec<_> = detect::regions(&g, detect_opts.merge_gap).into_iter().filter(|r| r.class == class).map(|r| (r.bounds, r.area, r.score)).collect();
                    let shares: Vec<_> = g.summary.iter().map(|c| (c.label.clone(), (c.share * 100.0).round())).collect();
                    eprintln!("scene {}: {label} truth {b:?}; regions {regions:?}; found {:?}; shares {shares:?}", scene_index, grounded.iter().find(|f| &f.0 == label));
                }
                *gr.entry(m).or_default() += 1;
            }
        }
    }
    println!("{objects} objects, {boxes_total} boxes");
    println!("detection misses: {det:?}");
    println!("unmatched boxes: {wrong:?}");
    println!("grounding misses: {gr:?}");
}

fn detect_sweep(seg: &Segmenter, set: &shapes::EvalSet, encoded: &[groupseg::EncodedPhoto], thresholds: &[f32], nothing_prompt: bool) {
    let base = seg.default_options();
    let mut opts = Vec::new();
    for gap in [0.0, 0.01, 0.02, 0.04] {
        for fragment_share in [0.05, 0.1, 0.2, 0.3, 0.5] {
            opts.push(DetectOptions { merge_gap: gap, fragment_share, ..Default::default() });
        }
    }
    for &t in thresholds {
        let labelling = groupseg::LabelOptions { refine: Some(Refinement::TCL), background: Background::Below(t), nothing_prompt, ..base.labelling };
        for (d, b) in opts.iter().zip(shapes::box_figures_encoded(seg, set, encoded, &labelling, &opts)) {
            println!(
                "threshold {t:.2} merge gap {:.2} fragment share {:.2}: detection recall {:.3}, precision {:.3} ({} boxes); grounding recall {:.3}",
                d.merge_gap,
                d.fragment_share,
                b.detection_recall(),
                b.detection_precision(),
                b.detections,
                b.grounding_recall()
            );
        }
    }
}
