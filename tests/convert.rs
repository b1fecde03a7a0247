//! `groupseg convert`: f16 and int8 copies of a checkpoint load and segment like the original. On the
//! shapes demo's 200 held-out scenes the int8 copy's label maps must agree with the original's on at
//! least 99 % of pixels (issue 14's bar), and hold under 30 % of the original's bytes in memory.

mod common;

use std::path::Path;
use std::process::Command;

use candle_core::Device;
use groupseg::{BackendChoice, Segmenter};

/// The shapes demo as shipped (f16).
fn demo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shapes-demo")
}

/// `model` converted to `to` by the CLI, in a temporary directory.
fn converted(model: &Path, to: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let run = convert(model, to, out.path());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    out
}

fn convert(model: &Path, to: &str, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_groupseg"))
        .args(["convert", "--to", to, "--model"])
        .arg(model)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// A weights file the test keeps a handle on while the segmenter reads it.
struct Shared<T>(std::sync::Arc<T>);

impl<T: groupseg::checkpoint::weights::WeightBytes> groupseg::checkpoint::weights::WeightBytes for Shared<T> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn read_at(&self, start: usize, out: &mut [u8]) -> groupseg::Result<()> {
        self.0.read_at(start, out)
    }
    fn pass_over(&self, range: std::ops::Range<usize>) {
        self.0.pass_over(range)
    }
}

/// Share of pixels labelled alike by two segmenters over the held-out scenes (each with its labels).
fn agreement(a: &Segmenter, b: &Segmenter, scenes: usize) -> f64 {
    let dir = common::fixture("shapes-eval");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("labels.json")).unwrap()).unwrap();
    let (mut same, mut total) = (0usize, 0usize);
    for i in 0..scenes {
        let photo = image::open(dir.join(format!("{i:03}.png"))).unwrap().to_rgb8();
        let labels: Vec<String> = serde_json::from_value(meta["scenes"][i]["labels"].clone()).unwrap();
        let run = |s: &Segmenter| groupseg::block_on(s.segment(&photo, &labels, &Default::default(), &s.default_options())).unwrap();
        let (x, y) = (run(a), run(b));
        same += x.label_map.iter().zip(&y.label_map).filter(|(p, q)| p == q).count();
        total += x.label_map.len();
    }
    same as f64 / total as f64
}

#[test]
fn the_int8_shapes_demo_labels_held_out_scenes_as_the_original_does() {
    let demo = demo();
    let out = converted(&demo, "int8");
    let (before, after) = (std::fs::metadata(demo.join("model.safetensors")).unwrap().len(), std::fs::metadata(out.path().join("model.safetensors")).unwrap().len());
    assert!(after * 10 < before * 6, "int8 {after} bytes against f16 {before}");
    let original = Segmenter::load_on(&demo, &Device::Cpu, BackendChoice::Cpu).unwrap();
    let int8 = Segmenter::load_on(out.path(), &Device::Cpu, BackendChoice::Cpu).unwrap();
    // The int8 copy stays int8 in memory: its weight matrices at a byte per parameter (plus f32
    // scales, biases, norms and embeddings of one row), the original's widened to f32.
    let (held8, held32) = (int8.resident_weights().cpu, original.resident_weights().cpu);
    eprintln!("shapes demo weights held: int8 {held8} bytes, f16 original (widened to f32) {held32} bytes");
    assert!(held8 * 10 < held32 * 3, "int8 holds {held8} bytes against {held32}");
    let agree = agreement(&original, &int8, 200);
    eprintln!("shapes demo, 200 held-out scenes: int8 labels {:.3} % of pixels as the f16 original", agree * 100.0);
    assert!(agree >= 0.99, "int8 agrees on {:.2} % of pixels", agree * 100.0);

    // An int8 checkpoint is not converted again (its codes are not weights).
    let again = convert(out.path(), "f16", &out.path().join("again"));
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already in int8"), "{}", String::from_utf8_lossy(&again.stderr));
}

