//! The GPU kernels against the CPU path. In CI they run on Mesa's lavapipe (Vulkan on the CPU),
//! which `./build.sh test` installs; without any adapter these tests fail rather than skip.

mod common;

use candle_core::{Device, Tensor};
use common::{assert_close_values, expected, fixture};
use groupseg::gpu::buffer::{GpuMatrix, GpuTensor};
use groupseg::gpu::matmul::{BLayout, Epilogue, Matmul, MatmulShape};
use groupseg::gpu::Gpu;
use groupseg::model::config::Activation;
use groupseg::cpu;
use groupseg::cpu::matrix::Matrix;

fn gpu() -> Gpu {
    match Gpu::new_blocking(true) {
        Ok(gpu) => {
            eprintln!("GPU: {:?}", gpu.adapter);
            gpu
        }
        Err(e) => panic!("{e} (install mesa-vulkan-drivers for lavapipe; ./build.sh test does)"),
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}


#[test]
fn linear_layers_match_the_cpu_with_every_epilogue() {
    let gpu = gpu();
    let matmul = Matmul::new(&gpu);
    // Odd sizes cross tile edges; 848 × 384 → 1536 is a stage-1 MLP at 448 pixels.
    for (m, k, n) in [(1, 1, 1), (7, 13, 5), (65, 17, 130), (848, 384, 1536)] {
        let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap();
        let w = (Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap() / (k as f64).sqrt()).unwrap();
        let b = Tensor::randn(0f32, 1.0, n, &Device::Cpu).unwrap();
        let (gx, gw, gb) = (
            GpuTensor::upload(&gpu, &values(&x), &[m, k]).unwrap(),
            GpuTensor::upload(&gpu, &values(&w), &[n, k]).unwrap(),
            GpuTensor::upload(&gpu, &values(&b), &[n]).unwrap(),
        );
        for (ep, cpu_act) in [
            (Epilogue::Bias, None),
            (Epilogue::BiasGeluErf, Some(Activation::Gelu)),
            (Epilogue::BiasQuickGelu, Some(Activation::QuickGelu)),
            (Epilogue::BiasRelu, Some(Activation::Relu)),
        ] {
            let want = values(&cpu::linear(&x, &Matrix::F32(w.clone()), &b, cpu_act).unwrap());
            let out = GpuTensor::empty(&gpu, &[m, n]);
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            let shape = MatmulShape { batch: 1, m, n, k, b_shared: true };
            matmul.encode(&gpu, &mut enc, &gx, &gw, BLayout::Transposed, Some(&gb), ep, &out, shape).unwrap();
            gpu.queue.submit([enc.finish()]);
            assert_close_values(&format!("{m}×{k}→{n} {ep:?}"), &out.read_blocking(&gpu).unwrap(), &want, 1e-4);
        }
    }
}

/// An int8 matrix of `(rows, cols)` codes from `seed`, with uneven row scales.
fn int8_matrix(rows: usize, cols: usize, seed: usize) -> Matrix {
    use groupseg::cpu::matrix::Int8Matrix;
    let codes: Vec<u8> = (0..rows * cols).map(|i| ((i * 37 + seed * 11 + i / 7) % 255) as u8 + 1).collect();
    let scales: Vec<f32> = (0..rows).map(|r| 0.002 * ((r * 5 + seed) % 9 + 1) as f32).collect();
    Matrix::Int8(std::sync::Arc::new(Int8Matrix::new(codes, scales, rows, cols).unwrap()))
}

#[test]
fn weights_stay_int8_or_f16_on_the_gpu_and_multiply_as_their_f32_values() {
    let gpu = gpu();
    let matmul = Matmul::new(&gpu);
    // K of 1, 13 and 17 leave rows ending mid-word; 848 × 384 → 1536 is a stage-1 MLP at 448.
    for (m, k, n) in [(1, 1, 1), (7, 13, 5), (65, 17, 130), (848, 384, 1536)] {
        let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 1.0, n, &Device::Cpu).unwrap();
        let f32_values = (Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap() / (k as f64).sqrt()).unwrap();
        // An f16 checkpoint's values, widened as the loader widens them.
        let f16_values = f32_values.to_dtype(candle_core::DType::F16).unwrap().to_dtype(candle_core::DType::F32).unwrap();
        let cases = [("int8", int8_matrix(n, k, m), 4), ("f16", Matrix::F32(f16_values), 2), ("f32", Matrix::F32(f32_values), 1)];
        for (what, weight, narrowing) in cases {
            // Attention's query scale folds into the upload.
            for scale in [1.0f32, 0.125, 0.3] {
                let before = gpu.uploaded_bytes();
                let gw = GpuMatrix::upload(&gpu, &weight, scale).unwrap();
                let held = gpu.uploaded_bytes() - before;
                let kind = match &gw {
                    GpuMatrix::F32(_) => "f32",
                    GpuMatrix::F16 { .. } => "f16",
                    GpuMatrix::Int8 { .. } => "int8",
                };
                assert_eq!(kind, what, "{m}×{k}→{n}");
                assert_eq!(gw.dims(), (n, k));
                // The matrix's words (rows padded to a word) and, when narrow, a scale per row.
                let row_bytes = (k * 4 / narrowing).next_multiple_of(4);
                assert_eq!(held, n * row_bytes + if narrowing > 1 { n * 4 } else { 0 }, "{what} {m}×{k}→{n}");
                let want_w = (weight.to_f32().unwrap() * scale as f64).unwrap();
                let gb = GpuTensor::upload(&gpu, &values(&b), &[n]).unwrap();
                let gx = GpuTensor::upload(&gpu, &values(&x), &[m, k]).unwrap();
                for (ep, cpu_act) in [(Epilogue::Bias, None), (Epilogue::BiasGeluErf, Some(Activation::Gelu))] {
                    let want = values(&cpu::linear(&x, &Matrix::F32(want_w.clone()), &b, cpu_act).unwrap());
                    let out = GpuTensor::empty(&gpu, &[m, n]);
                    let mut enc = gpu.device.create_command_encoder(&Default::default());
                    matmul.encode_weight(&gpu, &mut enc, &gx, &gw, Some(&gb), ep, &out, m).unwrap();
                    gpu.queue.submit([enc.finish()]);
                    let got = out.read_blocking(&gpu).unwrap();
                    assert_close_values(&format!("{what} ×{scale} {m}×{k}→{n} {ep:?}"), &got, &want, 1e-4);
                }
            }
        }
    }
}

