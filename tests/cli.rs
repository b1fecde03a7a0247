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
        .args(["--background-threshold", &threshold, "--refine", "off", "--model"])
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
    assert!(stderr.contains("backend: CPU (no Vulkan, Metal or DirectX 12 driver here offers a GPU)"), "{stderr}");
    // One plain sentence, not wgpu's list of the backends it was built without.
    assert!(!stderr.contains("not compiled in"), "{stderr}");
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

/// Held-out shapes scene `i`: its photo path, its labels (its phrases, then two distractors) and
/// each of its objects' true box `(label, [xmin, ymin, xmax, ymax])` from its mask.
fn shapes_scene(i: usize) -> (std::path::PathBuf, Vec<String>, Vec<(String, [u32; 4])>) {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("shapes-eval/labels.json")).unwrap()).unwrap();
    let classes: Vec<String> = serde_json::from_value(meta["classes"].clone()).unwrap();
    let labels: Vec<String> = serde_json::from_value(meta["scenes"][i]["labels"].clone()).unwrap();
    let mask = image::open(fixture(&format!("shapes-eval/{i:03}-mask.png"))).unwrap().to_luma8();
    let mut boxes: Vec<Option<[u32; 4]>> = vec![None; classes.len()];
    for (x, y, p) in mask.enumerate_pixels() {
        if p.0[0] > 0 {
            let b = boxes[p.0[0] as usize].get_or_insert([x, y, x + 1, y + 1]);
            *b = [b[0].min(x), b[1].min(y), b[2].max(x + 1), b[3].max(y + 1)];
        }
    }
    let truth = boxes.iter().enumerate().filter_map(|(k, b)| b.map(|b| (classes[k].clone(), b))).collect();
    (fixture(&format!("shapes-eval/{i:03}.png")), labels, truth)
}

fn iou(a: [u32; 4], b: &serde_json::Value) -> f64 {
    let b = ["xmin", "ymin", "xmax", "ymax"].map(|k| b[k].as_u64().unwrap() as u32);
    let inter = (a[2].min(b[2]).saturating_sub(a[0].max(b[0])) * a[3].min(b[3]).saturating_sub(a[1].max(b[1]))) as f64;
    let area = |r: [u32; 4]| ((r[2] - r[0]) * (r[3] - r[1])) as f64;
    inter / (area(a) + area(b) - inter)
}

#[test]
fn detect_finds_each_object_of_a_held_out_scene_and_survives_a_broken_photo() {
    let out = tempfile::tempdir().unwrap();
    let broken = out.path().join("broken.png");
    std::fs::write(&broken, b"\x89PNG but not really").unwrap();
    let (scene, labels, truth) = shapes_scene(40);
    let run = groupseg()
        .arg("detect")
        .arg(&broken)
        .arg(&scene)
        .args(["--labels", &labels.join(", "), "--backend", "cpu", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("broken.png"), "{stderr}");
    let found: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("040.detections.json")).unwrap()).unwrap();
    let found = found.as_array().unwrap();
    for (label, b) in &truth {
        assert!(
            found.iter().any(|d| d["label"] == label.as_str() && iou(*b, &d["box"]) >= 0.5),
            "{label} at {b:?} not among {found:?}"
        );
    }
    assert_eq!(found.len(), truth.len(), "no spurious boxes: {found:?}");
    let scores: Vec<f64> = found.iter().map(|d| d["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first: {scores:?}");
    let drawn = image::open(out.path().join("040.detections.png")).unwrap();
    assert_eq!(drawn.width(), image::open(&scene).unwrap().width());
}

