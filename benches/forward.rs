//! Times our CPU forward on a full-size GroupViT and prints the ratio to transformers measured in the
//! same run (`./build.sh bench` prepares both). Needs GROUPSEG_BENCH_DIR pointing at that output.

use std::time::Instant;

use candle_core::{Device, Tensor};
use groupseg::Segmenter;

fn median_ms(warmup: usize, runs: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::var("GROUPSEG_BENCH_DIR").expect("set GROUPSEG_BENCH_DIR (./build.sh bench does)"));
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference_times.json")).expect("reference_times.json")).unwrap();
    let seg = Segmenter::load(&dir.join("model"), &Device::Cpu).expect("model");
    let model = seg.model();
    let x224 = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu).unwrap();
    let x448 = Tensor::randn(0f32, 1.0, (1, 3, 448, 448), &Device::Cpu).unwrap();
    let labels = reference["labels"].as_array().unwrap();
    let prompts = |n: usize| -> Tensor {
        let p: Vec<String> = (0..n).map(|i| format!("a photo of a {}.", labels[i % labels.len()].as_str().unwrap())).collect();
        seg.tokenize(&p).unwrap()
    };
    let (t1, t20) = (prompts(1), prompts(20));
    let ours = [
        ("image_224", median_ms(2, 10, || drop(model.image_features(&x224).unwrap()))),
        ("image_448", median_ms(1, 5, || drop(model.image_features(&x448).unwrap()))),
        ("text_1", median_ms(2, 10, || drop(model.text_features(&t1).unwrap()))),
        ("text_20", median_ms(1, 5, || drop(model.text_features(&t20).unwrap()))),
    ];
    println!("GroupViT full size, CPU, {} threads (transformers {})", reference["threads"], reference["torch"]);
    println!("{:<10} {:>12} {:>16} {:>8}", "work", "groupseg ms", "transformers ms", "ratio");
    for (name, ms) in ours {
        let peer = reference["median_ms"][name].as_f64().unwrap();
        println!("{name:<10} {ms:>12.1} {peer:>16.1} {:>8.2}", ms / peer);
    }
}