#[test]
fn batched_attention_products_match_the_cpu() {
    let gpu = gpu();
    let matmul = Matmul::new(&gpu);
    // Six heads of 70 tokens × 64: scores Q·Kᵀ, then P·V.
    let (heads, t, d) = (6, 70, 64);
    let q = Tensor::randn(0f32, 1.0, (heads, t, d), &Device::Cpu).unwrap();
    let k = Tensor::randn(0f32, 1.0, (heads, t, d), &Device::Cpu).unwrap();
    let v = Tensor::randn(0f32, 1.0, (heads, t, d), &Device::Cpu).unwrap();
    let up = |x: &Tensor| GpuTensor::upload(&gpu, &values(x), x.dims()).unwrap();
    let (gq, gk, gv) = (up(&q), up(&k), up(&v));

    let scores = GpuTensor::empty(&gpu, &[heads, t, t]);
    let mixed = GpuTensor::empty(&gpu, &[heads, t, d]);
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    let s = MatmulShape { batch: heads, m: t, n: t, k: d, b_shared: false };
    matmul.encode(&gpu, &mut enc, &gq, &gk, BLayout::Transposed, None, Epilogue::None, &scores, s).unwrap();
    let s = MatmulShape { batch: heads, m: t, n: d, k: t, b_shared: false };
    matmul.encode(&gpu, &mut enc, &scores, &gv, BLayout::Plain, None, Epilogue::None, &mixed, s).unwrap();
    gpu.queue.submit([enc.finish()]);

    let want_scores = q.matmul(&k.t().unwrap()).unwrap();
    assert_close_values("Q·Kᵀ", &scores.read_blocking(&gpu).unwrap(), &values(&want_scores), 1e-4);
    let want_mixed = want_scores.matmul(&v).unwrap();
    assert_close_values("(Q·Kᵀ)·V", &mixed.read_blocking(&gpu).unwrap(), &values(&want_mixed), 1e-4);
}

