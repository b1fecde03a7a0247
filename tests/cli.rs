//! The `groupseg` command as a user runs it.

mod common;

use std::process::Command;

use candle_core::Tensor;
use common::{assert_close, expected, fixture};

fn groupseg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_groupseg"))
}

/// `groupseg classify` of the fixture photo on `backend`, with `env` set.
fn classify_on(backend: &str, env: &[(&str, &str)]) -> std::process::Output {
    let model = fixture("tiny-3stage");
    groupseg()
        .envs(env.iter().copied())
        .arg("classify")
        .arg(model.join("photo.png"))
        .args(["--labels", "cat, dog", "--backend", backend, "--model"])
        .arg(&model)
        .output()
        .unwrap()
}

#[test]
fn segment_reports_a_broken_photo_and_does_the_rest() {
    let out = tempfile::tempdir().unwrap();
    let broken = out.path().join("broken.jpg");
    std::fs::write(&broken, b"not a photo at all").unwrap();
    let model = fixture("tiny-3stage");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(model.join("photo.json")).unwrap()).unwrap();
    let threshold = meta["background_threshold"].to_string();
    let run = groupseg()
        .arg("segment")
        .arg(&broken)
        .arg(model.join("photo.png"))
        .args(["--labels", "cat, dog, grass, sky", "--short-side", "40", "--window", "40", "--stride", "20"])
        .args(["--background-threshold", &threshold, "--model"])
        .arg(&model)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("broken.jpg") && stderr.contains("cannot decode the photo"), "{stderr}");

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("photo.json")).unwrap()).unwrap();
    assert_eq!((summary["width"].as_u64(), summary["height"].as_u64()), (Some(72), Some(40)));
    let classes = summary["classes"].as_array().unwrap();
    let names: Vec<&str> = classes.iter().map(|c| c["label"].as_str().unwrap()).collect();
    assert_eq!(names, ["background", "cat", "dog", "grass", "sky"]);
    // Same shares as the reference label map.
    let want = expected("tiny-3stage")["photo_label_map"].flatten_all().unwrap().to_vec1::<i32>().unwrap();
    for (k, c) in classes.iter().enumerate() {
        let share = want.iter().filter(|&&v| v == k as i32).count() as f64 / want.len() as f64;
        assert!((c["share"].as_f64().unwrap() - share).abs() < 1e-6, "{c}");
    }
    let overlay = image::open(out.path().join("photo.overlay.png")).unwrap().to_rgb8();
    assert!(overlay.height() > 40, "legend below the photo");
    // A narrow photo gets a canvas as wide as its legend's longest line: the rightmost inked (black
    // text) pixel of the legend ends one glyph and a margin from the right edge, no further.
    let ink = (0..overlay.width())
        .rev()
        .find(|&x| (40..overlay.height()).any(|y| overlay.get_pixel(x, y).0 == [0, 0, 0]))
        .expect("legend text");
    let margin = overlay.width() - 1 - ink;
    assert!(overlay.width() > 72 && (8..8 + 16).contains(&margin), "width {}, text ends {margin} px from the edge", overlay.width());
    assert_eq!(image::open(out.path().join("photo.mask.png")).unwrap().height(), 40);
}

