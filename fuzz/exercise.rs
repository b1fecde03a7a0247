//! What each fuzz target does with its input, shared by the `cargo fuzz` targets and by
//! `tests/fuzz_regressions.rs`, which replays every committed crashing input on stable Rust.
//! Every function must return (with `Ok` or an error) for any input: a panic, an abort or an
//! allocation past libFuzzer's limit is a finding.

#![allow(dead_code)]

use candle_core::Device;
use groupseg::{preprocess, BackendChoice, CheckpointFiles, Segmenter, TokenizerFiles};

/// A small model the fuzzed files are loaded beside (transformers' random 2-stage fixture).
const CONFIG: &str = include_str!("../tests/fixtures/tiny-2stage/config.json");
const WEIGHTS: &[u8] = include_bytes!("../tests/fixtures/tiny-2stage/model.safetensors");
const TOKENIZER: &[u8] = include_bytes!("../tests/fixtures/tiny-2stage/tokenizer.json");
const PREPROCESSOR: &str = include_str!("../tests/fixtures/tiny-2stage/preprocessor_config.json");

/// Photo decoding: any bytes decode or give an error, and a decoded photo is within the budget.
pub fn decode(data: &[u8]) {
    if let Ok(img) = preprocess::decode(data) {
        assert!(u64::from(img.width()) * u64::from(img.height()) <= preprocess::PIXEL_BUDGET);
    }
}

/// The tokenizer: the first byte picks what the rest is — a `tokenizer.json` to load and use, a
/// `vocab.json` and `merges.txt` (split at the first NUL) to build CLIP's pipeline from, or text
/// typed as labels for the fixture's tokenizer.
pub fn tokenizer(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let context = 16;
    let tok = match mode % 3 {
        0 => groupseg::tokenize::TextTokenizer::from_tokenizer_json(rest, context),
        1 => {
            let at = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let merges = String::from_utf8_lossy(rest.get(at + 1..).unwrap_or_default());
            groupseg::tokenize::TextTokenizer::from_vocab_merges(&rest[..at], &merges, context)
        }
        _ => {
            let tok = groupseg::tokenize::TextTokenizer::from_tokenizer_json(TOKENIZER, context)
                .expect("the fixture's tokenizer loads");
            if let Ok(labels) = groupseg::parse_labels(&String::from_utf8_lossy(rest)) {
                check_ids(&tok, &labels);
            }
            return;
        }
    };
    if let Ok(tok) = tok {
        check_ids(&tok, &["a photo of a cat.".to_owned(), String::new()]);
    }
}

fn check_ids(tok: &groupseg::tokenize::TextTokenizer, texts: &[String]) {
    if let Ok(ids) = tok.encode(texts) {
        assert_eq!(ids.len(), texts.len());
        assert!(ids.iter().all(|row| row.len() == tok.context_length()));
    }
}

/// Config parsing: the first byte picks which file the rest is (`config.json` or
/// `preprocessor_config.json`); the fixture's other files go beside it, and a model that loads
/// segments and classifies a small photo.
pub fn config(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (config, preprocessor) = if mode % 2 == 0 { (text, PREPROCESSOR) } else { (CONFIG, text) };
    use_model(config, WEIGHTS.to_vec(), preprocessor);
}

/// Checkpoint headers: the bytes as `model.safetensors` or `pytorch_model.bin` beside the
/// fixture's config.
pub fn checkpoint(data: &[u8]) {
    use_model(CONFIG, data.to_vec(), PREPROCESSOR);
}

fn use_model(config: &str, weights: Vec<u8>, preprocessor: &str) {
    let files = CheckpointFiles {
        config,
        weights: Box::new(weights),
        tokenizer: TokenizerFiles::Json(TOKENIZER.into()),
        preprocessor: Some(preprocessor),
        weight_ranges: None,
    };
    let Ok(segmenter) = groupseg::block_on(Segmenter::from_files_on(files, &Device::Cpu, BackendChoice::Cpu)) else {
        return;
    };
    let photo = image::RgbImage::from_fn(40, 24, |x, y| image::Rgb([(x * 6) as u8, (y * 10) as u8, 128]));
    let labels = ["cat".to_owned(), "sofa".to_owned()];
    let templates = groupseg::Templates::Single;
    let opts = segmenter.default_options();
    if let Ok(seg) = groupseg::block_on(segmenter.segment(&photo, &labels, &templates, &opts)) {
        assert_eq!((seg.width, seg.height), (40, 24));
        for d in groupseg::detect::detect(&seg, &Default::default()) {
            assert!(d.bounds.xmax <= 40 && d.bounds.ymax <= 24, "{d:?}");
        }
    }
    if let Ok(p) = groupseg::block_on(segmenter.classify(&photo, &labels, &templates)) {
        assert_eq!(p.len(), labels.len());
    }
}

