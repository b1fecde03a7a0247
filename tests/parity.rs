//! The candle model against transformers' GroupViTModel on the committed random fixtures.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, expected, fixture, model, options};
use groupseg::preprocess;
use groupseg::{Background, SegmentOptions, Segmenter};

const TOL: f32 = 1e-4;

fn check_forward(name: &str) {
    let e = expected(name);
    let out = model(&fixture(name)).forward(&e["input_ids"].to_dtype(DType::U32).unwrap(), &e["pixel_values"]).unwrap();
    assert_close("text_embeds", &out.text_embeds, &e["text_embeds"], TOL);
    assert_close("image_embeds", &out.image_embeds, &e["image_embeds"], TOL);
    assert_close("logits_per_image", &out.logits_per_image, &e["logits_per_image"], TOL);
    assert_eq!(out.assignments.len(), e.keys().filter(|k| k.starts_with("assignment_")).count());
    for (i, a) in out.assignments.iter().enumerate() {
        assert_close(&format!("assignment_{i}"), a, &e[&format!("assignment_{i}")], TOL);
    }
    assert_close("segmentation_logits", &out.segmentation_logits, &e["segmentation_logits"], TOL);
}

#[test]
fn two_stage_square_input_matches_transformers() {
    check_forward("tiny-2stage");
}

#[test]
fn three_stage_non_square_f16_checkpoint_matches_transformers() {
    // 40×72 input on a model trained at 48×48: position embeddings are interpolated.
    check_forward("tiny-3stage");
}

#[test]
fn fixture_tokenizer_gives_the_reference_ids() {
    let seg = Segmenter::load(&fixture("tiny-2stage"), &Device::Cpu).unwrap();
    let prompts: Vec<String> =
        ["a photo of a cat.", "a red circle next to a blue star", "grass"].map(String::from).to_vec();
    let ids = seg.tokenize(&prompts).unwrap();
    let want = expected("tiny-2stage")["input_ids"].to_dtype(DType::U32).unwrap();
    assert_eq!(ids.to_vec2::<u32>().unwrap(), want.to_vec2::<u32>().unwrap());
}

#[test]
fn pytorch_bin_and_safetensors_give_identical_outputs() {
    let dir = fixture("tiny-2stage");
    let a = model(&dir.join("model.safetensors"));
    let b = model(&dir.join("pytorch_model.bin"));
    let e = expected("tiny-2stage");
    let ids = e["input_ids"].to_dtype(DType::U32).unwrap();
    let oa = a.forward(&ids, &e["pixel_values"]).unwrap();
    let ob = b.forward(&ids, &e["pixel_values"]).unwrap();
    for (x, y) in [
        (&oa.text_embeds, &ob.text_embeds),
        (&oa.image_embeds, &ob.image_embeds),
        (&oa.segmentation_logits, &ob.segmentation_logits),
    ] {
        let diff = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);
    }
}

fn photo_case() -> (Segmenter, image::RgbImage, Vec<String>, SegmentOptions) {
    let dir = fixture("tiny-3stage");
    let seg = Segmenter::load(&dir, &Device::Cpu).unwrap();
    let photo = preprocess::decode(&std::fs::read(dir.join("photo.png")).unwrap()).unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("photo.json")).unwrap()).unwrap();
    let labels = meta["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
    let opts = options(
        photo.width().min(photo.height()),
        meta["window"].as_u64().unwrap() as usize,
        meta["stride"].as_u64().unwrap() as usize,
        Background::Below(meta["background_threshold"].as_f64().unwrap() as f32),
    );
    (seg, photo, labels, opts)
}

fn label_map_of(t: &Tensor) -> Vec<u16> {
    t.to_dtype(DType::U32).unwrap().flatten_all().unwrap().to_vec1::<u32>().unwrap().iter().map(|&v| v as u16).collect()
}

#[test]
fn official_sliding_window_segmentation_matches_reference() {
    // NVlabs' encode_decode + mmseg's slide_inference, ported onto transformers in tools/reference/nvlabs.py:
    // three 40×40 windows at stride 20 over a 40×72 photo.
    let (seg, photo, labels, mut opts) = photo_case();
    let e = expected("tiny-3stage");
    let got = groupseg::block_on(seg.segment(&photo, &labels, &Default::default(), &opts)).unwrap();
    assert_eq!((got.width, got.height), (72, 40));
    let want = label_map_of(&e["photo_label_map"]);
    assert!(want.iter().any(|&v| v == 0) && want.iter().any(|&v| v > 0), "fixture should mix background and labels");
    assert_eq!(got.label_map, want, "with background");

    opts.labelling.background = Background::Never;
    let got = groupseg::block_on(seg.segment(&photo, &labels, &Default::default(), &opts)).unwrap();
    assert_eq!(got.label_map, label_map_of(&e["photo_label_map_nobg"]), "without background");
    assert_eq!(got.summary[0].share, 0.0);
    let total: f32 = got.summary.iter().map(|c| c.share).sum();
    assert!((total - 1.0).abs() < 1e-5);
}

#[test]
fn raw_logits_match_transformers_segmentation_logits() {
    let (seg, photo, labels, opts) = photo_case();
    let embeddings = groupseg::block_on(seg.label_embeddings(&labels, &Default::default())).unwrap();
    let got = groupseg::block_on(seg.raw_logits(&photo, &embeddings, &opts.geometry)).unwrap();
    assert_close("photo_raw_logits", &got, &expected("tiny-3stage")["photo_raw_logits"], TOL);
}

#[test]
fn mismatched_label_embeddings_are_refused() {
    let (seg, photo, labels, opts) = photo_case();
    let embeddings = groupseg::block_on(seg.label_embeddings(&labels[..2], &Default::default())).unwrap();
    let err = groupseg::block_on(seg.segment_with_embeddings(&photo, &labels, &embeddings, &opts)).unwrap_err();
    assert!(err.to_string().contains("2 label embeddings were given for 4 labels"), "{err}");
}

#[test]
fn classification_matches_transformers_image_processor_and_logits() {
    let (seg, photo, labels, _) = photo_case();
    let e = expected("tiny-3stage");
    // Both resize with Pillow's algorithm (ours is a port), so the pixels are the same.
    let ours = preprocess::classification_input(&photo, seg.preprocessor(), &Device::Cpu).unwrap();
    let want = &e["photo_classify_pixels"];
    assert_eq!(ours.dims(), want.dims());
    let diff = (&ours - want).unwrap().abs().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let worst = diff.iter().copied().fold(0f32, f32::max);
    let mean = diff.iter().sum::<f32>() / diff.len() as f32;
    assert!(worst <= 1e-5, "worst pixel difference {worst} (mean {mean})");
    let probs = groupseg::block_on(seg.classify(&photo, &labels, &Default::default())).unwrap();
    let want = e["photo_classify_probs"].to_vec1::<f32>().unwrap();
    for (p, w) in probs.iter().zip(&want) {
        assert!((p - w).abs() < TOL, "ours {probs:?}, transformers {want:?}");
    }
}

#[test]
fn downscaled_classification_input_is_pillows() {
    let dir = fixture("tiny-3stage");
    let seg = Segmenter::load(&dir, &Device::Cpu).unwrap();
    let big = preprocess::decode(&std::fs::read(dir.join("photo_big.png")).unwrap()).unwrap();
    let ours = preprocess::classification_input(&big, seg.preprocessor(), &Device::Cpu).unwrap();
    let want = &expected("tiny-3stage")["big_classify_pixels"];
    let worst = (&ours - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(worst <= 1e-5, "worst pixel difference {worst}");
}