#[test]
fn shape_mistakes_are_errors() {
    let gpu = gpu();
    let matmul = Matmul::new(&gpu);
    let a = GpuTensor::upload(&gpu, &[1.0; 6], &[2, 3]).unwrap();
    let c = GpuTensor::empty(&gpu, &[2, 2]);
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    let s = MatmulShape { batch: 1, m: 2, n: 2, k: 3, b_shared: true };
    let err = matmul.encode(&gpu, &mut enc, &a, &a, BLayout::Transposed, None, Epilogue::Bias, &c, s).unwrap_err();
    assert!(err.to_string().contains("needs a bias"), "{err}");
    assert!(GpuTensor::upload(&gpu, &[1.0; 5], &[2, 3]).is_err());
}

#[test]
fn layer_norm_and_softmax_match_the_cpu() {
    use groupseg::gpu::rows::RowOps;
    let gpu = gpu();
    let ops = RowOps::new(&gpu);
    for (rows, cols) in [(1, 1), (5, 7), (848, 384), (3, 1000)] {
        let x = (Tensor::randn(0f32, 2.0, (rows, cols), &Device::Cpu).unwrap() + 3.0).unwrap();
        let w = Tensor::randn(0f32, 1.0, cols, &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 1.0, cols, &Device::Cpu).unwrap();
        let up = |t: &Tensor| GpuTensor::upload(&gpu, &values(t), t.dims()).unwrap();
        let (gx, gw, gb) = (up(&x), up(&w), up(&b));
        let y = GpuTensor::empty(&gpu, &[rows, cols]);
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        ops.encode_layer_norm(&gpu, &mut enc, &gx, &gw, &gb, &y, 1e-5).unwrap();
        ops.encode_softmax(&gpu, &mut enc, &gx).unwrap();
        gpu.queue.submit([enc.finish()]);
        let want_ln = candle_nn::ops::layer_norm(&x, &w, &b, 1e-5).unwrap();
        assert_close_values(&format!("layer norm {rows}×{cols}"), &y.read_blocking(&gpu).unwrap(), &values(&want_ln), 1e-4);
        let want_sm = candle_nn::ops::softmax_last_dim(&x).unwrap();
        assert_close_values(&format!("softmax {rows}×{cols}"), &gx.read_blocking(&gpu).unwrap(), &values(&want_sm), 1e-4);
    }
}

#[test]
fn add_transpose_and_assignment_match_the_cpu() {
    use groupseg::gpu::ops::Ops;
    let gpu = gpu();
    let ops = Ops::new(&gpu);
    let up = |t: &Tensor| GpuTensor::upload(&gpu, &values(t), t.dims()).unwrap();

    // Residual add and a broadcast (position embeddings over a batch of 3).
    let x = Tensor::randn(0f32, 1.0, (3, 50, 16), &Device::Cpu).unwrap();
    let pos = Tensor::randn(0f32, 1.0, (1, 50, 16), &Device::Cpu).unwrap();
    let y = GpuTensor::empty(&gpu, &[3, 50, 16]);
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    ops.encode_add(&gpu, &mut enc, &up(&x), &up(&pos), &y).unwrap();
    gpu.queue.submit([enc.finish()]);
    assert_close_values("broadcast add", &y.read_blocking(&gpu).unwrap(), &values(&x.broadcast_add(&pos).unwrap()), 1e-4);

    // Head split: (B, T, H, d) → (B, H, T, d).
    let t = Tensor::randn(0f32, 1.0, (2, 37, 6, 8), &Device::Cpu).unwrap();
    let out = GpuTensor::empty(&gpu, &[2, 6, 37, 8]);
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    ops.encode_transpose(&gpu, &mut enc, &up(&t), &out, (2, 37, 6, 8)).unwrap();
    gpu.queue.submit([enc.finish()]);
    let want = t.transpose(1, 2).unwrap().contiguous().unwrap();
    assert_eq!(out.read_blocking(&gpu).unwrap(), values(&want));

    // The assignment of 300 tokens to 12 groups, against the CPU model's AssignAttention maths.
    let raw = (Tensor::randn(0f32, 1.0, (2, 12, 300), &Device::Cpu).unwrap() * 3.0).unwrap();
    let (soft, hard) = (GpuTensor::empty(&gpu, &[2, 12, 300]), GpuTensor::empty(&gpu, &[2, 12, 300]));
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    ops.encode_assign(&gpu, &mut enc, &up(&raw), &soft, &hard, 1.0).unwrap();
    gpu.queue.submit([enc.finish()]);
    let want_soft = candle_nn::ops::softmax(&raw, 1).unwrap();
    let winner = want_soft.argmax_keepdim(1).unwrap();
    let ids = Tensor::arange(0u32, 12, &Device::Cpu).unwrap().reshape((1, 12, 1)).unwrap();
    let onehot = winner.broadcast_eq(&ids).unwrap().to_dtype(candle_core::DType::F32).unwrap();
    let want_hard = onehot.broadcast_div(&(onehot.sum_keepdim(2).unwrap() + 1.0).unwrap()).unwrap();
    assert_close_values("soft assignment", &soft.read_blocking(&gpu).unwrap(), &values(&want_soft), 1e-4);
    assert_close_values("hard assignment", &hard.read_blocking(&gpu).unwrap(), &values(&want_hard), 1e-4);
}

