//! Replays what the fuzz targets (`fuzz/`, run with `./build.sh fuzz`) are seeded with and every
//! input that once crashed one (`fuzz/regressions/<target>/`), through the same code the targets
//! run (`fuzz/exercise.rs`), on stable Rust: a fixed finding that comes back fails here.

#[path = "../fuzz/exercise.rs"]
mod exercise;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files in `dir` (not recursive), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs `target` on its seeds (`fuzz/seeds/<target>`, which must hold some, so the test always runs
/// real inputs) and its regressions.
fn replay(target: &str, exercise: fn(&[u8])) {
    let seeds = root().join("fuzz/seeds").join(target);
    let seed_files = files(&seeds);
    assert!(!seed_files.is_empty(), "{target}: no seed inputs");
    // A target that never crashed has no regressions folder (git keeps no empty folders).
    let found = root().join("fuzz/regressions").join(target);
    let regressions = if found.is_dir() { files(&found) } else { Vec::new() };
    for path in seed_files.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("read input");
        eprintln!("{target}: {}", path.strip_prefix(root()).unwrap_or(Path::new("?")).display());
        exercise(&data);
    }
    eprintln!("{target}: {} seeds, {} regressions", seed_files.len(), regressions.len());
}

#[test]
fn decode() {
    replay("decode", exercise::decode);
}

#[test]
fn tokenizer() {
    replay("tokenizer", exercise::tokenizer);
}

#[test]
fn config() {
    replay("config", exercise::config);
}

#[test]
fn checkpoint() {
    replay("checkpoint", exercise::checkpoint);
}

#[test]
fn options() {
    replay("options", exercise::options);
}