/// The options and geometry a person (CLI flags) or a page (an options object) gives: a photo's
/// size, the segmentation overrides and the detection options, read from the input's bytes. Options
/// are checked (or refused), a photo within the window budget is segmented by the fixture model,
/// and its label map and boxes fit the photo.
pub fn options(data: &[u8]) {
    let mut r = Bytes(data);
    let (w, h) = (u32::from(r.u8()) * 4 + 1, u32::from(r.u8()) * 4 + 1);
    let flags = r.u8();
    let some = |bit: u8| flags & (1 << bit) != 0;
    let overrides = groupseg::SegmentOverrides {
        // Short sides under 1024: a resized photo's work (up to the window budget) takes seconds
        // natively but minutes under the fuzzer's instrumentation; the budget's edge is the unit
        // tests' and the hostile corpus's.
        short_side: some(0).then(|| r.u32() % 1024),
        window_side: some(1).then(|| r.u32() as usize % 4096),
        stride: some(2).then(|| r.u32() as usize % 4096),
        background: some(3).then(|| groupseg::Background::Below(r.f32())),
        refine: some(4).then(|| r.u8() % 2 == 0),
        refine_iterations: some(5).then(|| r.u32() % 64),
        nothing_prompt: some(6).then(|| r.u8() % 2 == 0),
        ..Default::default()
    };
    let detect = groupseg::detect::DetectOptions {
        threshold: r.f32(),
        top_k: some(7).then(|| r.u8() as usize),
        min_area: r.f32(),
        nms_iou: r.f32(),
        merge_gap: r.f32(),
        fragment_share: r.f32(),
    };
    // The window geometry itself, whatever the options say: counted as placed, each inside.
    let (win, stride) = (overrides.window_side.unwrap_or(64).max(1), overrides.stride.unwrap_or(32).max(1));
    let resized = (h as usize * 2, w as usize * 2);
    let count = groupseg::segment::window_count(resized, win, stride);
    if count <= groupseg::segment::MAX_WINDOWS {
        let (origins, (ch, cw)) = groupseg::segment::windows(resized.0, resized.1, win, stride);
        assert_eq!(origins.len(), count);
        assert!(origins.iter().all(|&(y, x)| y + ch <= resized.0 && x + cw <= resized.1));
    }
    SEGMENTER.with(|segmenter| {
        let Ok(opts) = segmenter.default_options().with(&overrides) else { return };
        let photo = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 6) as u8, (y * 10) as u8, 128]));
        let labels = ["red square".to_owned(), "blue star".to_owned()];
        let Ok(seg) = groupseg::block_on(segmenter.segment(&photo, &labels, &groupseg::Templates::Single, &opts)) else { return };
        assert_eq!((seg.width, seg.height), (w, h));
        assert_eq!(seg.label_map.len(), (w * h) as usize);
        assert!(seg.label_map.iter().all(|&l| (l as usize) < seg.classes.len()));
        if detect.check().is_ok() {
            for d in groupseg::detect::detect(&seg, &detect) {
                assert!(d.bounds.xmin < d.bounds.xmax && d.bounds.xmax <= w && d.bounds.ymax <= h, "{d:?}");
            }
        }
    });
}

thread_local! {
    /// The fixture model, loaded once per fuzzing process.
    static SEGMENTER: Segmenter = {
        let files = CheckpointFiles {
            config: CONFIG,
            weights: Box::new(WEIGHTS),
            tokenizer: TokenizerFiles::Json(TOKENIZER.into()),
            preprocessor: Some(PREPROCESSOR),
            weight_ranges: None,
        };
        groupseg::block_on(Segmenter::from_files_on(files, &Device::Cpu, BackendChoice::Cpu)).expect("the fixture loads")
    };
}

/// Reads numbers off the front of an input, zeros past its end.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.take())
    }
}