#[test]
fn raw_logits_npy_matches_transformers() {
    let out = tempfile::tempdir().unwrap();
    let npy = out.path().join("logits.npy");
    let model = fixture("tiny-3stage");
    let run = groupseg()
        .arg("segment")
        .arg(model.join("photo.png"))
        .args(["--labels", "cat, dog, grass, sky", "--short-side", "40", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(out.path())
        .arg("--raw-logits")
        .arg(&npy)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let got = Tensor::read_npy(&npy).unwrap();
    assert_close("raw logits", &got, &expected("tiny-3stage")["photo_raw_logits"], 1e-4);
}

#[test]
fn classify_prints_a_distribution() {
    let model = fixture("tiny-3stage");
    let run = groupseg()
        .arg("classify")
        .arg(model.join("photo.png"))
        .args(["--labels", "cat, dog, grass", "--template", "a photo of a {}.", "--template", "a {} in the sky", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    let probs: Vec<(f64, String)> = stdout
        .lines()
        .skip(1)
        .map(|l| {
            let (p, label) = l.trim().split_once("  ").unwrap();
            (p.parse().unwrap(), label.to_owned())
        })
        .collect();
    let mut labels: Vec<&str> = probs.iter().map(|(_, l)| l.as_str()).collect();
    labels.sort();
    assert_eq!(labels, ["cat", "dog", "grass"]);
    let sum: f64 = probs.iter().map(|(p, _)| p).sum();
    assert!((sum - 1.0).abs() < 2e-4, "{stdout}");
    assert!(probs.windows(2).all(|w| w[0].0 >= w[1].0), "sorted: {stdout}");
}

#[test]
fn a_missing_model_is_a_clear_failure() {
    let run = groupseg()
        .args(["segment", "x.png", "--labels", "cat", "--model", "/nonexistent/groupvit"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("/nonexistent/groupvit"), "{stderr}");
}

#[test]
fn photos_with_the_same_name_do_not_overwrite_each_other() {
    let out = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let model = fixture("tiny-3stage");
    std::fs::copy(model.join("photo_big.png"), other.path().join("photo.png")).unwrap();
    let run = groupseg()
        .arg("segment")
        .arg(model.join("photo.png"))
        .arg(other.path().join("photo.png"))
        .args(["--labels", "cat, sky", "--short-side", "40", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let first: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("photo.json")).unwrap()).unwrap();
    let second: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("photo-2.json")).unwrap()).unwrap();
    assert_eq!(first["width"], 72);
    assert_eq!(second["width"], 163);
    assert!(out.path().join("photo-2.overlay.png").is_file());
}

#[test]
fn the_backend_is_chosen_and_reported() {
    let run = |backend: &str| classify_on(backend, &[]);
    let gpu = run("gpu");
    let stderr = String::from_utf8_lossy(&gpu.stderr);
    assert!(gpu.status.success() && stderr.contains("backend: GPU: "), "{stderr}");
    let cpu = run("cpu");
    assert!(cpu.status.success() && String::from_utf8_lossy(&cpu.stderr).contains("backend: CPU"));
    // Both backends give the same probabilities (to the printed precision, ±1 in the last digit).
    let probs = |out: &std::process::Output| -> Vec<f64> {
        String::from_utf8_lossy(&out.stdout).lines().skip(1).map(|l| l.trim().split_once("  ").unwrap().0.parse().unwrap()).collect()
    };
    for (g, c) in probs(&gpu).iter().zip(probs(&cpu)) {
        assert!((g - c).abs() <= 1.5e-4, "gpu {g} cpu {c}");
    }
    // On a machine whose only adapter is software (lavapipe here), auto keeps to the CPU and says so.
    let auto = run("auto");
    let stderr = String::from_utf8_lossy(&auto.stderr);
    assert!(auto.status.success(), "{stderr}");
    assert!(
        stderr.contains("backend: GPU: ") && !stderr.contains("llvmpipe") || stderr.contains("is software emulation"),
        "{stderr}"
    );
    // A bad option is a usage error (status 2), found before the model loads.
    let bad = run("tpu");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not one of auto, gpu, cpu"));
}

#[test]
fn without_a_gpu_auto_falls_back_to_the_cpu_and_says_why() {
    // Restricting wgpu to Metal leaves no adapter on Linux: the machine seems to have no GPU.
    let run = |backend: &str| classify_on(backend, &[("WGPU_BACKEND", "metal")]);
    let auto = run("auto");
    let stderr = String::from_utf8_lossy(&auto.stderr);
    assert!(auto.status.success(), "{stderr}");
    assert!(stderr.contains("backend: CPU (no usable GPU: no GPU adapter"), "{stderr}");
    let forced = run("gpu");
    assert_eq!(forced.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&forced.stderr).contains("no usable GPU"));
}

#[test]
fn without_a_model_the_built_in_shapes_demo_segments() {
    let out = tempfile::tempdir().unwrap();
    let scene = fixture("shapes-eval/000.png");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("shapes-eval/labels.json")).unwrap()).unwrap();
    let labels: Vec<&str> = meta["scenes"][0]["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let run = groupseg()
        .arg("segment")
        .arg(&scene)
        .args(["--labels", &labels.join(", "), "--backend", "cpu", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("built-in shapes demo"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("000.json")).unwrap()).unwrap();
    let names: Vec<&str> = summary["classes"].as_array().unwrap().iter().map(|c| c["label"].as_str().unwrap()).collect();
    assert_eq!(names[0], "background");
    assert_eq!(&names[1..], &labels[..]);
    let png = image::open(scene).unwrap();
    assert_eq!((summary["width"].as_u64(), summary["height"].as_u64()), (Some(png.width() as u64), Some(png.height() as u64)));
}
