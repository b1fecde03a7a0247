//! Bad and unusual inputs: photo formats and colour types, EXIF orientation, damaged checkpoints.

mod common;

use std::io::Cursor;

use candle_core::Device;
use common::fixture;
use groupseg::preprocess::{self, SegmentationSize};
use groupseg::{Error, Segmenter};
use image::{DynamicImage, ImageBuffer, ImageEncoder, ImageFormat, Luma, Rgb, RgbImage, Rgba};

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn sample() -> RgbImage {
    RgbImage::from_fn(5, 3, |x, y| Rgb([(x * 50) as u8, (y * 100) as u8, 200]))
}

#[test]
fn decodes_every_supported_format() {
    let img = DynamicImage::ImageRgb8(sample());
    for format in [ImageFormat::Png, ImageFormat::Bmp, ImageFormat::WebP] {
        let got = preprocess::decode(&encode(&img, format)).unwrap();
        assert_eq!(got, sample(), "{format:?} is lossless");
    }
    for format in [ImageFormat::Jpeg, ImageFormat::Gif] {
        let got = preprocess::decode(&encode(&img, format)).unwrap();
        assert_eq!(got.dimensions(), (5, 3), "{format:?}");
    }
}

#[test]
fn grey_alpha_and_16_bit_become_rgb() {
    let grey = DynamicImage::ImageLuma8(ImageBuffer::from_pixel(2, 2, Luma([77u8])));
    assert_eq!(preprocess::decode(&encode(&grey, ImageFormat::Png)).unwrap().get_pixel(1, 1), &Rgb([77, 77, 77]));
    let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(2, 2, Rgba([10u8, 20, 30, 0])));
    assert_eq!(preprocess::decode(&encode(&rgba, ImageFormat::Png)).unwrap().get_pixel(0, 0), &Rgb([10, 20, 30]));
    let deep = DynamicImage::ImageRgb16(ImageBuffer::from_pixel(2, 2, Rgb([65535u16, 0, 32896])));
    assert_eq!(preprocess::decode(&encode(&deep, ImageFormat::Png)).unwrap().get_pixel(0, 0), &Rgb([255, 0, 128]));
}

#[test]
fn jpeg_exif_orientation_is_applied() {
    // 4 wide × 2 high, left half black, right half white, tagged "rotate 90° clockwise" (6).
    let img = RgbImage::from_fn(4, 2, |x, _| if x < 2 { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) });
    let tiff: Vec<u8> = [
        &b"II\x2a\x00\x08\x00\x00\x00"[..],
        &[1, 0],
        &[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0],
        &[0, 0, 0, 0],
    ]
    .concat();
    let mut jpeg = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 100);
    enc.set_exif_metadata(tiff).unwrap();
    enc.write_image(&img, 4, 2, image::ExtendedColorType::Rgb8).unwrap();
    let got = preprocess::decode(&jpeg).unwrap();
    assert_eq!(got.dimensions(), (2, 4));
    // After a clockwise turn the old left (black) half is on top.
    assert!(got.get_pixel(1, 0).0[0] < 64 && got.get_pixel(1, 3).0[0] > 192, "{got:?}");
}

#[test]
fn non_images_are_refused_clearly() {
    let err = preprocess::decode(b"this is a text file, not a photo").unwrap_err();
    assert!(matches!(err, Error::Image(_)));
    assert!(err.to_string().contains("not a JPEG, PNG, WebP, GIF or BMP"), "{err}");
    let mut png = encode(&DynamicImage::ImageRgb8(sample()), ImageFormat::Png);
    png.truncate(png.len() / 2);
    assert!(matches!(preprocess::decode(&png), Err(Error::Image(_))));
}

#[test]
fn segmentation_size_follows_mmseg_keep_ratio() {
    let size = SegmentationSize::default();
    assert_eq!(size.fit(640, 480), (597, 448));
    assert_eq!(size.fit(480, 640), (448, 597));
    assert_eq!(size.fit(100, 100), (448, 448));
    // A panorama: the long side is capped at 2048 and the short side follows.
    assert_eq!(size.fit(8000, 1000), (2048, 256));
}

/// A copy of a fixture checkpoint in a temporary directory, to damage.
fn checkpoint_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

