//! Times our CPU forward on a full-size GroupViT against transformers on the same CPU and thread
//! count, in alternating rounds (this machine's speed drifts by ±10 % over minutes, so each side
//! is credited with its best per-round median). `./build.sh bench` prepares the model and sets
//! GROUPSEG_BENCH_DIR and GROUPSEG_BENCH_PYTHON.

use std::process::Command;
use std::time::Instant;

use candle_core::{Device, Tensor};
use groupseg::gpu::buffer::GpuTensor;
use groupseg::gpu::matmul::{BLayout, Epilogue, Matmul, MatmulShape};
use groupseg::gpu::Gpu;
use groupseg::{Backend, Segmenter};

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
    gpu_section(&dir, &x224, &x448);
}

/// The GPU image encoder on the best hardware adapter (or a software one when
/// GROUPSEG_BENCH_SOFTWARE_GPU is set, for relative figures only), and the matmul's throughput.
fn gpu_section(dir: &std::path::Path, x224: &Tensor, x448: &Tensor) {
    let allow_software = std::env::var_os("GROUPSEG_BENCH_SOFTWARE_GPU").is_some();
    let backend = if allow_software { Backend::Gpu } else { Backend::Auto };
    let seg = match Segmenter::load_on(&dir.join("model"), &Device::Cpu, backend) {
        Ok(seg) if seg.backend().starts_with("GPU") => seg,
        Ok(seg) => {
            println!("\nGPU: not measured ({})", seg.backend());
            return;
        }
        Err(e) => {
            println!("\nGPU: not measured ({e})");
            return;
        }
    };
    println!("\n{}", seg.backend());
    let software = seg.backend().ends_with("software emulation");
    let (warmup, runs) = if software { (1, 3) } else { (3, 20) };
    let t224 = median_ms(warmup, runs, || drop(groupseg::block_on(seg.image_features(x224)).unwrap()));
    let t448 = median_ms(warmup, runs, || drop(groupseg::block_on(seg.image_features(x448)).unwrap()));
    println!("image encoder: 224 {t224:.1} ms, one 448 window {t448:.1} ms (with read-back and projections)");

    // The matmul alone: a stage-1 MLP product at 448 (848 × 384 → 1536), and a large square one.
    let gpu = Gpu::new_blocking(allow_software).unwrap();
    let matmul = Matmul::new(&gpu);
    let shapes: &[(usize, usize, usize)] = if software { &[(848, 384, 1536)] } else { &[(848, 384, 1536), (4096, 4096, 4096)] };
    for &(m, k, n) in shapes {
        let a = GpuTensor::upload(&gpu, &vec![0.5; m * k], &[m, k]).unwrap();
        let b = GpuTensor::upload(&gpu, &vec![0.25; n * k], &[n, k]).unwrap();
        let bias = GpuTensor::upload(&gpu, &vec![0.0; n], &[n]).unwrap();
        let c = GpuTensor::empty(&gpu, &[m, n]);
        let reps = if software { 1 } else { 10 };
        let ms = median_ms(1, 3, || {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            let s = MatmulShape { batch: 1, m, n, k, b_shared: true };
            for _ in 0..reps {
                matmul.encode(&gpu, &mut enc, &a, &b, BLayout::Transposed, Some(&bias), Epilogue::BiasGeluErf, &c, s).unwrap();
            }
            gpu.queue.submit([enc.finish()]);
            gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        }) / reps as f64;
        println!("matmul {m}×{k}→{n}: {ms:.2} ms, {:.1} GFLOP/s", 2.0 * (m * n * k) as f64 / ms / 1e6);
    }
}
