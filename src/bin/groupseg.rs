//! `groupseg`: segment or classify photos with a GroupViT checkpoint from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use candle_core::Device;
use clap::{Args, Parser, Subcommand};
use groupseg::preprocess;
use groupseg::segment::MIN_SHORT_SIDE;
use groupseg::{parse_labels, render, Background, BackendChoice, SegmentOptions, SegmentOverrides, Segmenter};

/// Exit status when an option or argument cannot work (as clap's own usage errors).
const USAGE: u8 = 2;
/// Exit status when some photos failed and the others were done.
const PARTIAL: u8 = 3;

#[derive(Parser)]
#[command(name = "groupseg", version, about = "Open-vocabulary segmentation with GroupViT")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ModelArgs {
    /// Checkpoint directory (config.json, model.safetensors or pytorch_model.bin, tokenizer.json),
    /// or its weights file [default: the built-in shapes demo, which knows only coloured shapes].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where the image encoder runs: auto (the GPU if usable, else the CPU), gpu or cpu.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
}

#[derive(Args)]
struct Common {
    #[command(flatten)]
    model: ModelArgs,
    /// Comma-separated labels, e.g. "cat, sofa, window, floor".
    #[arg(long)]
    labels: String,
    /// Prompt template with {} for the label; repeat to average several.
    #[arg(long = "template")]
    templates: Vec<String>,
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
        #[arg(long, value_parser = unit_interval, allow_negative_numbers = true)]
        background_threshold: Option<f32>,
        /// Label every pixel; no background class.
        #[arg(long)]
        no_background: bool,
        /// Short side of the photo as the model sees it [default: twice the model's training size,
        /// 448 for the published checkpoints].
        #[arg(long, allow_negative_numbers = true,
              value_parser = clap::value_parser!(u32).range(MIN_SHORT_SIDE as i64..=MAX_SHORT_SIDE as i64))]
        short_side: Option<u32>,
        /// Sliding window side and stride, in pixels of the resized photo [default: twice and once
        /// the training size: 448 and 224].
        #[arg(long, allow_negative_numbers = true)]
        window: Option<usize>,
        #[arg(long, allow_negative_numbers = true)]
        stride: Option<usize>,
        /// Colour opacity of the overlay (0-1).
        #[arg(long, default_value_t = 0.5, value_parser = unit_interval, allow_negative_numbers = true)]
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
    /// The model's shape, where it runs, and the weight bytes it keeps in memory and on the GPU.
    Info {
        #[command(flatten)]
        model: ModelArgs,
    },
}

fn load(common: &Common) -> Result<(Segmenter, Vec<String>), Failure> {
    let labels = parse_labels(&common.labels).map_err(|e| Usage(format!("--labels: {e}")))?;
    if let Some(t) = common.templates.iter().find(|t| !t.contains("{}")) {
        return Err(Usage(format!("--template {t:?} has no {{}} where the label goes")));
    }
    let seg = load_model(&common.model)?;
    eprintln!("backend: {}", seg.backend());
    Ok((seg, labels))
}

fn load_model(args: &ModelArgs) -> Result<Segmenter, String> {
    let backend = args.backend;
    let seg = match &args.model {
        Some(path) => Segmenter::load_on(path, &Device::Cpu, backend).map_err(|e| format!("{}: {e}", path.display()))?,
        None => {
            eprintln!("model: the built-in shapes demo (it knows only coloured shapes; --model for another)");
            groupseg::block_on(Segmenter::from_files_on(demo::files(), &Device::Cpu, backend))
                .map_err(|e| format!("shapes demo: {e}"))?
        }
    };
    Ok(seg)
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

/// A number between 0 and 1 (NaN is not).
fn unit_interval(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{text:?} is not a number between 0 and 1")),
    }
}

/// The largest `--short-side`: the official evaluation caps the long side at 2048 anyway.
const MAX_SHORT_SIDE: u32 = 2048;

/// Reads a photo: a regular file (not a pipe or a device, which may never end) of at most
/// `MAX_PHOTO_BYTES`, decoded within the pixel budget.
fn read_photo(path: &Path) -> Result<image::RgbImage, String> {
    use std::io::Read;
    // Looked at before opening: opening a named pipe waits for a writer.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    if meta.len() > preprocess::MAX_PHOTO_BYTES {
        return Err(format!("the file is {} MB; photos of at most {} MB are read", meta.len() >> 20, preprocess::MAX_PHOTO_BYTES >> 20));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Bounded even if the file grows while it is read.
    file.take(preprocess::MAX_PHOTO_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > preprocess::MAX_PHOTO_BYTES {
        return Err(format!("the file grew past {} MB while it was read", preprocess::MAX_PHOTO_BYTES >> 20));
    }
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
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE)
        }
        Err(Failure::Run(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why nothing could run: a bad option or argument (exit status 2, found before any work), or
/// anything else (1).
enum Failure {
    Usage(String),
    Run(String),
}
use Failure::Usage;

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Run(e)
    }
}

/// `--out` must be a folder, or a path one can be made at.
fn check_out_dir(out: &Path) -> Result<(), Failure> {
    let existing = out.ancestors().find(|a| a.as_os_str().is_empty() || a.exists()).unwrap_or(Path::new("."));
    if existing.as_os_str().is_empty() || existing.is_dir() {
        Ok(())
    } else {
        Err(Usage(format!("--out {}: {} is not a folder", out.display(), existing.display())))
    }
}

/// Returns how many photos failed.
fn run(cli: Cli) -> Result<usize, Failure> {
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
                return Err(Usage("--raw-logits takes exactly one photo".into()));
            }
            let overrides = SegmentOverrides {
                short_side,
                window_side: window,
                stride,
                background: if no_background { Some(Background::Never) } else { background_threshold.map(Background::Below) },
            };
            // What can be checked before the model loads is checked now.
            SegmentOptions::default().with(&overrides).map_err(|e| Usage(e.to_string()))?;
            if let Some(npy) = &raw_logits {
                let dir = npy.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                if npy.is_dir() || !dir.is_dir() {
                    return Err(Usage(format!("--raw-logits {}: not a file in an existing folder", npy.display())));
                }
            }
            check_out_dir(&out)?;
            let (seg, labels) = load(&common)?;
            std::fs::create_dir_all(&out).map_err(|e| format!("--out {}: {e}", out.display()))?;
            let opts = seg.default_options().with(&overrides).map_err(|e| Usage(e.to_string()))?;
            seg.check_options(&opts).map_err(|e| Usage(e.to_string()))?;
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
                        let logits = groupseg::block_on(seg.raw_logits(&photo, &embeddings, &opts.geometry)).map_err(|e| e.to_string())?;
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
        Command::Info { model } => {
            let seg = load_model(&model)?;
            let (v, t) = (&seg.config().vision_config, &seg.config().text_config);
            println!(
                "vision: {}×{} input, {}-pixel patches, width {}, depths {:?}, group tokens {:?}",
                v.image_size, v.image_size, v.patch_size, v.hidden_size, v.depths, v.num_group_tokens
            );
            println!("text: width {}, {} layers, context {}", t.hidden_size, t.num_hidden_layers, t.max_position_embeddings);
            println!("backend: {}", seg.backend());
            let w = seg.resident_weights();
            println!("weights kept: {:.1} MB in CPU memory, {:.1} MB on the GPU", w.cpu as f64 / 1e6, w.gpu as f64 / 1e6);
            Ok(0)
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