fn load_err(path: &std::path::Path) -> String {
    match Segmenter::load(path, &Device::Cpu) {
        Ok(_) => panic!("{} loaded although damaged", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_weights_are_an_error_not_a_panic() {
    let dir = checkpoint_copy("tiny-2stage");
    for name in ["model.safetensors", "pytorch_model.bin"] {
        let p = dir.path().join(name);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let msg = load_err(&p);
        assert!(msg.contains("damaged or truncated"), "{name}: {msg}");
    }
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let dir = checkpoint_copy("tiny-2stage");
    let p = dir.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&p, &Device::Cpu).unwrap();
    tensors.remove("vision_model.encoder.stages.0.group_token").unwrap();
    candle_core::safetensors::save(&tensors, &p).unwrap();
    let msg = load_err(&p);
    assert!(msg.contains("vision_model.encoder.stages.0.group_token"), "{msg}");

    let dir = checkpoint_copy("tiny-2stage");
    let cfg_path = dir.path().join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["projection_dim"] = 17.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let msg = load_err(dir.path());
    assert!(msg.contains("text_projection.3.weight") || msg.contains("visual_projection.3.weight"), "{msg}");
    assert!(msg.contains("shape"), "{msg}");
}

#[test]
fn unusable_files_say_what_is_wrong() {
    let dir = checkpoint_copy("tiny-2stage");
    std::fs::write(dir.path().join("model.safetensors"), b"<html>404 Not Found</html>").unwrap();
    assert!(load_err(&dir.path().join("model.safetensors")).contains("neither safetensors nor a PyTorch"));
    std::fs::write(dir.path().join("config.json"), b"{ not json").unwrap();
    assert!(load_err(dir.path()).contains("config.json is invalid"));
    let empty = tempfile::tempdir().unwrap();
    assert!(load_err(empty.path()).contains("neither model.safetensors nor pytorch_model.bin"));
}

#[test]
fn preprocessor_configs_that_cannot_work_are_refused_at_load() {
    for (json, says) in [
        (r#"{"size": 4000000000}"#, "size must be 1 to 4096 pixels"),
        (r#"{"crop_size": {"height": 0, "width": 224}}"#, "crop_size must be 1 to 4096 pixels"),
        (r#"{"image_std": [0.2, 0, 0.2]}"#, "image_std must be positive"),
        (r#"{"resample": 9}"#, "unknown resample filter 9"),
    ] {
        let dir = checkpoint_copy("tiny-2stage");
        std::fs::write(dir.path().join("preprocessor_config.json"), json).unwrap();
        let msg = load_err(dir.path());
        assert!(msg.contains("preprocessor_config.json") && msg.contains(says), "{json}: {msg}");
    }
}

#[test]
fn checkpoint_files_that_are_pipes_are_refused_not_read_without_end() {
    let dir = checkpoint_copy("tiny-2stage");
    // The weights named directly, and a config, each a fifo nobody writes to.
    let weights = dir.path().join("model.safetensors");
    std::fs::remove_file(&weights).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&weights).status().expect("mkfifo runs");
    assert!(made.success());
    let msg = load_err(&weights);
    assert!(msg.contains("not a regular file") && msg.contains("model.safetensors"), "{msg}");

    let other = checkpoint_copy("tiny-2stage");
    let config = other.path().join("config.json");
    std::fs::remove_file(&config).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&config).status().unwrap().success());
    let msg = load_err(other.path());
    assert!(msg.contains("not a regular file") && msg.contains("config.json"), "{msg}");
}

#[test]
fn a_segmentation_section_that_cannot_work_is_refused_at_load_by_its_field() {
    for (section, says) in [
        (r#"{"short_side": 8}"#, "short side must be at least 16"),
        (r#"{"window": 32, "stride": 64}"#, "stride (64) must not exceed the window (32)"),
    ] {
        let dir = checkpoint_copy("tiny-2stage");
        let path = dir.path().join("config.json");
        let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["segmentation"] = serde_json::from_str(section).unwrap();
        std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
        let msg = load_err(dir.path());
        assert!(msg.contains("segmentation section") && msg.contains(says), "{section}: {msg}");
    }
}

#[test]
fn a_photo_too_narrow_to_classify_is_refused_by_name() {
    let segmenter = Segmenter::load(&fixture("tiny-2stage"), &Device::Cpu).unwrap();
    // Its short side (2) resized to the fixture's 32 would make the long side 32,000,000.
    let photo = RgbImage::new(2, 2_000_000);
    let err = groupseg::block_on(segmenter.classify(&photo, &["cat".into(), "dog".into()], &Default::default())).unwrap_err();
    assert!(err.to_string().contains("crop it closer to square"), "{err}");
}

#[test]
fn labels_are_capped_in_count_and_length_before_any_work_on_them() {
    // A million distinct labels: refused at the 257th, naming the cap.
    let many: String = (0..1_000_000).map(|i| format!("thing {i},")).collect();
    let err = groupseg::parse_labels(&many).unwrap_err().to_string();
    assert!(err.contains("more than 256 labels"), "{err}");
    // Duplicates do not count: 200,000 of one label are one label.
    assert_eq!(groupseg::parse_labels(&"cat, Cat, ".repeat(100_000)).unwrap(), ["cat"]);
    let long = "a".repeat(groupseg::pipeline::MAX_LABEL_CHARS + 1);
    let err = groupseg::parse_labels(&format!("cat, {long}")).unwrap_err().to_string();
    assert!(err.contains("301 characters long") && err.contains("at most 300"), "{err}");
    assert!(groupseg::parse_labels(&"a".repeat(groupseg::pipeline::MAX_LABEL_CHARS)).is_ok());
}

#[test]
fn labels_are_parsed_forgivingly() {
    assert_eq!(groupseg::parse_labels(" cat, sofa ,, Window,cat\nfloor ").unwrap(), ["cat", "sofa", "Window", "floor"]);
    assert!(groupseg::parse_labels(" , ,").unwrap_err().to_string().contains("at least one label"));
}
