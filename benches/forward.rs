//! Times our CPU forward on a full-size GroupViT against transformers on the same CPU and thread
//! count, in alternating rounds (this machine's speed drifts by ±10 % over minutes, so each side
//! is credited with its best per-round median). `./build.sh bench` prepares the model and sets
//! GROUPSEG_BENCH_DIR and GROUPSEG_BENCH_PYTHON.

use std::process::Command;
use std::time::Instant;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use groupseg::gpu::buffer::{GpuMatrix, GpuTensor};
use groupseg::gpu::matmul::{Epilogue, Matmul};
use groupseg::gpu::Gpu;
use groupseg::cpu::matrix::{Int8Matrix, Matrix};
use groupseg::checkpoint::weights;
use groupseg::model::{GroupViTConfig, GroupViTModel};
use groupseg::{BackendChoice, RunningBackend, Segmenter};

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
    let model = {
        let config = GroupViTConfig::from_json(&std::fs::read_to_string(dir.join("model/config.json")).unwrap()).unwrap();
        let vb = weights::var_builder(std::fs::read(dir.join("model/model.safetensors")).unwrap(), &Device::Cpu).unwrap();
        GroupViTModel::new(vb, &config).expect("model")
    };
    let x224 = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu).unwrap();
    let x448 = Tensor::randn(0f32, 1.0, (1, 3, 448, 448), &Device::Cpu).unwrap();
    let labels = meta["labels"].as_array().unwrap();
    let prompts = |n: usize| -> Tensor {
        let p: Vec<String> = (0..n).map(|i| format!("a photo of a {}.", labels[i % labels.len()].as_str().unwrap())).collect();
        seg.tokenize(&p).unwrap()
    };
    let (t1, t20) = (prompts(1), prompts(20));
    // The int8 copy (`groupseg convert --to int8`, made by `./build.sh bench`): integer products.
    let int8 = {
        let at = dir.join("model-int8");
        let config = GroupViTConfig::from_json(&std::fs::read_to_string(at.join("config.json")).expect("model-int8")).unwrap();
        let vb = weights::var_builder(std::fs::read(at.join("model.safetensors")).unwrap(), &Device::Cpu).unwrap();
        GroupViTModel::new(vb, &config).expect("int8 model")
    };

    let mut ours = [f64::INFINITY; 4];
    let mut peer = [f64::INFINITY; 4];
    // onnxruntime on the image rows, when `./build.sh bench` exported the encoder to ONNX, and
    // on its q8 copy beside our int8 one.
    let mut onnx = [f64::INFINITY; 2];
    let mut ours_int8 = [f64::INFINITY; 2];
    let mut onnx_q8 = [f64::INFINITY; 2];
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
            median_ms(2, 10, || drop(model.image.forward(x224.clone()).unwrap())),
            median_ms(1, 5, || drop(model.image.forward(x448.clone()).unwrap())),
            median_ms(2, 10, || drop(model.text.forward(&t1).unwrap())),
            median_ms(1, 5, || drop(model.text.forward(&t20).unwrap())),
        ];
        for (i, w) in WORK.iter().enumerate() {
            let p = times[w].as_f64().unwrap();
            println!("round {}: {w:<10} groupseg {:>7.1} ms   transformers {p:>7.1} ms", round + 1, mine[i]);
            ours[i] = ours[i].min(mine[i]);
            peer[i] = peer[i].min(p);
        }
        let mine8 = [
            median_ms(2, 10, || drop(int8.image.forward(x224.clone()).unwrap())),
            median_ms(1, 5, || drop(int8.image.forward(x448.clone()).unwrap())),
        ];
        for (i, side) in [224, 448].iter().enumerate() {
            if let Some(p) = times[format!("onnxruntime_image_{side}")].as_f64() {
                println!("round {}: image_{side:<4} onnxruntime {p:>7.1} ms", round + 1);
                onnx[i] = onnx[i].min(p);
            }
            println!("round {}: image_{side:<4} groupseg int8 {:>7.1} ms", round + 1, mine8[i]);
            ours_int8[i] = ours_int8[i].min(mine8[i]);
            if let Some(p) = times[format!("onnxruntime_q8_image_{side}")].as_f64() {
                println!("round {}: image_{side:<4} onnxruntime q8 {p:>7.1} ms", round + 1);
                onnx_q8[i] = onnx_q8[i].min(p);
            }
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
    if onnx.iter().all(|t| t.is_finite()) {
        println!("\n{:<10} {:>12} {:>16} {:>8}", "work", "groupseg ms", "onnxruntime ms", "ratio");
        for (i, w) in WORK[..2].iter().enumerate() {
            println!("{w:<10} {:>12.1} {:>16.1} {:>8.2}", ours[i], onnx[i], ours[i] / onnx[i]);
        }
    }
    if onnx_q8.iter().all(|t| t.is_finite()) {
        println!("\n{:<10} {:>17} {:>19} {:>8}", "work", "groupseg int8 ms", "onnxruntime q8 ms", "ratio");
        for (i, w) in WORK[..2].iter().enumerate() {
            println!("{w:<10} {:>17.1} {:>19.1} {:>8.2}", ours_int8[i], onnx_q8[i], ours_int8[i] / onnx_q8[i]);
        }
    }
    let w = seg.resident_weights();
    println!("\nresident weights, CPU backend: {:.1} MB in CPU memory", w.cpu as f64 / 1e6);
    gpu_section(&dir, &x224, &x448);
}

