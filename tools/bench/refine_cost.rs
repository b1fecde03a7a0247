//! What refinement costs beside the image encoder, at full size: a random GroupViT of the official
//! architecture (transformers' defaults, `nvidia/groupvit-gcc-yfcc`'s shape; the tiny fixture's
//! tokenizer), a 448 × 448 photo (one window) and 8 labels. Prints the encoder's median time and the
//! labelling's with refinement off and on; refinement's cost is their difference. Timings include
//! the read-back of the label map on the GPU.
//!
//! cargo run --release --example refine-cost -- [--backend cpu|gpu] [--runs 5] [--keep DIR]
//!
//! `--keep DIR` writes the checkpoint there too, for `tools/bench/refine-web.mjs` (the same in the
//! browser).

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use groupseg::model::config::GroupViTConfig;
use groupseg::model::GroupViTModel;
use groupseg::{BackendChoice, LabelOptions, Refinement, Segmenter, Templates};

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let backend = match arg("--backend").as_deref() {
        Some("gpu") => BackendChoice::Gpu,
        _ => BackendChoice::Cpu,
    };
    let runs: usize = arg("--runs").map_or(5, |r| r.parse().expect("--runs N"));

    // The official architecture with the tiny fixture's vocabulary.
    let tiny = root.join("tests/fixtures/tiny-3stage");
    let temp = tempfile::tempdir().expect("a temporary directory");
    let dir = arg("--keep").map_or_else(|| temp.path().to_owned(), PathBuf::from);
    std::fs::create_dir_all(&dir).expect("--keep DIR: a folder that can be made");
    let config = r#"{"text_config": {"vocab_size": 607, "bos_token_id": 605, "eos_token_id": 606, "pad_token_id": 606}}"#;
    std::fs::write(dir.as_path().join("config.json"), config).expect("config");
    for file in ["tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"] {
        std::fs::copy(tiny.join(file), dir.as_path().join(file)).expect("tokenizer files");
    }
    let cfg = GroupViTConfig::from_json(config).expect("config");
    let vars = VarMap::new();
    GroupViTModel::new(VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu), &cfg).expect("model");
    for (name, var) in vars.data().lock().expect("vars").iter() {
        // Layer norms at 1, everything else N(0, 0.02²), as transformers initialises.
        let value = if name.contains("norm") && name.ends_with("weight") {
            Tensor::ones(var.shape(), DType::F32, &Device::Cpu)
        } else {
            Tensor::randn(0f32, 0.02, var.shape(), &Device::Cpu)
        };
        var.set(&value.expect("random weights")).expect("set");
    }
    vars.save(dir.as_path().join("model.safetensors")).expect("save");

    let seg = Segmenter::load_on(dir.as_path(), &Device::Cpu, backend).expect("model");
    println!("backend: {}", seg.backend());
    let photo = image::RgbImage::from_fn(448, 448, |x, y| image::Rgb([(x / 2) as u8, (y / 2) as u8, ((x + y) / 4) as u8]));
    let labels: Vec<String> =
        ["cat", "dog", "sofa", "window", "floor", "wall", "plant", "lamp"].map(String::from).to_vec();
    let opts = seg.default_options();
    let encode_ms = median_ms(runs, || drop(groupseg::block_on(seg.encode(&photo, &opts.geometry)).expect("encode")));
    let encoded = groupseg::block_on(seg.encode(&photo, &opts.geometry)).expect("encode");
    let label = |refine: Option<Refinement>| {
        let o = LabelOptions { refine, ..opts.labelling };
        median_ms(runs, || drop(groupseg::block_on(seg.segment_encoded(&encoded, &labels, &Templates::default(), &o)).expect("label")))
    };
    let (off, on) = (label(None), label(Some(Refinement::TCL)));
    println!(
        "448 × 448, 8 labels, medians of {runs}: encoder {encode_ms:.1} ms; labelling {off:.1} ms unrefined, {on:.1} ms refined; \
         refinement {:.1} ms = {:.1} % of the encoder",
        on - off,
        100.0 * (on - off) / encode_ms
    );
}
