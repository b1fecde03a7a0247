//! Times our CPU forward on a full-size GroupViT against transformers on the same CPU and thread
//! count, in alternating rounds (this machine's speed drifts by ±10 % over minutes, so each side
//! is credited with its best per-round median). `./build.sh bench` prepares the model and sets
//! GROUPSEG_BENCH_DIR and GROUPSEG_BENCH_PYTHON.

use std::process::Command;
use std::time::Instant;

use candle_core::{Device, Tensor};
use groupseg::Segmenter;

const ROUNDS: usize = 3;
const WORK: [&str; 4] = ["image_224", "image_448", "text_1", "text_20"];

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
    groupseg::alloc::keep_freed_buffers();
    let dir = std::path::PathBuf::from(std::env::var("GROUPSEG_BENCH_DIR").expect("GROUPSEG_BENCH_DIR (./build.sh bench sets it)"));
    let python = std::env::var("GROUPSEG_BENCH_PYTHON").expect("GROUPSEG_BENCH_PYTHON (./build.sh bench sets it)");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("reference.json")).expect("reference.json")).unwrap();
    let threads = meta["threads"].as_u64().unwrap();
    let seg = Segmenter::load(&dir.join("model"), &Device::Cpu).expect("model");
    let model = seg.model();
    let x224 = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu).unwrap();
    let x448 = Tensor::randn(0f32, 1.0, (1, 3, 448, 448), &Device::Cpu).unwrap();
    let labels = meta["labels"].as_array().unwrap();
    let prompts = |n: usize| -> Tensor {
        let p: Vec<String> = (0..n).map(|i| format!("a photo of a {}.", labels[i % labels.len()].as_str().unwrap())).collect();
        seg.tokenize(&p).unwrap()
    };
    let (t1, t20) = (prompts(1), prompts(20));

    let mut ours = [f64::INFINITY; 4];
    let mut peer = [f64::INFINITY; 4];
    for round in 0..ROUNDS {
        let out = Command::new(&python)
            .arg("tools/reference/reference.py")
            .arg(&dir)
            .arg(threads.to_string())
            .arg("--times")
            .output()
            .expect("run the reference");
        assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8_lossy(&out.stdout);
        let times: serde_json::Value = serde_json::from_str(line.lines().last().unwrap_or("")).expect("reference JSON");
        let mine = [
            median_ms(2, 10, || drop(model.image_features(&x224).unwrap())),
            median_ms(1, 5, || drop(model.image_features(&x448).unwrap())),
            median_ms(2, 10, || drop(model.text_features(&t1).unwrap())),
            median_ms(1, 5, || drop(model.text_features(&t20).unwrap())),
        ];
        for (i, w) in WORK.iter().enumerate() {
            let p = times[w].as_f64().unwrap();
            println!("round {}: {w:<10} groupseg {:>7.1} ms   transformers {p:>7.1} ms", round + 1, mine[i]);
            ours[i] = ours[i].min(mine[i]);
            peer[i] = peer[i].min(p);
        }
    }
    println!(
        "\nGroupViT full size ({} parameters), CPU, {threads} threads; transformers {} / torch {}; best of {ROUNDS} rounds' medians",
        meta["parameters"], meta["transformers"].as_str().unwrap_or("?"), meta["torch"].as_str().unwrap_or("?")
    );
    println!("{:<10} {:>12} {:>16} {:>8}", "work", "groupseg ms", "transformers ms", "ratio");
    for (i, w) in WORK.iter().enumerate() {
        println!("{w:<10} {:>12.1} {:>16.1} {:>8.2}", ours[i], peer[i], ours[i] / peer[i]);
    }
}