#[test]
fn f16_and_int8_copies_of_an_f32_checkpoint_keep_its_embeddings() {
    let fixture = common::fixture("tiny-2stage");
    let e = common::expected("tiny-2stage");
    let ids = e["input_ids"].to_dtype(candle_core::DType::U32).unwrap();
    for (to, tolerance) in [("f16", 1e-3), ("int8", 3e-2)] {
        let out = converted(&fixture, to);
        let got = common::model(out.path()).forward(&ids, &e["pixel_values"]).unwrap();
        // Embeddings are unit vectors: compare them element by element (worst seen: 2.1e-4 for f16,
        // 2.2e-2 for int8, in the text embeddings).
        common::assert_close(&format!("{to} image_embeds"), &got.image_embeds, &e["image_embeds"], tolerance);
        common::assert_close(&format!("{to} text_embeds"), &got.text_embeds, &e["text_embeds"], tolerance);
    }
    let bad = convert(&fixture, "int4", &tempfile::tempdir().unwrap().path().join("x"));
    assert_eq!(bad.status.code(), Some(2));
}

/// A weights file that records the largest read: conversion must stream, not read whole.
struct Recorded(Vec<u8>, std::sync::atomic::AtomicUsize);

impl groupseg::checkpoint::weights::WeightBytes for Recorded {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn read_at(&self, start: usize, out: &mut [u8]) -> groupseg::Result<()> {
        self.1.fetch_max(out.len(), std::sync::atomic::Ordering::Relaxed);
        out.copy_from_slice(&self.0[start..start + out.len()]);
        Ok(())
    }
}

#[test]
fn conversion_reads_blocks_and_gives_the_same_file_from_either_format() {
    use groupseg::checkpoint::convert::{convert as convert_bytes, StoredAs};
    let dir = common::fixture("tiny-2stage");
    let safetensors = std::fs::read(dir.join("model.safetensors")).unwrap();
    let bin = std::fs::read(dir.join("pytorch_model.bin")).unwrap();
    for to in [StoredAs::F16, StoredAs::Int8] {
        let source = Recorded(safetensors.clone(), Default::default());
        let a = convert_bytes(&source, to).unwrap();
        let b = convert_bytes(&bin, to).unwrap();
        assert!(a == b, "{to:?}: the safetensors and .bin originals convert differently");
        // A tensor (here at most 78 KB, the token embedding) or a block of a larger one at a time,
        // never the file (434 KB).
        let read = source.1.load(std::sync::atomic::Ordering::Relaxed);
        assert!(read <= 77_696, "{to:?}: read {read} bytes at once from a {}-byte file", safetensors.len());
    }
}

#[test]
fn a_checkpoint_loads_a_tensor_at_a_time() {
    let dir = common::fixture("tiny-2stage");
    let source = std::sync::Arc::new(Recorded(std::fs::read(dir.join("model.safetensors")).unwrap(), Default::default()));
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let tokenizer = std::fs::read(dir.join("tokenizer.json")).unwrap();
    let files = groupseg::CheckpointFiles {
        config: &config,
        weights: Box::new(Shared(source.clone())),
        tokenizer: groupseg::TokenizerFiles::Json(tokenizer.into()),
        preprocessor: None,
        weight_ranges: None,
    };
    let seg = groupseg::block_on(Segmenter::from_files_on(files, &candle_core::Device::Cpu, groupseg::BackendChoice::Cpu)).unwrap();
    assert!(seg.resident_weights().cpu > 0);
    let read = source.1.load(std::sync::atomic::Ordering::Relaxed);
    assert!(read <= 77_696, "read {read} bytes at once: more than the largest tensor");
}

/// The weights file read by ranges later (as the page reads its Cache Storage copy), recording each
/// range; `broken` fails every read, as a file gone from storage would.
struct Ranges {
    bytes: Vec<u8>,
    reads: std::sync::Mutex<Vec<std::ops::Range<usize>>>,
    broken: bool,
}

impl groupseg::checkpoint::weights::WeightRanges for Ranges {
    fn read_ranges(&self, ranges: Vec<std::ops::Range<usize>>) -> groupseg::checkpoint::weights::RangesRead<'_> {
        Box::pin(async move {
            if self.broken {
                return Err(groupseg::Error::WeightsFile("NotFoundError".into()));
            }
            self.reads.lock().unwrap().extend(ranges.iter().cloned());
            Ok(ranges.into_iter().map(|r| self.bytes[r].to_vec()).collect())
        })
    }
}

fn load_leaving_token_table(dir: &Path, broken: bool) -> (Segmenter, std::sync::Arc<Ranges>) {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let ranges = std::sync::Arc::new(Ranges { bytes: bytes.clone(), reads: Default::default(), broken });
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let tokenizer = std::fs::read(dir.join("tokenizer.json")).unwrap();
    let files = groupseg::CheckpointFiles {
        config: &config,
        weights: Box::new(bytes),
        tokenizer: groupseg::TokenizerFiles::Json(tokenizer.into()),
        preprocessor: None,
        weight_ranges: Some(Box::new(ranges.clone())),
    };
    (groupseg::block_on(Segmenter::from_files_on(files, &Device::Cpu, BackendChoice::Cpu)).unwrap(), ranges)
}