/// The GPU image encoder on the best hardware adapter (or a software one when
/// GROUPSEG_BENCH_SOFTWARE_GPU is set, for relative figures only), and the matmul's throughput.
fn gpu_section(dir: &std::path::Path, x224: &Tensor, x448: &Tensor) {
    let allow_software = std::env::var_os("GROUPSEG_BENCH_SOFTWARE_GPU").is_some();
    let backend = if allow_software { BackendChoice::Gpu } else { BackendChoice::Auto };
    let seg = match Segmenter::load_on(&dir.join("model"), &Device::Cpu, backend) {
        Ok(seg) if matches!(seg.backend(), RunningBackend::Gpu(_)) => seg,
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
    let w = seg.resident_weights();
    println!("resident weights, GPU backend: {:.1} MB in CPU memory, {:.1} MB on the GPU", w.cpu as f64 / 1e6, w.gpu as f64 / 1e6);
    let software = matches!(seg.backend(), RunningBackend::Gpu(adapter) if adapter.is_software());
    let (warmup, runs) = if software { (1, 3) } else { (3, 20) };
    let t224 = median_ms(warmup, runs, || drop(groupseg::block_on(seg.image_features(x224)).unwrap()));
    let t448 = median_ms(warmup, runs, || drop(groupseg::block_on(seg.image_features(x448)).unwrap()));
    println!("image encoder: 224 {t224:.1} ms, one 448 window {t448:.1} ms (with read-back and projections)");

    // A whole segmentation (448 × 597 photo: two windows, ten labels, composition on the GPU)
    // against the CPU path on the same photo.
    let photo = groupseg::preprocess::decode(&std::fs::read(dir.join("photo448.png")).unwrap()).unwrap();
    let labels: Vec<String> =
        ["cat", "dog", "sofa", "window", "floor", "grass", "sky", "tree", "car", "person"].map(String::from).to_vec();
    let embeddings = groupseg::block_on(seg.label_embeddings(&labels, &Default::default())).unwrap();
    let opts = groupseg::SegmentOptions::default();
    let segment = |s: &Segmenter| drop(groupseg::block_on(s.segment_with_embeddings(&photo, &labels, &embeddings, &opts)).unwrap());
    let gpu_ms = median_ms(warmup.min(1), runs.min(5), || segment(&seg));
    let cpu = Segmenter::load(&dir.join("model"), &Device::Cpu).unwrap();
    let cpu_ms = median_ms(1, 3, || segment(&cpu));
    println!("segment a 448×597 photo, 10 labels: GPU {gpu_ms:.1} ms, CPU {cpu_ms:.1} ms (ratio {:.2})", gpu_ms / cpu_ms);

    // Per-kernel times of one 448 window, from timestamp queries.
    let peak = std::env::var("GROUPSEG_BENCH_PEAK_GFLOPS").ok().and_then(|v| v.parse::<f64>().ok());
    match groupseg::block_on(seg.profile_image_features(x448)) {
        Ok((_, kernels)) => {
            let total: f64 = kernels.iter().map(|k| k.ms).sum();
            println!("\nkernels of one 448 window (timestamp queries; {total:.1} ms on the GPU in all)");
            println!("{:<14} {:>10} {:>10} {:>7} {:>10}", "kernel", "dispatches", "ms", "share", "GFLOP/s");
            for k in &kernels {
                let gflops = k.gflops().map_or(String::new(), |g| match peak {
                    Some(p) => format!("{g:.0} ({:.0} % of peak)", 100.0 * g / p),
                    None => format!("{g:.1}"),
                });
                println!("{:<14} {:>10} {:>10.2} {:>6.1}% {:>10}", k.name, k.dispatches, k.ms, 100.0 * k.ms / total, gflops);
            }
        }
        Err(e) => println!("per-kernel times: {e}"),
    }

    // The matmul alone: a stage-1 MLP product at 448 (848 × 384 → 1536), and a large square one,
    // with the weight held in f32, f16 and int8 (what f32, f16 and int8 checkpoints keep there).
    let gpu = Gpu::new_blocking(allow_software).unwrap();
    let matmul = Matmul::new(&gpu);
    let shapes: &[(usize, usize, usize)] = if software { &[(848, 384, 1536)] } else { &[(848, 384, 1536), (4096, 4096, 4096)] };
    for &(m, k, n) in shapes {
        let a = GpuTensor::upload(&gpu, &vec![0.5; m * k], &[m, k]).unwrap();
        let bias = GpuTensor::upload(&gpu, &vec![0.0; n], &[n]).unwrap();
        let c = GpuTensor::empty(&gpu, &[m, n]);
        let values = Tensor::randn(0f32, 0.05, (n, k), &Device::Cpu).unwrap();
        let f16_values = values.to_dtype(DType::F16).unwrap().to_dtype(DType::F32).unwrap();
        let codes: Vec<u8> = (0..n * k).map(|i| (i * 7919 % 255) as u8 + 1).collect();
        let int8 = Int8Matrix::new(codes, vec![0.001; n], n, k).unwrap();
        let weights = [("f32", Matrix::F32(values)), ("f16", Matrix::F32(f16_values)), ("int8", Matrix::Int8(Arc::new(int8)))];
        for (held, weight) in weights {
            let w = GpuMatrix::upload(&gpu, &weight, 1.0).unwrap();
            let reps = if software { 1 } else { 10 };
            let ms = median_ms(1, 3, || {
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                for _ in 0..reps {
                    matmul.encode_weight(&gpu, &mut enc, &a, &w, Some(&bias), Epilogue::BiasGeluErf, &c, m).unwrap();
                }
                gpu.queue.submit([enc.finish()]);
                gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
            }) / reps as f64;
            let gflops = 2.0 * (m * n * k) as f64 / ms / 1e6;
            let of_peak = peak.map_or(String::new(), |p| format!(", {:.0} % of the {p:.0} GFLOP/s peak", 100.0 * gflops / p));
            println!("matmul {m}×{k}→{n}, weight in {held}: {ms:.2} ms, {gflops:.1} GFLOP/s{of_peak}");
        }
    }
}
