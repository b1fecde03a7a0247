//! `groupseg`: segment or classify photos with a GroupViT checkpoint from the command line.

mod batch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use candle_core::Device;
use clap::{Args, Parser, Subcommand};
use groupseg::preprocess;
use groupseg::segment::MIN_SHORT_SIDE;
use groupseg::detect::{self, DetectOptions};
use groupseg::checkpoint::convert::StoredAs;
use groupseg::phrases;
use groupseg::render::{self, LabelledBox};

use batch::{each_photo, Photo, PhotoArgs, Tally};
use groupseg::coco;
use groupseg::{ground, parse_labels, rank, Background, BackendChoice, SegmentOptions, SegmentOverrides, Segmenter, Templates};

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
struct Prompting {
    /// Prompt template with {} for the label; repeat to average several.
    #[arg(long = "template", conflicts_with = "templates")]
    template: Vec<String>,
    /// A template preset instead: single ("a photo of a {}."), nvlabs (NVlabs' 7), imagenet (CLIP's
    /// 80). A label that is already a sentence ("a cat on a sofa") is used as it stands.
    #[arg(long)]
    templates: Option<Templates>,
}

impl Prompting {
    fn templates(&self) -> Result<Templates, Failure> {
        match &self.templates {
            Some(preset) => Ok(preset.clone()),
            None => Templates::custom(self.template.clone()).map_err(|e| Usage(format!("--template: {e}"))),
        }
    }
}

/// Where a photo's windows lie.
#[derive(Args)]
struct LayoutArgs {
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
}