#[test]
fn a_token_table_left_in_the_file_embeds_labels_as_the_held_one_reading_only_their_rows() {
    let demo = demo();
    let out = converted(&demo, "int8");
    let labels: Vec<String> = ["red circle", "blue star", "a green square on grey"].map(String::from).to_vec();
    let templates = groupseg::Templates::default();
    // f32 (the tiny fixture), f16 (the demo as shipped) and int8 tables.
    for dir in [common::fixture("tiny-2stage").as_path(), demo.as_path(), out.path()] {
        let held = Segmenter::load_on(dir, &Device::Cpu, BackendChoice::Cpu).unwrap();
        let (left, file) = load_leaving_token_table(dir, false);
        let (h, l) = (held.resident_weights(), left.resident_weights());
        // Held, the table is in memory (widened to f32 from f16); left, it is not.
        assert!(h.in_file == 0 && l.in_file > 0 && h.cpu >= l.cpu + l.in_file, "{dir:?}: held {h:?}, left {l:?}");

        let want = groupseg::block_on(held.label_embeddings(&labels, &templates)).unwrap();
        let got = groupseg::block_on(left.label_embeddings(&labels, &templates)).unwrap();
        assert_eq!(got.to_vec2::<f32>().unwrap(), want.to_vec2::<f32>().unwrap(), "{dir:?}");
        // One read per distinct token of the prompts, each a row, and no row twice.
        let prompts: Vec<String> = labels.iter().flat_map(|l| templates.prompts(l)).collect();
        let mut tokens: Vec<u32> = left.tokenize(&prompts).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        tokens.sort_unstable();
        tokens.dedup();
        let reads = file.reads.lock().unwrap().clone();
        assert_eq!(reads.len(), tokens.len(), "{dir:?}");
        let row = reads[0].len();
        assert!(reads.iter().all(|r| r.len() == row) && left.resident_weights().cpu == l.cpu + reads.len() * row);
        // A label of the same words reads nothing more.
        groupseg::block_on(left.label_embeddings(&["blue circle".to_string()], &templates)).unwrap();
        assert_eq!(file.reads.lock().unwrap().len(), reads.len(), "{dir:?}");
    }

    // A file that cannot be read any more says so, and what to do.
    let (left, _) = load_leaving_token_table(&demo, true);
    let err = groupseg::block_on(left.label_embeddings(&labels, &templates)).unwrap_err();
    assert!(err.to_string().contains("load the model again"), "{err}");
}

#[test]
fn a_checkpoint_holding_nan_is_refused_by_convert_naming_the_tensor() {
    let fixture = common::fixture("tiny-2stage");
    let mut tensors = candle_core::safetensors::load(fixture.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let name = "vision_model.encoder.stages.0.layers.0.mlp.fc1.weight";
    let t = &tensors[name];
    let mut values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    values[3] = f32::NAN;
    let poisoned = candle_core::Tensor::from_vec(values, t.dims(), &candle_core::Device::Cpu).unwrap();
    tensors.insert(name.to_owned(), poisoned);
    let damaged = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"] {
        std::fs::copy(fixture.join(file), damaged.path().join(file)).unwrap();
    }
    candle_core::safetensors::save(&tensors, damaged.path().join("model.safetensors")).unwrap();
    for to in ["int8", "f16"] {
        let out = tempfile::tempdir().unwrap();
        let run = convert(damaged.path(), to, out.path());
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{to}: a NaN checkpoint converted");
        assert!(stderr.contains(name) && stderr.contains("NaN"), "{to}: {stderr}");
        assert!(!out.path().join("model.safetensors").exists(), "{to}: a damaged copy was written");
    }
}

/// `convert` reads the weights as the loader does: a named pipe in the weights' place is refused
/// by name at once (it was read without end).
#[test]
fn convert_refuses_weights_that_are_not_a_regular_file() {
    let fixture = common::fixture("tiny-2stage");
    let damaged = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"] {
        std::fs::copy(fixture.join(file), damaged.path().join(file)).unwrap();
    }
    let weights = damaged.path().join("model.safetensors");
    let c = std::ffi::CString::new(weights.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    let out = tempfile::tempdir().unwrap();
    let run = convert(damaged.path(), "int8", out.path());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "a pipe converted");
    assert!(stderr.contains("model.safetensors") && stderr.contains("not a regular file"), "{stderr}");
}

