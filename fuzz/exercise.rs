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