fn vision_parity(name: &str) {
    use groupseg::gpu::encoder::ImageEncoder;
    let expected = expected(name);
    let pixels = &expected["pixel_values"];
    let model = common::model(&fixture(name));
    let cpu = model.image.vision_model().forward(pixels.clone()).unwrap();
    let encoder = groupseg::block_on(ImageEncoder::open(&model.image, true)).unwrap();
    let got = groupseg::block_on(encoder.forward(pixels)).unwrap();

    assert_eq!(got.grid, cpu.grid);
    common::assert_close(&format!("{name} groups"), &got.last_hidden_state, &cpu.last_hidden_state, 1e-4);
    assert_eq!(got.assignments.len(), cpu.assignments.len());
    for (i, (g, c)) in got.assignments.iter().zip(&cpu.assignments).enumerate() {
        assert_eq!(g.dims(), c.dims());
        common::assert_close(&format!("{name} assignment {i}"), g, c, 1e-4);
    }
}

#[test]
fn vision_tower_matches_the_cpu_on_the_two_stage_fixture() {
    vision_parity("tiny-2stage");
}

#[test]
fn vision_tower_matches_the_cpu_on_the_three_stage_non_square_fixture() {
    vision_parity("tiny-3stage");
}

#[test]
fn segmentation_on_the_gpu_backend_gives_the_reference_label_maps() {
    use groupseg::preprocess;
    use groupseg::{Background, BackendChoice, RunningBackend, Segmenter};
    let dir = fixture("tiny-3stage");
    let seg = Segmenter::load_on(&dir, &Device::Cpu, BackendChoice::Gpu).unwrap();
    assert!(matches!(seg.backend(), RunningBackend::Gpu(_)), "{}", seg.backend());
    let photo = preprocess::decode(&std::fs::read(dir.join("photo.png")).unwrap()).unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("photo.json")).unwrap()).unwrap();
    let labels: Vec<String> = meta["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
    let mut opts = common::options(
        40,
        meta["window"].as_u64().unwrap() as usize,
        meta["stride"].as_u64().unwrap() as usize,
        Background::Below(meta["background_threshold"].as_f64().unwrap() as f32),
    );
    let expected = expected("tiny-3stage");
    let as_map = |t: &Tensor| -> Vec<u16> { t.flatten_all().unwrap().to_vec1::<i32>().unwrap().iter().map(|&v| v as u16).collect() };
    assert_eq!(groupseg::block_on(seg.segment(&photo, &labels, &Default::default(), &opts)).unwrap().label_map, as_map(&expected["photo_label_map"]));
    opts.labelling.background = Background::Never;
    assert_eq!(groupseg::block_on(seg.segment(&photo, &labels, &Default::default(), &opts)).unwrap().label_map, as_map(&expected["photo_label_map_nobg"]));
}

/// GPU and CPU backends on the same photo, refined and not: label maps identical except where the
/// CPU's two best classes tie within float noise (recorded: the winning scores must then agree within 1e-4), and
/// the same per-class summaries.
fn backends_agree(model: &str, photo: &str, short_side: u32, window: usize, stride: usize) {
    backends_agree_on(&fixture(model), &fixture(photo), short_side, window, stride, Tolerance::Float { group_flips: 0 });
}

/// How far two backends' segmentations may differ.
#[derive(Debug, Clone, Copy)]
enum Tolerance {
    /// Both compute in f32: `group_flips` pixels may differ in score (and so perhaps label), where
    /// two groups tie within float noise in the resized grouping maps and each backend takes another.
    Float { group_flips: usize },
    /// The CPU computes an int8 checkpoint's products in integers over quantized activations, the
    /// GPU in f32 over the widened codes: at least `agreement` of the pixels labelled alike, each
    /// class's share within `share`.
    Quantized { agreement: f64, share: f32 },
}

