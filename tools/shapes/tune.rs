//! Chooses the shapes demo's labelling settings on the validation scenes (seeds 500000–500199,
//! `tests/fixtures/shapes-val`), never on the test scenes: for refinement off and on (with each
//! dilation set and iteration count given), every background threshold of a sweep, mIoU and pixel
//! accuracy, then detection and grounding at the best threshold.
//!
//! cargo run --release --example tune-shapes -- [--iterations 5,10,20] [--dilations 1,2,4,8,12,24;2,4,8,16,24,48]

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
    let base = seg.default_options();
    let encoded = shapes::encode_all(&seg, &set, &base);
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
        let (_, b) = shapes::evaluate(&seg, &set, &opts, &DetectOptions::default());
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