/// How groups become labels.
#[derive(Args)]
struct LabellingArgs {
    /// Pixels whose best label scores under this are background (0-1) [default: the model's,
    /// else the official 0.95].
    #[arg(long, value_parser = unit_interval, allow_negative_numbers = true)]
    background_threshold: Option<f32>,
    /// Label every pixel; no background class.
    #[arg(long)]
    no_background: bool,
    /// Refine the labels' scores over the photo's colours (PAMR), so masks follow its edges
    /// [default: the model's, else on].
    #[arg(long, value_enum)]
    refine: Option<Switch>,
    /// Refinement passes (1-50) [default: 10].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=groupseg::refine::MAX_ITERATIONS as i64))]
    refine_iterations: Option<u32>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

/// How a photo is segmented: prompts, windows and labelling (segment, detect and ground share them).
#[derive(Args)]
struct SegmentArgs {
    #[command(flatten)]
    prompting: Prompting,
    #[command(flatten)]
    layout: LayoutArgs,
    #[command(flatten)]
    labelling: LabellingArgs,
}

impl SegmentArgs {
    fn overrides(&self) -> SegmentOverrides {
        overrides(&self.layout, &self.labelling)
    }
}

fn overrides(layout: &LayoutArgs, labelling: &LabellingArgs) -> SegmentOverrides {
    SegmentOverrides {
        short_side: layout.short_side,
        window_side: layout.window,
        stride: layout.stride,
        background: if labelling.no_background {
            Some(Background::Never)
        } else {
            labelling.background_threshold.map(Background::Below)
        },
        refine: labelling.refine.map(|s| matches!(s, Switch::On)),
        refine_iterations: labelling.refine_iterations,
        ..Default::default()
    }
}

/// Which regions become detections.
#[derive(Args)]
struct DetectArgs {
    /// Regions scoring under this (0-1) are dropped.
    #[arg(long, default_value_t = 0.1, value_parser = unit_interval, allow_negative_numbers = true)]
    threshold: f32,
    /// Regions smaller than this share of the photo (0-1) are dropped.
    #[arg(long, default_value_t = 0.001, value_parser = unit_interval, allow_negative_numbers = true)]
    min_area: f32,
}

#[derive(Subcommand)]
enum Command {
    /// Paint every photo by label: writes NAME.overlay.png, NAME.mask.png and NAME.json per photo.
    Segment {
        #[command(flatten)]
        photos: PhotoArgs,
        #[command(flatten)]
        model: ModelArgs,
        /// Comma-separated labels, e.g. "cat, sofa, window, floor".
        #[arg(long)]
        labels: String,
        #[command(flatten)]
        segmenting: SegmentArgs,
        #[arg(long, default_value = "groupseg-out")]
        out: PathBuf,
        /// Colour opacity of the overlay (0-1).
        #[arg(long, default_value_t = 0.5, value_parser = unit_interval, allow_negative_numbers = true)]
        opacity: f32,
        /// Write each region's label on it in the overlay (NVlabs' input_pred_label).
        #[arg(long)]
        names: bool,
        /// Also write transformers' `segmentation_logits` (labels × height × width, .npy) for the
        /// one photo given, resized to the segmentation size, without windows or background.
        #[arg(long)]
        raw_logits: Option<PathBuf>,
        #[command(flatten)]
        coco: CocoArgs,
        #[command(flatten)]
        resume: ResumeArg,
    },
    /// Boxes for the labels' objects: writes NAME.detections.json ([{label, score, box}], boxes in
    /// photo pixels) and NAME.detections.png per photo.
    Detect {
        #[command(flatten)]
        photos: PhotoArgs,
        #[command(flatten)]
        model: ModelArgs,
        /// Comma-separated labels, e.g. "cat, sofa, window, floor".
        #[arg(long)]
        labels: String,
        #[command(flatten)]
        segmenting: SegmentArgs,
        #[command(flatten)]
        detect: DetectArgs,
        /// At most this many detections per photo, best first.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        top_k: Option<u32>,
        /// A box overlapping a better one (of any label) by more than this IoU is dropped (0-1).
        #[arg(long, default_value_t = 0.5, value_parser = unit_interval, allow_negative_numbers = true)]
        nms_iou: f32,
        #[arg(long, default_value = "groupseg-out")]
        out: PathBuf,
        #[command(flatten)]
        coco: CocoArgs,
        #[command(flatten)]
        resume: ResumeArg,
    },
    /// Where each phrase of a caption is: writes NAME.grounding.json ([{phrase, start, end, score,
    /// box}], offsets in characters, box null where a phrase is found nowhere) and NAME.grounding.png.
    Ground {
        #[command(flatten)]
        photos: PhotoArgs,
        #[command(flatten)]
        model: ModelArgs,
        /// A sentence ("a man riding a brown horse next to a red car") or GLIP's prompt style
        /// ("horse. red car.").
        #[arg(long)]
        caption: String,
        #[command(flatten)]
        segmenting: SegmentArgs,
        #[command(flatten)]
        detect: DetectArgs,
        #[arg(long, default_value = "groupseg-out")]
        out: PathBuf,
        #[command(flatten)]
        resume: ResumeArg,
    },
    /// Zero-shot classification: label probabilities per photo.
    Classify {
        #[command(flatten)]
        photos: PhotoArgs,
        #[command(flatten)]
        model: ModelArgs,
        /// Comma-separated labels, e.g. "cat, sofa, window, floor".
        #[arg(long)]
        labels: String,
        #[command(flatten)]
        prompting: Prompting,
        /// Only the best this many labels.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        top_k: Option<u32>,
        /// One JSON document on stdout: [{photo, labels: [{label, score}]}] ({photo, error} for a
        /// photo that failed).
        #[arg(long)]
        json: bool,
    },
    /// GroupViT's own groups, no labels needed: writes NAME.groups-1.png, NAME.groups-2.png, … (one
    /// per grouping block, NVlabs' first_group … final_group) per photo.
    Groups {
        #[command(flatten)]
        photos: PhotoArgs,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        layout: LayoutArgs,
        #[arg(long, default_value = "groupseg-out")]
        out: PathBuf,
        #[command(flatten)]
        resume: ResumeArg,
    },
    /// Write a smaller copy of a checkpoint: every tensor in f16 (half the bytes), or the weight
    /// matrices in int8 with a scale per row (about a quarter); groupseg reads both in f32.
    Convert {
        /// Checkpoint directory (config.json, model.safetensors or pytorch_model.bin, tokenizer files).
        #[arg(long)]
        model: PathBuf,
        /// f16 or int8.
        #[arg(long)]
        to: StoredAs,
        /// Directory to write the converted checkpoint to (with the config and tokenizer copied).
        #[arg(long)]
        out: PathBuf,
    },
    /// The model's shape, where it runs, and the weight bytes it keeps in memory and on the GPU.
    Info {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// COCO files written by `segment --coco` or `detect --coco`.
    #[command(subcommand)]
    Coco(CocoCommand),
}

#[derive(Subcommand)]
enum CocoCommand {
    /// Join COCO files of one label list (the shards of a collection) into one, photos and
    /// annotations renumbered in the files' order.
    Merge {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

/// COCO output for dataset tools (CVAT, Label Studio, FiftyOne) and COCO's evaluation.
#[derive(Args)]
struct CocoArgs {
    /// Also write one COCO file for the run: the photos, the labels as categories, and the
    /// annotations with masks as COCO run-length encoding (segment: one per label a photo shows;
    /// detect: one per box, with its region's mask) and their scores. NAME.coco.json per photo
    /// keeps each photo's part.
    #[arg(long)]
    coco: Option<PathBuf>,
    /// Also write the annotations in COCO's results format (a list, as COCOeval reads).
    #[arg(long)]
    coco_results: Option<PathBuf>,
}

impl CocoArgs {
    fn wanted(&self) -> bool {
        self.coco.is_some() || self.coco_results.is_some()
    }

    fn check(&self) -> Result<(), Failure> {
        for (flag, file) in [("--coco", &self.coco), ("--coco-results", &self.coco_results)] {
            if let Some(file) = file {
                let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                if file.is_dir() || !dir.is_dir() {
                    return Err(Usage(format!("{flag} {}: not a file in an existing folder", file.display())));
                }
            }
        }
        Ok(())
    }

    /// Where a photo's part of the COCO file is kept.
    fn part(&self, out: &Path, photo: &Photo) -> Option<PathBuf> {
        self.wanted().then(|| out.join(format!("{}.coco.json", photo.stem)))
    }

    /// Writes a photo's part, filled by `add` (after its other outputs: with it, the photo is done).
    fn save_part(
        &self,
        out: &Path,
        photo: &Photo,
        labels: &[String],
        add: impl FnOnce(&mut coco::Dataset) -> groupseg::Result<()>,
    ) -> Result<(), String> {
        let Some(file) = self.part(out, photo) else { return Ok(()) };
        let mut part = coco::Dataset::new(labels);
        add(&mut part).map_err(|e| e.to_string())?;
        save_json(&part, &file)
    }

    /// The run's COCO files from its photos' parts (those done now or by an earlier run).
    fn finish(&self, out: &Path, photos: &[Photo], labels: &[String]) -> Result<(), String> {
        if !self.wanted() {
            return Ok(());
        }
        let mut all = coco::Dataset::new(labels);
        for photo in photos {
            let Some(file) = self.part(out, photo).filter(|f| f.is_file()) else { continue };
            let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let part: coco::Dataset = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            all.append(part, coco::PhotoIds::Keep).map_err(|e| format!("{}: {e}", file.display()))?;
        }
        if let Some(file) = &self.coco {
            save_json(&all, file)?;
            eprintln!("COCO: {} ({} photos, {} annotations)", file.display(), all.images.len(), all.annotations.len());
        }
        if let Some(file) = &self.coco_results {
            save_json(&all.results(), file)?;
        }
        Ok(())
    }
}

/// Resuming an interrupted run.
#[derive(Args)]
struct ResumeArg {
    /// Skip the photos whose outputs in --out are complete (an earlier run of the same settings
    /// did them).
    #[arg(long)]
    resume: bool,
}

/// The model, loaded after the options were checked.
fn load(model: &ModelArgs) -> Result<Segmenter, Failure> {
    let seg = load_model(model)?;
    eprintln!("backend: {}", seg.backend());
    Ok(seg)
}

fn labels_arg(text: &str) -> Result<Vec<String>, Failure> {
    parse_labels(text).map_err(|e| Usage(format!("--labels: {e}")))
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
            weights: Box::new(&demo_file!("model.safetensors")[..]),
            tokenizer: TokenizerFiles::Json(demo_file!("tokenizer.json")[..].into()),
            preprocessor: Some(text(demo_file!("preprocessor_config.json"))),
            weight_ranges: None,
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
    // The caller names the photo: an unreadable one says only why.
    let bytes = groupseg::files::read_bounded(path, preprocess::MAX_PHOTO_BYTES, "photos").map_err(|e| match e {
        groupseg::Error::Io { source, .. } => source.to_string(),
        e => e.to_string(),
    })?;
    preprocess::decode(&bytes).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    groupseg::alloc::keep_freed_buffers();
    match run(Cli::parse()) {
        Ok(tally) => {
            let total = tally.total();
            if tally.failed > 0 && tally.failed == total {
                eprintln!("{}", if total == 1 { "the photo failed".to_owned() } else { format!("all {total} photos failed") });
            } else if total > 1 || tally.skipped > 0 || tally.failed > 0 {
                eprintln!("{total} photos: {} done, {} skipped (done before), {} failed", tally.done, tally.skipped, tally.failed);
            }
            if tally.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(PARTIAL)
            }
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

fn save_png(img: &image::RgbImage, path: &Path) -> Result<(), String> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png).map_err(|e| format!("{}: {e}", path.display()))?;
    batch::write_whole(path, bytes.get_ref())
}

fn save_json(value: &impl serde::Serialize, path: &Path) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    batch::write_whole(path, text.as_bytes())
}

/// The photos of a run, and how many folder entries could not be read (what walking the folders
/// left out is said now).
fn list_photos(args: &PhotoArgs) -> Result<(Vec<Photo>, usize), Failure> {
    let (photos, listing) = batch::list(args);
    let unreadable = listing.report();
    if photos.is_empty() && !args.sharded() {
        return Err(Usage("no photo to segment in what was given".into()));
    }
    Ok((photos, unreadable))
}

/// A photo's outputs in `out`: its stem with each of `suffixes`.
fn named(out: &Path, photo: &Photo, suffixes: &[&str]) -> Vec<PathBuf> {
    suffixes.iter().map(|e| out.join(format!("{}.{e}", photo.stem))).collect()
}

/// The largest COCO file `coco merge` reads (a collection's masks; JSON text).
const MAX_COCO_BYTES: u64 = 4 << 30;

/// A COCO image entry for a photo.
fn coco_image(photo: &Photo, s: &groupseg::Segmentation) -> coco::Image {
    coco::Image { id: photo.id, file_name: photo.path.display().to_string(), width: s.width, height: s.height }
}

/// Checks the segmentation options before the model loads, the output folder, then loads the model
/// and gives its options with `overrides` over them, checked against it.
fn prepare(model: &ModelArgs, overrides: &SegmentOverrides, out: &Path) -> Result<(Segmenter, SegmentOptions), Failure> {
    SegmentOptions::default().with(overrides).map_err(|e| Usage(e.to_string()))?;
    check_out_dir(out)?;
    let seg = load(model)?;
    std::fs::create_dir_all(out).map_err(|e| format!("--out {}: {e}", out.display()))?;
    let opts = seg.default_options().with(overrides).map_err(|e| Usage(e.to_string()))?;
    seg.check_options(&opts).map_err(|e| Usage(e.to_string()))?;
    Ok((seg, opts))
}

/// [`prepare`] for `segmenting`, and the labels' embeddings, computed once for every photo.
fn prepare_labels(
    model: &ModelArgs,
    labels: &[String],
    segmenting: &SegmentArgs,
    out: &Path,
) -> Result<(Segmenter, SegmentOptions, candle_core::Tensor), Failure> {
    let templates = segmenting.prompting.templates()?;
    let (seg, opts) = prepare(model, &segmenting.overrides(), out)?;
    let embeddings = groupseg::block_on(seg.label_embeddings(labels, &templates)).map_err(|e| e.to_string())?;
    Ok((seg, opts, embeddings))
}

/// How the run went (photos done, skipped and failed).
fn run(cli: Cli) -> Result<Tally, Failure> {
    match cli.command {
        Command::Segment { photos, model, labels, segmenting, out, opacity, names, raw_logits, coco, resume } => {
            let (photos, unreadable) = list_photos(&photos)?;
            if raw_logits.is_some() && photos.len() != 1 {
                return Err(Usage("--raw-logits takes exactly one photo".into()));
            }
            if let Some(npy) = &raw_logits {
                let dir = npy.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                if npy.is_dir() || !dir.is_dir() {
                    return Err(Usage(format!("--raw-logits {}: not a file in an existing folder", npy.display())));
                }
            }
            coco.check()?;
            let labels = labels_arg(&labels)?;
            let (seg, opts, embeddings) = prepare_labels(&model, &labels, &segmenting, &out)?;
            let settings = format!("segment\n{:?}\n{labels:?}\n{:?}\n{opts:?}\n{opacity} {names}", model.model, segmenting.prompting.templates()?);
            batch::check_resumable(&out, &settings, resume.resume)?;
            let outputs = |p: &Photo| [named(&out, p, &["overlay.png", "mask.png", "json"]), coco.part(&out, p).into_iter().collect()].concat();
            let mut tally = each_photo(&photos, resume.resume, outputs, |photo, image| {
                if let Some(npy) = &raw_logits {
                    let logits = groupseg::block_on(seg.raw_logits(&image, &embeddings, &opts.geometry)).map_err(|e| e.to_string())?;
                    logits.write_npy(npy).map_err(|e| format!("{}: {e}", npy.display()))?;
                }
                let s = groupseg::block_on(seg.segment_with_embeddings(&image, &labels, &embeddings, &opts)).map_err(|e| e.to_string())?;
                let stem = &photo.stem;
                let overlay = out.join(format!("{stem}.overlay.png"));
                let mut painted = render::overlay(&image, &s, opacity);
                if names {
                    let regions = detect::detect(&s, &DetectOptions { nms_iou: 1.0, ..Default::default() });
                    render::write_names(&mut painted, image.width(), &regions);
                }
                save_png(&painted, &overlay)?;
                let mask = out.join(format!("{stem}.mask.png"));
                save_png(&render::mask(&s), &mask)?;
                let summary = serde_json::json!({
                    "photo": photo.path.display().to_string(),
                    "width": s.width,
                    "height": s.height,
                    "classes": s.summary,
                    "overlay": overlay.display().to_string(),
                    "mask": mask.display().to_string(),
                });
                save_json(&summary, &out.join(format!("{stem}.json")))?;
                coco.save_part(&out, photo, &labels, |part| part.add_segmentation(coco_image(photo, &s), &s))?;
                let parts: Vec<String> =
                    s.summary.iter().filter(|c| c.share > 0.0).map(|c| format!("{} {:.1}%", c.label, c.share * 100.0)).collect();
                Ok(parts.join(", "))
            });
            tally.failed += unreadable;
            coco.finish(&out, &photos, &labels)?;
            Ok(tally)
        }
        Command::Detect { photos, model, labels, segmenting, detect, top_k, nms_iou, out, coco, resume } => {
            let (photos, unreadable) = list_photos(&photos)?;
            coco.check()?;
            let labels = labels_arg(&labels)?;
            let detect_opts = DetectOptions {
                threshold: detect.threshold,
                top_k: top_k.map(|k| k as usize),
                min_area: detect.min_area,
                nms_iou,
                ..Default::default()
            };
            let (seg, opts, embeddings) = prepare_labels(&model, &labels, &segmenting, &out)?;
            let settings = format!("detect\n{:?}\n{labels:?}\n{:?}\n{opts:?}\n{detect_opts:?}", model.model, segmenting.prompting.templates()?);
            batch::check_resumable(&out, &settings, resume.resume)?;
            let outputs = |p: &Photo| [named(&out, p, &["detections.png", "detections.json"]), coco.part(&out, p).into_iter().collect()].concat();
            let mut tally = each_photo(&photos, resume.resume, outputs, |photo, image| {
                let s = groupseg::block_on(seg.segment_with_embeddings(&image, &labels, &embeddings, &opts)).map_err(|e| e.to_string())?;
                let (found, regions) = detect::detect_with_masks(&s, &detect_opts);
                let drawn: Vec<LabelledBox> = found
                    .iter()
                    .map(|d| LabelledBox { bounds: d.bounds, text: format!("{} {:.2}", d.label, d.score), class: d.class })
                    .collect();
                save_png(&render::boxes(&image, &drawn), &out.join(format!("{}.detections.png", photo.stem)))?;
                save_json(&found, &out.join(format!("{}.detections.json", photo.stem)))?;
                coco.save_part(&out, photo, &labels, |part| part.add_detections(coco_image(photo, &s), &s, &found, &regions))?;
                let parts: Vec<String> = found.iter().map(|d| format!("{} {:.2}", d.label, d.score)).collect();
                Ok(format!("{} found: {}", found.len(), parts.join(", ")))
            });
            tally.failed += unreadable;
            coco.finish(&out, &photos, &labels)?;
            Ok(tally)
        }
        Command::Ground { photos, model, caption, segmenting, detect, out, resume } => {
            let (photos, unreadable) = list_photos(&photos)?;
            phrases::check_caption(&caption).map_err(|e| Usage(format!("--caption: {e}")))?;
            let found = phrases::chunk(&caption);
            if found.is_empty() {
                return Err(Usage(format!("--caption {caption:?}: no phrase to ground in it; name something, e.g. \"a dog on a sofa\"")));
            }
            let labels = groupseg::pipeline::label_list(ground::labels(&found).iter().map(String::as_str))
                .map_err(|e| Usage(format!("--caption: {e}")))?;
            let detect_opts = DetectOptions { threshold: detect.threshold, min_area: detect.min_area, ..Default::default() };
            let (seg, mut opts, embeddings) = prepare_labels(&model, &labels, &segmenting, &out)?;
            // Phrases compete with the empty prompt: a caption of one phrase would else take the whole photo.
            opts.labelling.nothing_prompt = true;
            let settings = format!("ground\n{:?}\n{caption:?}\n{:?}\n{opts:?}\n{detect_opts:?}", model.model, segmenting.prompting.templates()?);
            batch::check_resumable(&out, &settings, resume.resume)?;
            let outputs = |p: &Photo| named(&out, p, &["grounding.png", "grounding.json"]);
            let mut tally = each_photo(&photos, resume.resume, outputs, |photo, image| {
                let s = groupseg::block_on(seg.segment_with_embeddings(&image, &labels, &embeddings, &opts)).map_err(|e| e.to_string())?;
                let grounded: Vec<_> =
                    ground::ground(&found, &s, &detect_opts).iter().map(|g| g.with_offsets(&caption, phrases::char_offset)).collect();
                let drawn: Vec<LabelledBox> = grounded
                    .iter()
                    .filter_map(|g| g.bounds.map(|b| LabelledBox { bounds: b, text: format!("{} {:.2}", g.phrase, g.score), class: g.class }))
                    .collect();
                save_png(&render::boxes(&image, &drawn), &out.join(format!("{}.grounding.png", photo.stem)))?;
                save_json(&grounded, &out.join(format!("{}.grounding.json", photo.stem)))?;
                let parts: Vec<String> = grounded
                    .iter()
                    .map(|g| match g.bounds {
                        Some(_) => format!("\"{}\" {:.2}", g.phrase, g.score),
                        None => format!("\"{}\" not found", g.phrase),
                    })
                    .collect();
                Ok(parts.join(", "))
            });
            tally.failed += unreadable;
            Ok(tally)
        }
        Command::Classify { photos, model, labels, prompting, top_k, json } => {
            let (photos, unreadable) = list_photos(&photos)?;
            let labels = labels_arg(&labels)?;
            let templates = prompting.templates()?;
            let seg = load(&model)?;
            let mut tally = Tally::none();
            tally.failed += unreadable;
            let mut results = Vec::new();
            let progress = batch::Progress::new(photos.len());
            for photo in &photos {
                let path = &photo.path;
                let probs = read_photo(path).and_then(|p| groupseg::block_on(seg.classify(&p, &labels, &templates)).map_err(|e| e.to_string()));
                match probs {
                    Ok(probs) => {
                        let ranked = rank(&labels, &probs, top_k.map(|k| k as usize));
                        if json {
                            results.push(serde_json::json!({"photo": path.display().to_string(), "labels": ranked}));
                        } else {
                            let lines: Vec<String> = ranked.iter().map(|r| format!("  {:.4}  {}", r.score, r.label)).collect();
                            progress.line(&format!("{}\n{}", path.display(), lines.join("\n")));
                        }
                        tally.done += 1;
                    }
                    Err(e) => {
                        progress.error(&format!("{}: {e}", path.display()));
                        results.push(serde_json::json!({"photo": path.display().to_string(), "error": e}));
                        tally.failed += 1;
                    }
                }
                progress.step();
            }
            progress.finish();
            if json {
                println!("{}", serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?);
            }
            Ok(tally)
        }
        Command::Groups { photos, model, layout, out, resume } => {
            let (photos, unreadable) = list_photos(&photos)?;
            let overrides = overrides(&layout, &LabellingArgs { background_threshold: None, no_background: false, refine: None, refine_iterations: None });
            let (seg, opts) = prepare(&model, &overrides, &out)?;
            let stages = seg.config().vision_config.depths.len();
            batch::check_resumable(&out, &format!("groups\n{:?}\n{opts:?}", model.model), resume.resume)?;
            let outputs = |p: &Photo| (1..=stages).map(|k| out.join(format!("{}.groups-{k}.png", p.stem))).collect();
            let mut tally = each_photo(&photos, resume.resume, outputs, |photo, image| {
                let encoded = groupseg::block_on(seg.encode(&image, &opts.geometry)).map_err(|e| e.to_string())?;
                let groups = groupseg::block_on(seg.groups(&encoded)).map_err(|e| e.to_string())?;
                let mut parts = Vec::new();
                for (k, stage) in groups.stages.iter().enumerate() {
                    save_png(&render::groups(&image, stage), &out.join(format!("{}.groups-{}.png", photo.stem, k + 1)))?;
                    parts.push(format!("stage {}: {} groups", k + 1, stage.distinct()));
                }
                Ok(parts.join(", "))
            });
            tally.failed += unreadable;
            Ok(tally)
        }
        Command::Coco(CocoCommand::Merge { files, out }) => {
            let mut parts = Vec::new();
            for file in &files {
                let bytes = groupseg::files::read_bounded(file, MAX_COCO_BYTES, "COCO files").map_err(|e| format!("{}: {e}", file.display()))?;
                let part: coco::Dataset = serde_json::from_slice(&bytes).map_err(|e| format!("{}: not a COCO file groupseg wrote: {e}", file.display()))?;
                parts.push(part);
            }
            let all = coco::merge(parts).map_err(|(k, e)| format!("{}: {e}", files[k].display()))?;
            save_json(&all, &out)?;
            println!("{} ({} photos, {} annotations from {} files)", out.display(), all.images.len(), all.annotations.len(), files.len());
            Ok(Tally::none())
        }
        Command::Convert { model, to, out } => {
            // Found by name whatever they are: a pipe or a device there is refused by name as it is read.
            let weights = ["model.safetensors", "pytorch_model.bin"].iter().map(|n| model.join(n)).find(|p| p.exists());
            let weights = weights.ok_or_else(|| Usage(format!("--model {}: no model.safetensors or pytorch_model.bin in it", model.display())))?;
            if out.canonicalize().ok().is_some_and(|o| model.canonicalize().ok() == Some(o)) {
                return Err(Usage("--out must differ from --model: the original stays as it is".into()));
            }
            check_out_dir(&out)?;
            let bytes = groupseg::files::read_bounded(&weights, groupseg::pipeline::MAX_WEIGHTS_BYTES, "weights files")
                .map_err(|e| format!("{}: {e}", weights.display()))?;
            let converted = groupseg::checkpoint::convert::convert(&bytes, to).map_err(|e| format!("{}: {e}", weights.display()))?;
            std::fs::create_dir_all(&out).map_err(|e| format!("--out {}: {e}", out.display()))?;
            let written = out.join("model.safetensors");
            std::fs::write(&written, &converted).map_err(|e| format!("{}: {e}", written.display()))?;
            // Everything but the weights is copied as it is.
            for name in ["config.json", "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json"] {
                let from = model.join(name);
                if from.is_file() {
                    std::fs::copy(&from, out.join(name)).map_err(|e| format!("{}: {e}", from.display()))?;
                }
            }
            println!(
                "{} ({:.1} MB) → {} ({:.1} MB, {to:?})",
                weights.display(),
                bytes.len() as f64 / 1e6,
                written.display(),
                converted.len() as f64 / 1e6
            );
            Ok(Tally::none())
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
            Ok(Tally::none())
        }
    }
}