/// [`backends_agree`] for a checkpoint directory, within `tolerance`.
fn backends_agree_on(dir: &std::path::Path, photo: &std::path::Path, short_side: u32, window: usize, stride: usize, tolerance: Tolerance) {
    use groupseg::preprocess;
    use groupseg::{Background, BackendChoice, Segmenter};
    let model = dir.display();
    let gpu = Segmenter::load_on(dir, &Device::Cpu, BackendChoice::Gpu).unwrap();
    let cpu = Segmenter::load_on(dir, &Device::Cpu, BackendChoice::Cpu).unwrap();
    let photo = preprocess::decode(&std::fs::read(photo).unwrap()).unwrap();
    // Seven labels: the top-5 restriction leaves two out of every window.
    let labels: Vec<String> = ["cat", "dog", "grass", "sky", "a red car", "water", "tree"].map(String::from).to_vec();
    // A random model's best scores are low, and refinement lowers them further (an int8 copy's
    // more): the threshold is the median best score of the CPU's run without background, so
    // background takes about half the photo and the labels the rest whatever the checkpoint.
    let mut cases = Vec::new();
    for refine in [None, Some(groupseg::Refinement::TCL)] {
        let mut opts = common::options(short_side, window, stride, Background::Never);
        opts.labelling.refine = refine;
        let all = groupseg::block_on(cpu.segment(&photo, &labels, &Default::default(), &opts)).unwrap();
        let mut best = all.scores.clone();
        best.sort_by(f32::total_cmp);
        cases.push((Background::Below(best[best.len() / 2]), refine));
        cases.push((Background::Never, refine));
    }
    for (threshold, refine) in cases {
        let mut opts = common::options(short_side, window, stride, threshold);
        opts.labelling.refine = refine;
        let want = groupseg::block_on(cpu.segment(&photo, &labels, &Default::default(), &opts)).unwrap();
        let got = groupseg::block_on(gpu.segment(&photo, &labels, &Default::default(), &opts)).unwrap();
        assert_eq!((got.width, got.height), (want.width, want.height));
        let group_flips = match tolerance {
            Tolerance::Float { group_flips } => group_flips,
            Tolerance::Quantized { agreement, share } => {
                let alike = got.label_map.iter().zip(&want.label_map).filter(|(g, w)| g == w).count() as f64 / got.label_map.len() as f64;
                let worst = got.summary.iter().zip(&want.summary).map(|(g, w)| (g.share - w.share).abs()).fold(0f32, f32::max);
                eprintln!("{model} threshold {threshold:?}, refined {}: {:.2} % of pixels alike, shares within {worst:.4}", refine.is_some(), alike * 100.0);
                assert!(alike >= agreement, "{model}: {:.2} % of pixels alike", alike * 100.0);
                assert!(worst <= share, "{model}: a class's share differs by {worst}");
                continue;
            }
        };
        let (mut ties, mut flips) = (0, 0);
        for (i, (g, w)) in got.label_map.iter().zip(&want.label_map).enumerate() {
            let (gs, ws) = (got.scores[i], want.scores[i]);
            if g != w && (gs - ws).abs() <= 1e-4 {
                ties += 1;
            } else if g != w || (gs - ws).abs() > 1e-4 * ws.abs().max(1.0) {
                flips += 1;
                assert!(flips <= group_flips, "{model} pixel {i}: GPU {g} ({gs}) vs CPU {w} ({ws}), not a tie ({flips} such pixels)");
            }
        }
        assert!(ties * 1000 <= got.label_map.len(), "{model}: {ties} tied pixels of {}", got.label_map.len());
        let present = want.summary.iter().filter(|c| c.share > 0.0).count();
        assert!(present >= 2 || threshold == Background::Never, "{model}: the photo should show several classes, got {:?}", want.summary);
        for (g, w) in got.summary.iter().zip(&want.summary) {
            assert!((g.share - w.share).abs() <= 1e-3, "{model}: {g:?} vs {w:?}");
        }
        eprintln!(
            "{model} threshold {threshold:?}, refined {}: {} pixels, {ties} ties, {flips} group flips, {present} classes",
            refine.is_some(),
            got.label_map.len()
        );
    }
}

