//! `groupseg`: segment or classify photos with a GroupViT checkpoint from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use candle_core::Device;
use clap::{Args, Parser, Subcommand};
use groupseg::preprocess;
use groupseg::segment::SegmentOverrides;
use groupseg::{parse_labels, render, Backend, Segmenter};

/// Exit status when some photos failed and the others were done.
const PARTIAL: u8 = 3;

#[derive(Parser)]
#[command(name = "groupseg", version, about = "Open-vocabulary segmentation with GroupViT")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Common {
    /// Checkpoint directory (config.json, model.safetensors or pytorch_model.bin, tokenizer.json),
    /// or its weights file [default: the built-in shapes demo, which knows only coloured shapes].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Comma-separated labels, e.g. "cat, sofa, window, floor".
    #[arg(long)]
    labels: String,
    /// Prompt template with {} for the label; repeat to average several.
    #[arg(long = "template")]
    templates: Vec<String>,
    /// Where the image encoder runs: auto (the GPU if usable, else the CPU), gpu or cpu.
    #[arg(long, default_value = "auto")]
    backend: String,
}

#[derive(Subcommand)]
enum Command {
    /// Paint every photo by label: writes NAME.overlay.png, NAME.mask.png and NAME.json per photo.
    Segment {
        #[arg(required = true)]
        photos: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "groupseg-out")]
        out: PathBuf,
        /// Pixels whose best label scores under this are background (0-1) [default: the model's,
        /// else the official 0.95].
        #[arg(long)]
        background_threshold: Option<f32>,
        /// Label every pixel; no background class.
        #[arg(long)]
        no_background: bool,
        /// Short side of the photo as the model sees it [default: twice the model's training size,
        /// 448 for the published checkpoints].
        #[arg(long)]
        short_side: Option<u32>,
        /// Sliding window side and stride, in pixels of the resized photo [default: twice and once
        /// the training size: 448 and 224].
        #[arg(long)]
        window: Option<usize>,
        #[arg(long)]
        stride: Option<usize>,
        /// Colour opacity of the overlay (0-1).
        #[arg(long, default_value_t = 0.5)]
        opacity: f32,
        /// Also write transformers' `segmentation_logits` (labels × height × width, .npy) for the
        /// one photo given, resized to the segmentation size, without windows or background.
        #[arg(long)]
        raw_logits: Option<PathBuf>,
    },
    /// Zero-shot classification: label probabilities per photo.
    Classify {
        #[arg(required = true)]
        photos: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
}

fn load(common: &Common) -> Result<(Segmenter, Vec<String>), String> {
    let labels = parse_labels(&common.labels).map_err(|e| e.to_string())?;
    let backend: Backend = common.backend.parse().map_err(|e: groupseg::Error| e.to_string())?;
    let seg = match &common.model {
        Some(path) => Segmenter::load_on(path, &Device::Cpu, backend).map_err(|e| format!("{}: {e}", path.display()))?,
        None => {
            eprintln!("model: the built-in shapes demo (it knows only coloured shapes; --model for another)");
            groupseg::block_on(Segmenter::from_files_on(demo::files(), &Device::Cpu, backend))
                .map_err(|e| format!("shapes demo: {e}"))?
        }
    };
    eprintln!("backend: {}", seg.backend());
    Ok((seg, labels))
}

/// The shapes demo model (`models/shapes-demo`), built into the binary so that it runs anywhere.
mod demo {
    use groupseg::{CheckpointFiles, TokenizerFiles};

    macro_rules! demo_file {
        ($name:literal) => {
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/models/shapes-demo/", $name))
        };
    }

    pub fn files() -> CheckpointFiles<'static> {
        let text = |b: &'static [u8]| std::str::from_utf8(b).unwrap_or("");
        CheckpointFiles {
            config: text(demo_file!("config.json")),
            weights: demo_file!("model.safetensors").to_vec(),
            tokenizer: TokenizerFiles::Json(demo_file!("tokenizer.json")),
            preprocessor: Some(text(demo_file!("preprocessor_config.json"))),
        }
    }
}