#[test]
fn ground_boxes_each_phrase_of_a_caption_and_says_which_are_nowhere() {
    let out = tempfile::tempdir().unwrap();
    let (scene, labels, truth) = shapes_scene(40);
    let phrases = &labels[..labels.len() - 2];
    // A phrase in characters after a non-ASCII one checks that offsets count characters.
    let caption = format!("Voilà: a {} next to a {} and a {}, not a green cross", phrases[0], phrases[1], phrases[2]);
    let run = groupseg()
        .arg("ground")
        .arg(&scene)
        .args(["--caption", &caption, "--backend", "cpu", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let g: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("040.grounding.json")).unwrap()).unwrap();
    let g = g.as_array().unwrap();
    let texts: Vec<&str> = g.iter().map(|p| p["phrase"].as_str().unwrap()).collect();
    let want: Vec<String> = ["Voilà".to_owned()]
        .into_iter()
        .chain(phrases.iter().map(|p| format!("a {p}")))
        .chain(["a green cross".to_owned()])
        .collect();
    assert_eq!(texts, want);
    let chars: Vec<char> = caption.chars().collect();
    for p in g {
        let (s, e) = (p["start"].as_u64().unwrap() as usize, p["end"].as_u64().unwrap() as usize);
        assert_eq!(chars[s..e].iter().collect::<String>(), p["phrase"].as_str().unwrap());
    }
    for (p, label) in g[1..4].iter().zip(phrases) {
        let b = truth.iter().find(|(l, _)| l == label).unwrap().1;
        assert!(iou(b, &p["box"]) >= 0.5, "{label}: {p} vs {b:?}");
    }
    assert_eq!((g[4]["box"].is_null(), g[4]["score"].as_f64()), (true, Some(0.0)), "{}", g[4]);
    assert!(out.path().join("040.grounding.png").is_file());

    let none = groupseg().arg("ground").arg(&scene).args(["--caption", "is on the"]).output().unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no phrase"), "{}", String::from_utf8_lossy(&none.stderr));

    // A caption past the cap is refused by name before any work (as long as one argument may be).
    let long = "a red square and a blue star. ".repeat(4_000);
    let refused = groupseg().arg("ground").arg(&scene).arg("--caption").arg(&long).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--caption") && stderr.contains(&groupseg::phrases::MAX_CAPTION_CHARS.to_string()), "{stderr}");
}

#[test]
fn groups_writes_one_picture_per_grouping_block() {
    let out = tempfile::tempdir().unwrap();
    let model = fixture("tiny-3stage");
    let run = groupseg()
        .arg("groups")
        .arg(model.join("photo.png"))
        .args(["--short-side", "40", "--window", "72", "--stride", "36", "--backend", "cpu", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("stage 1: 11 groups"), "{stdout}");
    for k in [1, 2] {
        let img = image::open(out.path().join(format!("photo.groups-{k}.png"))).unwrap();
        assert_eq!((img.width(), img.height()), (72, 40));
    }
}

#[test]
fn classify_json_ranks_the_top_k_with_a_template_preset() {
    let model = fixture("tiny-3stage");
    let run = groupseg()
        .arg("classify")
        .arg(model.join("photo.png"))
        .args(["--labels", "cat, dog, grass, a red car", "--templates", "nvlabs", "--top-k", "2", "--json", "--backend", "cpu", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let ranked = v[0]["labels"].as_array().unwrap();
    // transformers' ensemble probabilities (family.safetensors): grass 0.300, cat 0.283, a red car 0.240, dog 0.177.
    assert_eq!(ranked.iter().map(|r| r["label"].as_str().unwrap()).collect::<Vec<_>>(), ["grass", "cat"]);
    assert!((ranked[0]["score"].as_f64().unwrap() - 0.29992).abs() < 1e-3, "{v}");

    let bad = |args: &[&str], word: &str| {
        let run = groupseg().arg("classify").arg(model.join("photo.png")).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(word), "{stderr}");
    };
    bad(&["--labels", "cat", "--templates", "imagenet80"], "imagenet80");
    bad(&["--labels", "cat", "--templates", "nvlabs", "--template", "a {}"], "--template");
    bad(&["--labels", "cat", "--template", "no slot"], "no slot");
}