#[test]
fn gpu_segmentation_matches_the_cpu_over_many_windows() {
    // 101 × 163 resized to 60 × 97: windows of 40 at stride 20, 2 × 4 of them, overlapping.
    backends_agree("tiny-3stage", "tiny-3stage/photo_big.png", 60, 40, 20);
    // One grouping block fewer: no map chaining; the photo upscaled to the output.
    backends_agree("tiny-2stage", "tiny-3stage/photo.png", 48, 32, 16);
}

#[test]
fn int8_and_f16_checkpoints_segment_alike_on_both_backends_holding_their_own_bytes_on_the_gpu() {
    use groupseg::checkpoint::convert::{convert, StoredAs};
    use groupseg::{BackendChoice, Segmenter};
    let original = fixture("tiny-3stage");
    // What the GPU held before weights stayed narrow: the image side's tensors in f32.
    let tensors = candle_core::safetensors::load(original.join("model.safetensors"), &Device::Cpu).unwrap();
    let f32_held: usize = tensors
        .iter()
        .filter(|(name, _)| name.starts_with("vision_model.") || name.starts_with("visual_projection."))
        .map(|(_, t)| t.elem_count() * 4)
        .sum();
    // The f16 copy has no group flips. The int8 copy's CPU products quantize their activations
    // (the GPU's do not), so its label maps are compared by share: this random fixture's scores lie
    // close together (78–97 % of pixels alike, shares within 0.22, refined without background the
    // least), where a wrong product would leave chance agreement among seven labels. The trained
    // demo's agreement is the test below.
    let int8 = Tolerance::Quantized { agreement: 0.75, share: 0.25 };
    for (stored, most, tolerance) in [(StoredAs::Int8, 0.3, int8), (StoredAs::F16, 0.55, Tolerance::Float { group_flips: 0 })] {
        let dir = tempfile::tempdir().unwrap();
        for file in ["config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"] {
            std::fs::copy(original.join(file), dir.path().join(file)).unwrap();
        }
        let bytes = std::fs::read(original.join("model.safetensors")).unwrap();
        std::fs::write(dir.path().join("model.safetensors"), convert(&bytes, stored).unwrap()).unwrap();
        backends_agree_on(dir.path(), &original.join("photo_big.png"), 60, 40, 20, tolerance);
        let held = Segmenter::load_on(dir.path(), &Device::Cpu, BackendChoice::Gpu).unwrap().resident_weights().gpu;
        eprintln!("{stored:?}: {held} bytes on the GPU, f32 {f32_held}");
        assert!((held as f64) < most * f32_held as f64, "{stored:?}: {held} bytes on the GPU against f32's {f32_held}");
    }
}

#[test]
fn kernel_profile_times_every_dispatch_and_counts_matmul_work() {
    use groupseg::{BackendChoice, Segmenter};
    let dir = fixture("tiny-2stage");
    let seg = Segmenter::load_on(&dir, &Device::Cpu, BackendChoice::Gpu).unwrap();
    let pixels = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
    // lavapipe has timestamp queries: an error here means the profile could not run.
    let (features, kernels) = groupseg::block_on(seg.profile_image_features(&pixels)).unwrap();
    // The profiled run gives the features an unprofiled one does.
    let plain = groupseg::block_on(seg.image_features(&pixels)).unwrap();
    let diff = (features.image_embeds - plain.image_embeds).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff < 1e-5, "profiled features differ by {diff}");
    let names: Vec<&str> = kernels.iter().map(|k| k.name).collect();
    for want in ["matmul", "layer_norm", "softmax", "add", "transpose", "columns", "rows"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(kernels.iter().all(|k| k.ms >= 0.0 && k.dispatches > 0));
    assert!(kernels.iter().map(|k| k.ms).sum::<f64>() > 0.0, "{kernels:?}");
    // Matmuls count their FLOPs (2·m·n·k each); nothing else does.
    let matmul = kernels.iter().find(|k| k.name == "matmul").unwrap();
    assert!(matmul.flops > 0 && matmul.gflops().is_some());
    assert!(kernels.iter().filter(|k| k.name != "matmul").all(|k| k.flops == 0));
    // A second profiled run times the same kernels (the first one's profile was closed).
    let (_, again) = groupseg::block_on(seg.profile_image_features(&pixels)).unwrap();
    let counts = |ks: &[groupseg::backend::KernelTime]| {
        let mut c: Vec<_> = ks.iter().map(|k| (k.name, k.dispatches)).collect();
        c.sort();
        c
    };
    assert_eq!(counts(&again), counts(&kernels));
    // On the CPU there is nothing to time, and the error says so.
    let cpu = Segmenter::load_on(&dir, &Device::Cpu, BackendChoice::Cpu).unwrap();
    let Err(err) = groupseg::block_on(cpu.profile_image_features(&pixels)) else { panic!("a CPU segmenter timed GPU kernels") };
    let err = err.to_string();
    assert!(err.contains("kernel times need the GPU backend"), "{err}");
}