fn read_photo(path: &Path) -> Result<image::RgbImage, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    preprocess::decode(&bytes).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    groupseg::alloc::keep_freed_buffers();
    match run(Cli::parse()) {
        Ok(failed) if failed == 0 => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("{failed} photo(s) failed; the others were done");
            ExitCode::from(PARTIAL)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Returns how many photos failed.
fn run(cli: Cli) -> Result<usize, String> {
    match cli.command {
        Command::Segment {
            photos,
            common,
            out,
            background_threshold,
            no_background,
            short_side,
            window,
            stride,
            opacity,
            raw_logits,
        } => {
            if raw_logits.is_some() && photos.len() != 1 {
                return Err("--raw-logits takes exactly one photo".into());
            }
            let (seg, labels) = load(&common)?;
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let overrides = SegmentOverrides {
                short_side,
                window,
                stride,
                background_threshold: if no_background { Some(-1.0) } else { background_threshold },
            };
            let opts = seg.default_options().with(&overrides).map_err(|e| e.to_string())?;
            let embeddings = seg.label_embeddings(&labels, &common.templates).map_err(|e| e.to_string())?;
            let mut failed = 0;
            let mut used_names = std::collections::HashSet::new();
            for path in &photos {
                let started = std::time::Instant::now();
                // Photos from different folders may share a name: number the later ones.
                let base = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "photo".into());
                let stem = (1..)
                    .map(|i| if i == 1 { base.clone() } else { format!("{base}-{i}") })
                    .find(|name| used_names.insert(name.clone()))
                    .unwrap_or(base);
                let result = read_photo(path).and_then(|photo| {
                    if let Some(npy) = &raw_logits {
                        let logits = groupseg::block_on(seg.raw_logits(&photo, &embeddings, &opts)).map_err(|e| e.to_string())?;
                        logits.write_npy(npy).map_err(|e| format!("{}: {e}", npy.display()))?;
                    }
                    let s = groupseg::block_on(seg.segment_with_embeddings(&photo, &labels, &embeddings, &opts)).map_err(|e| e.to_string())?;
                    let overlay = out.join(format!("{stem}.overlay.png"));
                    render::overlay(&photo, &s, opacity).save(&overlay).map_err(|e| format!("{}: {e}", overlay.display()))?;
                    let mask = out.join(format!("{stem}.mask.png"));
                    render::mask(&s).save(&mask).map_err(|e| format!("{}: {e}", mask.display()))?;
                    let summary = serde_json::json!({
                        "photo": path.display().to_string(),
                        "width": s.width,
                        "height": s.height,
                        "classes": s.summary,
                        "overlay": overlay.display().to_string(),
                        "mask": mask.display().to_string(),
                    });
                    let json = out.join(format!("{stem}.json"));
                    std::fs::write(&json, serde_json::to_string_pretty(&summary).unwrap_or_default())
                        .map_err(|e| format!("{}: {e}", json.display()))?;
                    Ok(s)
                });
                match result {
                    Ok(s) => {
                        let parts: Vec<String> = s
                            .summary
                            .iter()
                            .filter(|c| c.share > 0.0)
                            .map(|c| format!("{} {:.1}%", c.label, c.share * 100.0))
                            .collect();
                        println!("{}: {} ({} ms)", path.display(), parts.join(", "), started.elapsed().as_millis());
                    }
                    Err(e) => {
                        eprintln!("{}: {e}", path.display());
                        failed += 1;
                    }
                }
            }
            Ok(failed)
        }
        Command::Classify { photos, common } => {
            let (seg, labels) = load(&common)?;
            let mut failed = 0;
            for path in &photos {
                match read_photo(path).and_then(|p| groupseg::block_on(seg.classify(&p, &labels, &common.templates)).map_err(|e| e.to_string())) {
                    Ok(probs) => {
                        let mut ranked: Vec<(&String, f32)> = labels.iter().zip(probs).collect();
                        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
                        println!("{}", path.display());
                        for (label, p) in ranked {
                            println!("  {p:.4}  {label}");
                        }
                    }
                    Err(e) => {
                        eprintln!("{}: {e}", path.display());
                        failed += 1;
                    }
                }
            }
            Ok(failed)
        }
    }
}