/// A checkpoint arriving in chunks (as the page streams a download into the module) loads reading
/// each tensor once: every piece is released by the end of the load, and the model segments as one
/// loaded from the whole file does. f32 (the fixture), f16 (the demo as shipped) and int8 copies.
#[test]
fn a_checkpoint_streamed_in_pieces_is_released_as_it_is_read_and_segments_alike() {
    use groupseg::checkpoint::weights::{ArrivingBytes, WeightBytes};
    let int8 = converted(&demo(), "int8");
    let (photo, labels) = {
        let set = common::shapes::EvalSet::load(&common::fixture("shapes-eval"));
        let scene = set.scenes.into_iter().nth(38).unwrap();
        (scene.photo, scene.labels)
    };
    // With the token table left in the file too (as the page leaves it where the file is on disk):
    // its bytes are let go when the model leaves it there, not kept to the end of the load.
    let dirs = [common::fixture("tiny-2stage"), demo(), int8.path().to_owned()];
    for (dir, leave_table) in dirs.iter().flat_map(|d| [(d.as_path(), false), (d.as_path(), true)]) {
        let file = std::fs::read(dir.join("model.safetensors")).unwrap();
        let mut arriving = ArrivingBytes::new();
        for piece in file.chunks(ArrivingBytes::PIECE) {
            arriving.push_piece(piece.to_vec());
        }
        let arriving = std::sync::Arc::new(arriving);
        let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let tokenizer = std::fs::read(dir.join("tokenizer.json")).unwrap();
        let preprocessor = std::fs::read_to_string(dir.join("preprocessor_config.json")).ok();
        let files = groupseg::CheckpointFiles {
            config: &config,
            weights: Box::new(Shared(arriving.clone())),
            tokenizer: groupseg::TokenizerFiles::Json(tokenizer.into()),
            preprocessor: preprocessor.as_deref(),
            weight_ranges: leave_table.then(|| {
                Box::new(std::sync::Arc::new(Ranges { bytes: file.clone(), reads: Default::default(), broken: false }))
                    as Box<dyn groupseg::checkpoint::weights::WeightRanges>
            }),
        };
        let streamed = groupseg::block_on(Segmenter::from_files_on(files, &Device::Cpu, BackendChoice::Cpu)).unwrap();
        // The model reads every tensor but transformers' batch-norm step counters (8 bytes each):
        // read those too, and nothing may be left.
        let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&file[8..8 + n]).unwrap();
        for (name, t) in header.as_object().unwrap() {
            if name.ends_with("num_batches_tracked") {
                let (a, b) = (t["data_offsets"][0].as_u64().unwrap() as usize, t["data_offsets"][1].as_u64().unwrap() as usize);
                arriving.read_at(8 + n + a, &mut vec![0u8; b - a]).unwrap();
            }
        }
        assert_eq!(arriving.held(), 0, "{dir:?} (table left in the file: {leave_table}): {} of {} bytes still held after the load", arriving.held(), file.len());
        assert_eq!(streamed.resident_weights().in_file > 0, leave_table, "{dir:?}");
        let whole = Segmenter::load_on(dir, &Device::Cpu, BackendChoice::Cpu).unwrap();
        let opts = whole.default_options();
        let run = |s: &Segmenter| groupseg::block_on(s.segment(&photo, &labels, &Default::default(), &opts)).unwrap().label_map;
        assert_eq!(run(&streamed), run(&whole), "{dir:?} (table left in the file: {leave_table})");
    }
}

/// `bytes` pushed through a streaming conversion in pieces of the sizes `sizes` cycles through.
fn streamed(bytes: &[u8], to: groupseg::checkpoint::convert::StoredAs, sizes: &[usize]) -> groupseg::Result<Vec<u8>> {
    let mut conversion = groupseg::checkpoint::convert::StreamingConversion::new(to, 1 << 30);
    let mut out = Vec::new();
    let mut at = 0;
    for &n in sizes.iter().cycle() {
        if at >= bytes.len() {
            break;
        }
        let end = (at + n).min(bytes.len());
        conversion.push(&bytes[at..end], &mut out)?;
        at = end;
    }
    conversion.finish()?;
    Ok(out)
}

