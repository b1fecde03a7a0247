//! Replays what the fuzz targets (`fuzz/`, run with `./build.sh fuzz`) are seeded with and every
//! input that once crashed one (`fuzz/regressions/<target>/`), through the same code the targets
//! run (`fuzz/exercise.rs`), on stable Rust: a fixed finding that comes back fails here.

#[path = "../fuzz/exercise.rs"]
mod exercise;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `dirs` (not recursive), sorted.
fn files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap_or_else(|e| panic!("{}: {e}", d.display())))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs `target` on its seeds and regressions; the seeds must be there, so the test always runs
/// real inputs.
fn replay(target: &str, seeds: &[&str], exercise: fn(&[u8])) {
    let seeds: Vec<PathBuf> = seeds.iter().map(|s| root().join(s)).collect();
    let seed_files = files(&seeds);
    assert!(!seed_files.is_empty(), "{target}: no seed inputs in {seeds:?}");
    // A target that never crashed has no regressions folder (git keeps no empty folders).
    let found = root().join("fuzz/regressions").join(target);
    let regressions = if found.is_dir() { files(&[found]) } else { Vec::new() };
    for path in seed_files.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("read input");
        eprintln!("{target}: {}", path.strip_prefix(root()).unwrap_or(Path::new("?")).display());
        exercise(&data);
    }
    eprintln!("{target}: {} seeds, {} regressions", seed_files.len(), regressions.len());
}

#[test]
fn decode() {
    replay("decode", &["tests/fixtures/hostile"], exercise::decode);
}

#[test]
fn tokenizer() {
    replay("tokenizer", &["fuzz/seeds/tokenizer"], exercise::tokenizer);
}

#[test]
fn config() {
    replay("config", &["fuzz/seeds/config"], exercise::config);
}

#[test]
fn checkpoint() {
    replay("checkpoint", &["tests/fixtures/tiny-2stage"], exercise::checkpoint);
}
