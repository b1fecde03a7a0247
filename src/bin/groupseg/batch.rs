//! A run over many photos: which photos (files, and folders walked in a stable order), this
//! machine's shard of them, each photo's output name, what a resumed run skips, progress on a
//! terminal, and the tally at the end.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

/// The photos of a run.
#[derive(Args)]
pub struct PhotoArgs {
    /// Photos, or folders of photos (the image files in them, found by their content).
    #[arg(required = true)]
    photos: Vec<PathBuf>,
    /// Walk the folders' subfolders too.
    #[arg(long)]
    recursive: bool,
    /// Only shard K of N (1 ≤ K ≤ N): every N-th photo of the run's order from the K-th, so N
    /// machines (a job array) share a collection; `groupseg coco merge` joins their COCO files.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<Shard>,
}

impl PhotoArgs {
    pub fn sharded(&self) -> bool {
        self.shard.is_some()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shard {
    k: usize,
    n: usize,
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    let bad = || format!("{text:?} is not K/N with 1 ≤ K ≤ N, e.g. 2/4");
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok(Shard { k, n })
}

/// One photo of the run.
pub struct Photo {
    pub path: PathBuf,
    /// Its place in the whole run's order, from 1 (the same in every shard): its COCO image id.
    pub id: u64,
    /// The file stem its outputs are named by, unique in the run (photos from different folders
    /// may share a name: the later ones are numbered).
    pub stem: String,
}

/// The photos named and found in the folders, in the run's order (as named; a folder's files
/// sorted by name), this shard's only; and how many files in the folders were not photos.
pub fn list(args: &PhotoArgs) -> (Vec<Photo>, Listing) {
    let mut listing = Listing::default();
    let mut paths = Vec::new();
    for named in &args.photos {
        if !named.is_dir() {
            // A file named is tried whatever it holds: what it is not is said when it is read.
            paths.push(named.clone());
            continue;
        }
        let depth = if args.recursive { usize::MAX } else { 1 };
        let before = paths.len();
        for entry in walkdir::WalkDir::new(named).min_depth(1).max_depth(depth).follow_links(true).sort_by_file_name() {
            match entry {
                Ok(e) if e.file_type().is_dir() => {}
                Ok(e) if e.file_type().is_file() && is_photo(e.path()) => paths.push(e.into_path()),
                Ok(_) => listing.not_photos += 1,
                Err(e) => listing.unreadable.push(e.to_string()),
            }
        }
        if paths.len() == before {
            // A folder named but empty of photos is most likely the wrong folder: said as a failure.
            listing.unreadable.push(format!("{}: no photo in this folder (photos are found by their content)", named.display()));
        }
        if !args.recursive && has_subfolders(named) {
            listing.subfolders_left.push(named.clone());
        }
    }
    let mut used = HashSet::new();
    let photos = paths
        .into_iter()
        .enumerate()
        .map(|(i, path)| {
            let base = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "photo".into());
            let stem = (1..)
                .map(|i| if i == 1 { base.clone() } else { format!("{base}-{i}") })
                .find(|name| used.insert(name.clone()))
                .unwrap_or(base);
            Photo { path, id: i as u64 + 1, stem }
        })
        .filter(|p| args.shard.is_none_or(|s| (p.id as usize - 1) % s.n == s.k - 1))
        .collect();
    (photos, listing)
}

/// What walking the folders met besides photos.
#[derive(Default)]
pub struct Listing {
    not_photos: usize,
    unreadable: Vec<String>,
    subfolders_left: Vec<PathBuf>,
}

impl Listing {
    /// Says what was left out, on stderr; returns how many entries could not be read or named
    /// folders held no photo (failures).
    pub fn report(&self) -> usize {
        match self.not_photos {
            0 => {}
            1 => eprintln!("1 file in the folders is not a photo (by its content): left out"),
            n => eprintln!("{n} files in the folders are not photos (by their content): left out"),
        }
        for f in &self.subfolders_left {
            eprintln!("{}: its subfolders are left out (--recursive to walk them)", f.display());
        }
        for e in &self.unreadable {
            eprintln!("{e}");
        }
        self.unreadable.len()
    }
}

/// Whether the file's first bytes are those of an image format (not its name's extension).
fn is_photo(path: &Path) -> bool {
    let mut head = [0u8; 32];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    image::guess_format(&head[..n]).is_ok()
}

fn has_subfolders(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.any(|e| e.is_ok_and(|e| e.path().is_dir()))).unwrap_or(false)
}