#[test]
fn a_checkpoint_converted_as_it_arrives_is_the_file_convert_writes() {
    use groupseg::checkpoint::convert::{convert as convert_bytes, HeldBytes, StoredAs};
    let dir = common::fixture("tiny-2stage");
    let original = std::fs::read(dir.join("model.safetensors")).unwrap();
    for to in [StoredAs::F16, StoredAs::Int8] {
        let whole = convert_bytes(&original, to).unwrap();
        // Pieces that cut the length, the header, rows and tensors anywhere, and one byte at a time.
        for sizes in [&[original.len()][..], &[1], &[7, 4096, 1, 65_537], &[3, 1000]] {
            let out = streamed(&original, to, sizes).unwrap();
            assert!(out == whole, "{to:?} in pieces of {sizes:?}: not the file convert writes");
        }
        // An int8 file is kept as it is (converting its codes again would damage them).
        if to == StoredAs::Int8 {
            assert!(streamed(&whole, StoredAs::Int8, &[5000]).unwrap() == whole);
            let held = HeldBytes::from_head(&whole).unwrap();
            assert!(held.stored_int8 && held.as_it_is == held.as_int8);
        }
    }
    // What a model holds, known from the header: the f32 file's tensors in f32, and as int8 what
    // the loaded int8 copy holds.
    let data_start = 8 + u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
    assert!(HeldBytes::from_head(&original[..data_start - 1]).is_none(), "a header not all arrived");
    let held = HeldBytes::from_head(&original[..data_start]).unwrap();
    assert!(!held.stored_int8);
    assert_eq!(held.as_it_is, original.len() - data_start);
    let int8 = convert_bytes(&original, StoredAs::Int8).unwrap();
    let int8_dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"] {
        std::fs::copy(dir.join(file), int8_dir.path().join(file)).unwrap();
    }
    std::fs::write(int8_dir.path().join("model.safetensors"), &int8).unwrap();
    let seg = Segmenter::load_on(int8_dir.path(), &Device::Cpu, BackendChoice::Cpu).unwrap();
    let resident = seg.resident_weights().cpu;
    let ratio = held.as_int8 as f64 / resident as f64;
    assert!((0.9..=1.1).contains(&ratio), "estimated {} bytes held as int8, the model holds {resident}", held.as_int8);
}

#[test]
fn a_conversion_as_it_arrives_refuses_truncated_longer_nan_and_zip_files() {
    use groupseg::checkpoint::convert::StoredAs;
    let dir = common::fixture("tiny-2stage");
    let original = std::fs::read(dir.join("model.safetensors")).unwrap();
    let cut = streamed(&original[..original.len() - 10], StoredAs::Int8, &[4096]).unwrap_err().to_string();
    assert!(cut.contains("truncated"), "{cut}");
    let mut longer = original.clone();
    longer.extend_from_slice(&[0; 16]);
    let long = streamed(&longer, StoredAs::Int8, &[4096]).unwrap_err().to_string();
    assert!(long.contains("more bytes"), "{long}");
    // A header describing more than the conversion takes is refused before anything is laid out.
    let mut small = groupseg::checkpoint::convert::StreamingConversion::new(StoredAs::Int8, 1000);
    let mut out = Vec::new();
    let header_len = u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
    let big = small.push(&original[..8 + header_len], &mut out).unwrap_err().to_string();
    assert!(big.contains("more than the 1000 taken"), "{big}");
    assert!(out.is_empty(), "{} bytes laid out", out.len());
    let zip = std::fs::read(dir.join("pytorch_model.bin")).unwrap();
    let pk = streamed(&zip, StoredAs::Int8, &[4096]).unwrap_err().to_string();
    assert!(pk.contains("PyTorch zip"), "{pk}");
    let mut tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let name = "text_model.encoder.layers.0.mlp.fc2.weight";
    let t = &tensors[name];
    let mut values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    values[5] = f32::INFINITY;
    tensors.insert(name.to_owned(), candle_core::Tensor::from_vec(values, t.dims(), &Device::Cpu).unwrap());
    let file = tempfile::NamedTempFile::new().unwrap();
    candle_core::safetensors::save(&tensors, file.path()).unwrap();
    let damaged = std::fs::read(file.path()).unwrap();
    for to in [StoredAs::Int8, StoredAs::F16] {
        let e = streamed(&damaged, to, &[999]).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains("NaN or infinite"), "{to:?}: {e}");
    }
}