#[test]
fn an_encoded_photo_relabelled_equals_a_fresh_segmentation_on_both_backends() {
    use groupseg::preprocess;
    use groupseg::{Background, BackendChoice, Segmenter};
    let dir = fixture("tiny-3stage");
    let photo = preprocess::decode(&std::fs::read(dir.join("photo_big.png")).unwrap()).unwrap();
    let opts = common::options(60, 40, 20, Background::Below(0.2));
    let first: Vec<String> = ["cat", "dog", "grass"].map(String::from).to_vec();
    let second: Vec<String> = ["sky", "water", "a red car", "tree"].map(String::from).to_vec();
    let mut segmenters = Vec::new();
    for backend in [BackendChoice::Cpu, BackendChoice::Gpu] {
        let seg = Segmenter::load_on(&dir, &Device::Cpu, backend).unwrap();
        let encoded = groupseg::block_on(seg.encode(&photo, &opts.geometry)).unwrap();
        for labels in [&first, &second, &first] {
            let again = groupseg::block_on(seg.segment_encoded(&encoded, labels, &Default::default(), &opts.labelling)).unwrap();
            let fresh = groupseg::block_on(seg.segment(&photo, labels, &Default::default(), &opts)).unwrap();
            assert_eq!(again.label_map, fresh.label_map, "{backend:?} {labels:?}");
            assert_eq!(again.scores, fresh.scores, "{backend:?} {labels:?}");
        }
        segmenters.push((seg, encoded));
    }
    // An encoding belongs to the segmenter (and device) that made it, said plainly.
    let (cpu, gpu) = (&segmenters[0], &segmenters[1]);
    let err = groupseg::block_on(cpu.0.segment_encoded(&gpu.1, &first, &Default::default(), &opts.labelling)).unwrap_err();
    assert!(err.to_string().contains("encode it with this one"), "{err}");
}

/// The shapes demo kept as int8, on both backends over ten held-out scenes: the CPU computes its
/// products in integers over quantized activations, the GPU in f32 over the widened codes, and
/// the two label the scenes alike but for a few pixels (the demo is trained, so its scores are
/// decisive, unlike the random fixture's above).
#[test]
fn the_int8_shapes_demo_labels_scenes_alike_on_both_backends() {
    use groupseg::checkpoint::convert::{convert, StoredAs};
    use groupseg::{BackendChoice, Segmenter};
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shapes-demo");
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "preprocessor_config.json"] {
        std::fs::copy(demo.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("model.safetensors"), convert(&std::fs::read(demo.join("model.safetensors")).unwrap(), StoredAs::Int8).unwrap()).unwrap();
    let gpu = Segmenter::load_on(dir.path(), &Device::Cpu, BackendChoice::Gpu).unwrap();
    let cpu = Segmenter::load_on(dir.path(), &Device::Cpu, BackendChoice::Cpu).unwrap();
    let scenes = fixture("shapes-eval");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(scenes.join("labels.json")).unwrap()).unwrap();
    let (mut same, mut total) = (0, 0);
    for i in 0..10 {
        let photo = image::open(scenes.join(format!("{i:03}.png"))).unwrap().to_rgb8();
        let labels: Vec<String> = serde_json::from_value(meta["scenes"][i]["labels"].clone()).unwrap();
        let run = |s: &Segmenter| groupseg::block_on(s.segment(&photo, &labels, &Default::default(), &s.default_options())).unwrap();
        let (g, c) = (run(&gpu), run(&cpu));
        same += g.label_map.iter().zip(&c.label_map).filter(|(a, b)| a == b).count();
        total += g.label_map.len();
    }
    let share = same as f64 / total as f64;
    eprintln!("int8 shapes demo, 10 held-out scenes: GPU and CPU label {:.3} % of pixels alike", share * 100.0);
    assert!(share >= 0.99, "GPU and CPU label {:.2} % of pixels alike", share * 100.0);
}