/// Writes `bytes` to `path` whole or not at all (a temporary file renamed over it), so that an
/// output that exists is complete: what `--resume` relies on.
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    std::fs::write(&part, bytes).and_then(|_| std::fs::rename(&part, path)).map_err(|e| format!("{}: {e}", path.display()))
}

/// The settings a run's outputs were made with, kept in the output folder, so that `--resume`
/// does not take outputs of other labels or options for done.
pub fn check_resumable(out: &Path, settings: &str, resume: bool) -> Result<(), super::Failure> {
    let file = out.join("groupseg-run.txt");
    if resume {
        if let Ok(before) = std::fs::read_to_string(&file) {
            if before != settings {
                return Err(super::Failure::Usage(format!(
                    "--resume: the outputs in {} were made with other settings ({}); drop --resume to redo them, or choose another --out",
                    out.display(),
                    file.display()
                )));
            }
        }
    }
    Ok(write_whole(&file, settings.as_bytes())?)
}

/// How a run went.
pub struct Tally {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
}

impl Tally {
    pub fn none() -> Self {
        Tally { done: 0, skipped: 0, failed: 0 }
    }

    pub fn total(&self) -> usize {
        self.done + self.skipped + self.failed
    }
}

/// A progress bar on stderr with the count, rate and time left, drawn only when stderr is a
/// terminal: piped or redirected, a run prints its lines and nothing more.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(count: usize) -> Self {
        let bar = ProgressBar::new(count as u64);
        let style = ProgressStyle::with_template("{bar:30} {pos}/{len} photos, {rate} photos/s, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1}", state.per_sec());
            });
        bar.set_style(style);
        Self { bar }
    }

    /// Prints a photo's line on stdout above the bar.
    pub fn line(&self, text: &str) {
        self.bar.suspend(|| println!("{text}"));
    }

    /// Prints a photo's error on stderr above the bar.
    pub fn error(&self, text: &str) {
        self.bar.suspend(|| eprintln!("{text}"));
    }

    pub fn step(&self) {
        self.bar.inc(1);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Runs `job` on each photo not yet done (with `resume`, a photo whose `outputs` all exist was
/// done by an earlier run), printing the line it returns or its error naming the photo.
pub fn each_photo(
    photos: &[Photo],
    resume: bool,
    outputs: impl Fn(&Photo) -> Vec<PathBuf>,
    mut job: impl FnMut(&Photo, image::RgbImage) -> Result<String, String>,
) -> Tally {
    let mut tally = Tally::none();
    let progress = Progress::new(photos.len());
    for photo in photos {
        if resume && outputs(photo).iter().all(|p| p.is_file()) {
            tally.skipped += 1;
            progress.step();
            continue;
        }
        let started = Instant::now();
        match super::read_photo(&photo.path).and_then(|image| job(photo, image)) {
            Ok(line) => {
                progress.line(&format!("{}: {line} ({} ms)", photo.path.display(), started.elapsed().as_millis()));
                tally.done += 1;
            }
            Err(e) => {
                progress.error(&format!("{}: {e}", photo.path.display()));
                tally.failed += 1;
            }
        }
        progress.step();
    }
    progress.finish();
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_k_of_n() {
        assert_eq!(parse_shard("2/4"), Ok(Shard { k: 2, n: 4 }));
        for bad in ["0/4", "5/4", "2", "a/b", "1/0", "-1/4"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }
}
