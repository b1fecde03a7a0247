//! Batches on the command line: folders walked in a stable order with photos found by content,
//! shards of a run, an interrupted run resumed, and progress shown on a terminal only.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fixture;

fn groupseg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_groupseg"))
}

/// `count` held-out scenes copied into `dir`.
fn scenes(dir: &Path, count: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        std::fs::copy(fixture(&format!("shapes-eval/{i:03}.png")), dir.join(format!("{i:03}.png"))).unwrap();
    }
    dir.to_owned()
}

fn segment(photos: &[&Path], out: &Path) -> Command {
    let mut c = groupseg();
    c.arg("segment").args(photos).args(["--backend", "cpu", "--labels", "red circle, blue square, green triangle", "--out"]).arg(out);
    c
}

/// The photos a run named, in the order it printed them.
fn done(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout).lines().map(|l| l.split(": ").next().unwrap().to_owned()).collect()
}

#[test]
fn folders_are_walked_in_order_and_photos_found_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let top = scenes(&dir.path().join("photos"), 3);
    scenes(&top.join("more"), 2);
    // A PNG named as text is a photo; text named as a PNG is not.
    std::fs::rename(top.join("001.png"), top.join("001.txt")).unwrap();
    std::fs::write(top.join("notes.png"), "not a photo").unwrap();
    let run = segment(&[&top], &dir.path().join("out")).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let p = |name: &str| top.join(name).display().to_string();
    assert_eq!(done(&run.stdout), [p("000.png"), p("001.txt"), p("002.png")]);
    assert!(stderr.contains("1 file in the folders is not a photo"), "{stderr}");
    assert!(stderr.contains("its subfolders are left out (--recursive to walk them)"), "{stderr}");

    let run = segment(&[&top], &dir.path().join("out")).arg("--recursive").output().unwrap();
    assert!(run.status.success());
    // more/000.png and more/001.png share names with photos above: numbered, not overwritten.
    assert_eq!(done(&run.stdout), [p("000.png"), p("001.txt"), p("002.png"), p("more/000.png"), p("more/001.png")]);
    for stem in ["000", "001", "002", "000-2", "001-2"] {
        assert!(dir.path().join(format!("out/{stem}.json")).is_file(), "{stem}");
    }

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let run = segment(&[&empty], &dir.path().join("out")).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("empty: no photo in this folder") && stderr.contains("no photo to segment"), "{stderr}");
    // Beside a photo, an empty folder fails by name and the photo is done.
    let run = segment(&[&empty, &top.join("000.png")], &dir.path().join("out")).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("empty: no photo in this folder") && stderr.contains("2 photos: 1 done, 0 skipped (done before), 1 failed"), "{stderr}");
}

#[test]
fn shards_split_the_run_and_a_bad_shard_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let top = scenes(&dir.path().join("photos"), 5);
    let mut all = Vec::new();
    for k in 1..=2 {
        let run = segment(&[&top], &dir.path().join("out")).arg("--shard").arg(format!("{k}/2")).output().unwrap();
        assert!(run.status.success());
        all.push(done(&run.stdout));
    }
    let p = |i: usize| top.join(format!("{i:03}.png")).display().to_string();
    assert_eq!(all, [vec![p(0), p(2), p(4)], vec![p(1), p(3)]]);
    for bad in ["0/2", "3/2", "2"] {
        let run = segment(&[&top], &dir.path().join("out")).args(["--shard", bad]).output().unwrap();
        assert_eq!(run.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&run.stderr).contains("is not K/N with 1 ≤ K ≤ N"), "{bad}");
    }
    // A shard with nothing to do (more shards than photos) is not an error.
    let run = segment(&[&top], &dir.path().join("out")).args(["--shard", "7/8"]).output().unwrap();
    assert!(run.status.success());
}

#[test]
fn an_interrupted_batch_resumes_without_redoing_finished_photos() {
    let dir = tempfile::tempdir().unwrap();
    let photos = scenes(&dir.path().join("photos"), 40);
    let out = dir.path().join("out");
    let coco = dir.path().join("coco.json");
    let mut first = segment(&[&photos], &out).arg("--coco").arg(&coco).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Killed, as a machine going down would, once a few photos are done.
    let parts = |out: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(out)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(".coco.json")).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let started = Instant::now();
    while parts(&out).len() < 5 {
        assert!(started.elapsed() < Duration::from_secs(300), "no photo done in 5 minutes");
        assert!(first.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let finished = parts(&out);
    assert!(finished.len() < 40, "interrupted before the end");
    let stamps: Vec<_> = finished.iter().map(|p| std::fs::metadata(p).unwrap().modified().unwrap()).collect();

    let resumed = segment(&[&photos], &out).arg("--coco").arg(&coco).arg("--resume").output().unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    let skipped = finished.len();
    assert!(stderr.contains(&format!("40 photos: {} done, {skipped} skipped (done before), 0 failed", 40 - skipped)), "{stderr}");
    assert_eq!(done(&resumed.stdout).len(), 40 - skipped, "only the photos not done are redone");
    for (p, t) in finished.iter().zip(&stamps) {
        assert_eq!(std::fs::metadata(p).unwrap().modified().unwrap(), *t, "{} was written again", p.display());
    }
    // No half-written file is left, and the COCO file is the uninterrupted run's.
    assert!(std::fs::read_dir(&out).unwrap().all(|e| !e.unwrap().path().to_string_lossy().ends_with(".part")));
    let whole = dir.path().join("whole.json");
    assert!(segment(&[&photos], &dir.path().join("whole")).arg("--coco").arg(&whole).output().unwrap().status.success());
    assert_eq!(std::fs::read(&coco).unwrap(), std::fs::read(&whole).unwrap());

    // Other labels are not taken for done.
    let other = groupseg()
        .arg("segment")
        .arg(&photos)
        .args(["--backend", "cpu", "--labels", "red circle", "--resume", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other.stderr).contains("were made with other settings"));
    // Nor are other prompt templates.
    let templates = segment(&[&photos], &out).args(["--templates", "nvlabs", "--resume"]).output().unwrap();
    assert_eq!(templates.status.code(), Some(2), "{}", String::from_utf8_lossy(&templates.stderr));
}

#[test]
fn progress_shows_on_a_terminal_and_nothing_extra_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let photos = scenes(&dir.path().join("photos"), 3);
    let piped = segment(&[&photos], &dir.path().join("out")).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&piped.stdout), String::from_utf8_lossy(&piped.stderr));
    assert_eq!(stdout.lines().count(), 3, "one line a photo:\n{stdout}");
    assert!(!stderr.contains("photos,") && !stderr.contains('\r') && !stderr.contains('\x1b'), "{stderr}");

    // On a terminal (util-linux `script` gives the run one), the bar is drawn and cleared.
    let cmd = format!(
        "{} segment {} --backend cpu --labels 'red circle' --out {}",
        env!("CARGO_BIN_EXE_groupseg"),
        photos.display(),
        dir.path().join("out2").display()
    );
    let tty = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{shown}");
    assert!(shown.contains("/3 photos,") && shown.contains("left"), "{shown}");
}
