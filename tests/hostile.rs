//! The hostile-input corpus (`tests/fixtures/hostile/`, written by `tools/hostile/make_corpus.py`)
//! through the CLI, each case beside one good photo: no crash, no hang, the good photo segmented
//! whenever anything runs, every error naming its photo or option, and each run's peak memory
//! (measured with `wait4`) under 2 GB.

mod common;

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::fixture;

const PEAK_MEMORY_LIMIT_KB: i64 = 2 << 20;
const TIMEOUT: Duration = Duration::from_secs(120);

struct Run {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    peak_kb: i64,
}

/// Runs the CLI, killing it after [`TIMEOUT`]; its exit status, stderr and peak resident memory.
fn run_cli(args: &[OsString]) -> Run {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_groupseg"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the CLI");
    let mut pipe = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let (mut status, mut usage): (libc::c_int, libc::rusage) = (0, unsafe { std::mem::zeroed() });
    loop {
        // SAFETY: plain wait4 on our own child; status and usage are valid out-pointers.
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            break;
        }
        assert!(done == 0, "wait4 failed");
        if started.elapsed() > TIMEOUT {
            child.kill().expect("kill a hung CLI");
            // SAFETY: as above, blocking this time.
            unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            panic!("the CLI hung for {TIMEOUT:?} on {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Run {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        stderr: reader.join().expect("stderr reader"),
        peak_kb: usage.ru_maxrss,
    }
}

fn os(s: impl Into<OsString>) -> OsString {
    s.into()
}

/// The special paths the corpus names by `@word`, made in `dir`.
fn special(dir: &Path, word: &str) -> PathBuf {
    match word {
        "@fifo" => {
            let p = dir.join("named-pipe");
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
            p
        }
        "@dir" => {
            let p = dir.join("folder");
            std::fs::create_dir_all(&p).unwrap();
            p
        }
        "@missing" => dir.join("missing"),
        "@missing-folder/x.npy" => dir.join("missing-folder/x.npy"),
        "@link-dev-zero" => {
            let p = dir.join("symlink-to-dev-zero");
            std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
            p
        }
        "@file" => {
            let p = dir.join("a-file");
            std::fs::write(&p, b"x").unwrap();
            p
        }
        other => PathBuf::from(other),
    }
}

/// A copy of the f32 fixture checkpoint in `dir`, damaged as `damage` says.
fn damaged_model(dir: &Path, damage: &str) -> PathBuf {
    let model = dir.join(format!("model-{damage}"));
    std::fs::create_dir_all(&model).unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"] {
        std::fs::copy(fixture("tiny-2stage").join(name), model.join(name)).unwrap();
    }
    let weights = model.join("model.safetensors");
    let config = model.join("config.json");
    let edit_config = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&config, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    let poison = |value: f32| {
        // The first tensor's first values, found through the safetensors header.
        let mut bytes = std::fs::read(&weights).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let (_, first) = header.as_object().unwrap().iter().find(|(k, _)| *k != "__metadata__").unwrap();
        assert_eq!(first["dtype"], "F32");
        let start = 8 + n + first["data_offsets"][0].as_u64().unwrap() as usize;
        bytes[start..start + 4].copy_from_slice(&value.to_le_bytes());
        std::fs::write(&weights, bytes).unwrap();
    };
    match damage {
        "truncate-weights" => {
            let bytes = std::fs::read(&weights).unwrap();
            std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
        }
        "nan-weights" => poison(f32::NAN),
        "inf-weights" => poison(f32::INFINITY),
        "config-not-json" => std::fs::write(&config, b"{not json").unwrap(),
        "config-bad-depths" => edit_config(&|v| v["vision_config"]["depths"] = serde_json::json!([1])),
        "config-bad-segmentation" => edit_config(&|v| v["segmentation"] = serde_json::json!({"window": 0})),
        "no-tokenizer" => std::fs::remove_file(model.join("tokenizer.json")).unwrap(),
        "no-weights" => std::fs::remove_file(&weights).unwrap(),
        "garbage-weights" => std::fs::write(&weights, vec![0x5a; 4096]).unwrap(),
        "wrong-shape" => edit_config(&|v| v["vision_config"]["hidden_size"] = serde_json::json!(40)),
        other => panic!("unknown damage {other}"),
    }
    model
}

#[test]
fn every_hostile_case_is_refused_by_name_and_the_good_photo_survives() {
    let corpus = fixture("hostile");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(corpus.join("cases.json")).unwrap()).unwrap();
    let good = corpus.join(manifest["good"].as_str().unwrap());
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 60, "the corpus has {} cases", cases.len());
    let (mut worst_kb, mut worst_case) = (0, String::new());
    for (i, case) in cases.iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let kind = case["kind"].as_str().unwrap();
        let mut labels = os("red circle, blue star");
        let mut extra: Vec<OsString> = Vec::new();
        let mut photos = vec![good.clone().into_os_string()];
        let mut names: Vec<String> = case["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()).collect();
        match kind {
            "photo" => photos.push(corpus.join(case["file"].as_str().unwrap()).into_os_string()),
            "special" => photos.push(special(tmp.path(), case["file"].as_str().unwrap()).into_os_string()),
            "options" => {
                let args: Vec<&str> = case["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
                let mut it = args.iter();
                while let Some(&flag) = it.next() {
                    let value = *it.next().expect("a value for every option");
                    let value = match value {
                        "@many" => os((0..16_000).map(|k| format!("l{k}")).collect::<Vec<_>>().join(",")),
                        v if v.starts_with('@') => special(tmp.path(), v).into_os_string(),
                        v => os(v),
                    };
                    if flag == "--labels" {
                        labels = value;
                    } else {
                        extra.extend([os(flag), value]);
                    }
                }
            }
            "model" => {
                let model = damaged_model(tmp.path(), case["damage"].as_str().unwrap());
                names = vec![model.display().to_string()];
                extra.extend([os("--model"), model.into_os_string()]);
            }
            other => panic!("unknown kind {other}"),
        }
        let mut args = vec![os("segment")];
        args.extend(photos);
        args.extend([os("--labels"), labels, os("--out"), out.clone().into_os_string(), os("--backend"), os("cpu")]);
        args.extend(extra);
        let run = run_cli(&args);
        let what = format!("case {i} ({kind} {}): exit {:?}, stderr:\n{}", case, run.code, run.stderr);
        assert_eq!(run.signal, None, "crashed: {what}");
        let code = run.code.expect("an exit status");
        match case["expect"].as_i64() {
            Some(want) => assert_eq!(i64::from(code), want, "{what}"),
            None => assert!(code == 0 || code == 3, "{what}"),
        }
        // An option that no photo of the good one's size can work with fails it too, by name.
        let good_fails = case["good_fails"].as_bool().unwrap_or(false);
        if code == 0 || (code == 3 && !good_fails) {
            for suffix in ["overlay.png", "mask.png", "json"] {
                assert!(out.join(format!("good.{suffix}")).is_file(), "the good photo was lost: {what}");
            }
        }
        if code != 0 {
            for name in &names {
                assert!(run.stderr.contains(name.as_str()), "the error does not name {name:?}: {what}");
            }
        }
        assert!(run.peak_kb <= PEAK_MEMORY_LIMIT_KB, "peak memory {} MB: {what}", run.peak_kb >> 10);
        if run.peak_kb > worst_kb {
            (worst_kb, worst_case) = (run.peak_kb, format!("{case}"));
        }
    }
    eprintln!("{} hostile cases: no crash, no hang; highest peak memory {} MB ({worst_case})", cases.len(), worst_kb >> 10);
}
