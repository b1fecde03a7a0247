//! Smaller checkpoints for the same model: every float tensor in f16, or the weight matrices in int8
//! with one scale per output row (weights only, symmetric; biases, norms, embeddings of a single row
//! and group tokens stay in f16). `crate::checkpoint::weights` reads both back in f32.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::View;

use super::weights::{damaged, read_pytorch, SafetensorsIndex, WeightBytes, WeightsFormat, SCALE_SUFFIX};
use crate::error::{Error, Result};

/// What a converted checkpoint stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredAs {
    F16,
    /// Weight matrices (and convolution kernels) as int8 with per-row scales, the rest in f16.
    Int8,
}

impl std::str::FromStr for StoredAs {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f16" | "fp16" | "half" => Ok(Self::F16),
            "int8" | "q8" => Ok(Self::Int8),
            _ => Err(Error::InvalidInput(format!("{s:?} is not a checkpoint type to write: f16 or int8"))),
        }
    }
}

/// Rows a tensor needs before int8 pays: a tensor of one row (position embeddings) would share a
/// single scale across unrelated values.
const MIN_ROWS: usize = 8;

/// Whether `name` is a weight matrix or kernel this converter stores in int8.
fn quantized(name: &str, shape: &[usize]) -> bool {
    name.ends_with(".weight") && shape.len() >= 2 && shape[0] >= MIN_ROWS
}

/// Bytes converted at a time: the file's largest tensor (the token embedding, 101 MB in f32)
/// passes through in blocks of about this much (each widened to f32 as it is converted).
const BLOCK_BYTES: usize = 256 << 10;

/// One row of weights as `u8` codes round(w / scale) + 128 into `codes`; returns the row's scale,
/// max|w| / 127 (1 for a row of zeros, which then decodes to zeros without dividing by zero).
fn quantize_row(row: &[f32], codes: &mut [u8]) -> f32 {
    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if max == 0.0 { 1.0 } else { max / 127.0 };
    for (c, &w) in codes.iter_mut().zip(row) {
        *c = ((w / scale).round().clamp(-127.0, 127.0) + 128.0) as u8;
    }
    scale
}

/// Little-endian floats of `dtype` in `raw`, as f32, into one vector (no intermediate copies: in
/// the browser a block's copies are the conversion's whole working memory).
fn decode(dtype: DType, raw: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        DType::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        DType::F16 => raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        DType::BF16 => raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        _ => {
            let count = raw.len() / dtype.size_in_bytes();
            Tensor::from_raw_buffer(raw, dtype, &[count], &Device::Cpu)?.to_dtype(DType::F32)?.to_vec1::<f32>()?
        }
    })
}

/// `name`'s values, decoded, refused when any is NaN or infinite: int8 would write such a row as
/// code 0 and f16 keep it, and either copy would then load past the check a checkpoint gets at load.
fn decode_finite(name: &str, dtype: DType, raw: &[u8]) -> Result<Vec<f32>> {
    let values = decode(dtype, raw)?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Error::Weights(format!(
            "{name} holds NaN or infinite values: the checkpoint is damaged; convert an intact copy"
        )));
    }
    Ok(values)
}

/// The tensors written for one tensor of the original.
enum Written {
    /// As it was (integers).
    Same,
    F16,
    /// `u8` codes under the original's name, and the scales under `name` + [`SCALE_SUFFIX`].
    Int8,
}

/// What `stored` writes for a tensor `name` of `dtype` and `shape`.
fn written(name: &str, dtype: DType, shape: &[usize], stored: StoredAs) -> Written {
    if !dtype.is_float() {
        Written::Same
    } else if stored == StoredAs::Int8 && quantized(name, shape) {
        Written::Int8
    } else {
        Written::F16
    }
}

/// A tensor of the original: name, dtype, shape.
type Original = (String, DType, Vec<usize>);

/// Reads bytes of a tensor of the original: `(name, byte offset in the tensor, block)`.
type ReadBlock<'a> = dyn Fn(&str, usize, &mut [u8]) -> Result<()> + 'a;

/// Where a converted file is written: its length once, then bytes at their offsets. In the browser
/// an array in JavaScript's memory, so that the module's memory, which never shrinks, holds a
/// block at a time rather than the whole output.
pub trait ConvertedFile {
    fn allocate(&mut self, len: usize) -> Result<()>;
    fn write_at(&mut self, at: usize, bytes: &[u8]) -> Result<()>;
}

impl ConvertedFile for Vec<u8> {
    fn allocate(&mut self, len: usize) -> Result<()> {
        self.clear();
        self.resize(len, 0);
        Ok(())
    }

    fn write_at(&mut self, at: usize, bytes: &[u8]) -> Result<()> {
        self[at..at + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }
}

/// The checkpoint in `bytes` rewritten as `stored`: the safetensors file's bytes (see [`convert_into`]).
pub fn convert(bytes: &dyn WeightBytes, stored: StoredAs) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    convert_into(bytes, stored, &mut out)?;
    Ok(out)
}

/// Writes the checkpoint in `bytes` rewritten as `stored` into `out`. The output is laid out from
/// the header alone and each tensor converted into it a block at a time, so converting holds one
/// block besides the input and output; a PyTorch zip is read whole first.
pub fn convert_into(bytes: &dyn WeightBytes, stored: StoredAs, out: &mut dyn ConvertedFile) -> Result<()> {
    match WeightsFormat::of(bytes)? {
        WeightsFormat::Safetensors => {
            let index = SafetensorsIndex::of(bytes)?;
            let tensors = index
                .tensors()
                .into_iter()
                .map(|(name, info)| Ok((name, DType::try_from(info.dtype)?, info.shape.clone())))
                .collect::<Result<Vec<Original>>>()?;
            write(&tensors, stored, &|name, at, raw| index.read_tensor(bytes, name, at, raw), out)
        }
        WeightsFormat::PyTorch => {
            let all = read_pytorch(&bytes.to_vec()?, &Device::Cpu)?;
            let tensors: Vec<Original> = all.iter().map(|(n, t)| (n.clone(), t.dtype(), t.dims().to_vec())).collect();
            // The bytes safetensors would store for each tensor (candle's `View` of it).
            let raw: std::collections::HashMap<_, _> = all.into_iter().map(|(n, t)| (n, t.data().into_owned())).collect();
            write(
                &tensors,
                stored,
                &|name, at, block| {
                    block.copy_from_slice(&raw[name][at..at + block.len()]);
                    Ok(())
                },
                out,
            )
        }
    }
}

/// Where a converted file puts each tensor: its header, and each tensor's offset in the file.
struct Layout {
    header: Vec<u8>,
    len: usize,
    place: HashMap<String, usize>,
}

impl Layout {
    /// The converted file's layout, from the original's tensors alone.
    fn of(tensors: &[Original], stored: StoredAs) -> Result<Self> {
        let mut entries: BTreeMap<String, (DType, Vec<usize>)> = BTreeMap::new();
        for (name, dtype, shape) in tensors {
            if name.ends_with(SCALE_SUFFIX) {
                return Err(Error::InvalidInput(format!("{name}: the checkpoint is already in int8; convert its f32 or f16 original")));
            }
            match written(name, *dtype, shape, stored) {
                Written::Same => entries.insert(name.clone(), (*dtype, shape.clone())),
                Written::F16 => entries.insert(name.clone(), (DType::F16, shape.clone())),
                Written::Int8 => {
                    entries.insert(format!("{name}{SCALE_SUFFIX}"), (DType::F32, vec![shape[0]]));
                    entries.insert(name.clone(), (DType::U8, shape.clone()))
                }
            };
        }
        // Name order (any order reads back the same).
        let mut offset = 0;
        let mut infos = Vec::with_capacity(entries.len());
        let mut place = HashMap::with_capacity(entries.len());
        for (name, (dtype, shape)) in &entries {
            let size = shape.iter().product::<usize>() * dtype.size_in_bytes();
            place.insert(name.clone(), offset);
            infos.push((name.clone(), TensorInfo { dtype: (*dtype).into(), shape: shape.clone(), data_offsets: (offset, offset + size) }));
            offset += size;
        }
        let bad_header = |e: String| Error::Weights(format!("cannot write the converted checkpoint: {e}"));
        let meta = HashMap::from([("format".to_owned(), "pt".to_owned())]);
        let metadata = Metadata::new(Some(meta), infos).map_err(|e| bad_header(e.to_string()))?;
        let mut header = serde_json::to_vec(&metadata).map_err(|e| bad_header(e.to_string()))?;
        // Padded with spaces to 8 bytes, as safetensors writes it, so the data is aligned for f32.
        header.resize(header.len().next_multiple_of(8), b' ');
        let data_start = 8 + header.len();
        let place = place.into_iter().map(|(n, at)| (n, data_start + at)).collect();
        Ok(Self { len: data_start + offset, header, place })
    }

    /// Allocates `out` and writes the header.
    fn start(&self, out: &mut dyn ConvertedFile) -> Result<()> {
        out.allocate(self.len)?;
        out.write_at(0, &(self.header.len() as u64).to_le_bytes())?;
        out.write_at(8, &self.header)
    }

    fn at(&self, name: &str) -> usize {
        self.place[name]
    }
}

/// A tensor of the original as it is converted: what it becomes, and the unit it is converted by
/// (a row for int8, whose scale is the row's; an element for f16; a byte kept as it is).
struct Part<'a> {
    name: &'a str,
    dtype: DType,
    count: usize,
    written: Written,
    /// Elements a unit: a row's for int8.
    cols: usize,
}

impl<'a> Part<'a> {
    fn of((name, dtype, shape): &'a Original, stored: StoredAs) -> Self {
        let count: usize = shape.iter().product();
        let written = written(name, *dtype, shape, stored);
        let cols = match written {
            Written::Int8 => (count / shape[0]).max(1),
            _ => 1,
        };
        Self { name, dtype: *dtype, count, written, cols }
    }

    /// Bytes of the original a unit spans.
    fn unit(&self) -> usize {
        match self.written {
            Written::Same => 1,
            _ => self.cols * self.dtype.size_in_bytes(),
        }
    }

    /// Units in the whole tensor.
    fn units(&self) -> usize {
        self.count * self.dtype.size_in_bytes() / self.unit()
    }

    /// Units converted a block at a time (a block of about [`BLOCK_BYTES`], at least one unit).
    fn per_block(&self) -> usize {
        (BLOCK_BYTES / self.unit()).max(1)
    }

    /// Converts the whole units in `raw`, the first being unit `first`, into their place in `out`.
    fn convert(&self, first: usize, raw: &[u8], layout: &Layout, block: &mut Vec<u8>, out: &mut dyn ConvertedFile) -> Result<()> {
        let to = layout.at(self.name);
        match self.written {
            Written::Same => out.write_at(to + first, raw),
            Written::F16 => {
                block.clear();
                block.extend(decode_finite(self.name, self.dtype, raw)?.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()));
                out.write_at(to + 2 * first, block)
            }
            Written::Int8 => {
                let n = raw.len() / self.unit();
                block.resize(n * self.cols, 0);
                let mut scales = Vec::with_capacity(4 * n);
                for (row, codes) in decode_finite(self.name, self.dtype, raw)?.chunks_exact(self.cols).zip(block.chunks_exact_mut(self.cols)) {
                    scales.extend(quantize_row(row, codes).to_le_bytes());
                }
                out.write_at(to + first * self.cols, block)?;
                out.write_at(layout.at(&format!("{}{SCALE_SUFFIX}", self.name)) + 4 * first, &scales)
            }
        }
    }
}

/// Writes `tensors` as `stored` into `out`: the header first, from the shapes alone, then each
/// tensor's bytes at their place, read a block at a time by `read(name, byte offset in the tensor,
/// block)`.
fn write(tensors: &[Original], stored: StoredAs, read: &ReadBlock, out: &mut dyn ConvertedFile) -> Result<()> {
    let layout = Layout::of(tensors, stored)?;
    layout.start(out)?;
    // One block in, one out.
    let (mut raw, mut block) = (Vec::new(), Vec::new());
    for tensor in tensors {
        let part = Part::of(tensor, stored);
        for first in (0..part.units()).step_by(part.per_block()) {
            let n = part.per_block().min(part.units() - first);
            raw.resize(n * part.unit(), 0);
            read(part.name, first * part.unit(), &mut raw)?;
            part.convert(first, &raw, &layout, &mut block, out)?;
        }
    }
    Ok(())
}

/// A safetensors file converted as its bytes arrive, in the file's order (a download, a Blob's
/// stream): neither the original nor more than a block of it is ever held, only the converted
/// file in `out`. A file already in int8 is written as it is.
pub struct StreamingConversion {
    stored: StoredAs,
    /// The longest file taken: a header describing more is refused before anything is laid out.
    max_len: usize,
    state: Stream,
    /// Bytes received and not yet converted; the first is the file's byte `at`.
    pending: Vec<u8>,
    at: usize,
    block: Vec<u8>,
}

enum Stream {
    /// Until the header has arrived.
    Header,
    /// Tensors by where they lie in the original, with their first byte there; `next` the one
    /// being converted and `done` its units converted.
    Converting { layout: Layout, tensors: Vec<(Original, usize)>, next: usize, done: usize, len: usize },
    /// Already in int8: copied as it comes.
    AsItIs { len: usize },
}

impl StreamingConversion {
    /// Converts to `stored` a file of at most `max_len` bytes.
    pub fn new(stored: StoredAs, max_len: usize) -> Self {
        Self { stored, max_len, state: Stream::Header, pending: Vec::new(), at: 0, block: Vec::new() }
    }

    /// Whether the file, as its header says, is already in int8 (and is then written as it is);
    /// `None` until the header has arrived.
    pub fn already_int8(&self) -> Option<bool> {
        match self.state {
            Stream::Header => None,
            Stream::AsItIs { .. } => Some(true),
            Stream::Converting { .. } => Some(false),
        }
    }

    /// Converts what `bytes`, the file's next bytes, complete.
    pub fn push(&mut self, bytes: &[u8], out: &mut dyn ConvertedFile) -> Result<()> {
        self.pending.extend_from_slice(bytes);
        if matches!(self.state, Stream::Header) && !self.read_header(out)? {
            return Ok(());
        }
        match &mut self.state {
            Stream::Header => Ok(()),
            Stream::AsItIs { len } => {
                if self.at + self.pending.len() > *len {
                    return Err(longer(*len));
                }
                out.write_at(self.at, &self.pending)?;
                self.at += self.pending.len();
                self.pending.clear();
                Ok(())
            }
            Stream::Converting { layout, tensors, next, done, len } => {
                if self.at + self.pending.len() > *len {
                    return Err(longer(*len));
                }
                let mut used = 0;
                while let Some((tensor, start)) = tensors.get(*next) {
                    let part = Part::of(tensor, self.stored);
                    // Bytes between tensors (none in files safetensors writes) are passed over.
                    let here = self.at + used;
                    let first = start + *done * part.unit();
                    if here < first {
                        used += (first - here).min(self.pending.len() - used);
                        if self.at + used < first {
                            break;
                        }
                    }
                    let units = ((self.pending.len() - used) / part.unit()).min(part.units() - *done);
                    for from in (0..units).step_by(part.per_block()) {
                        let n = part.per_block().min(units - from);
                        let raw = &self.pending[used + from * part.unit()..used + (from + n) * part.unit()];
                        part.convert(*done + from, raw, layout, &mut self.block, out)?;
                    }
                    used += units * part.unit();
                    *done += units;
                    if *done < part.units() {
                        break;
                    }
                    *next += 1;
                    *done = 0;
                }
                self.pending.drain(..used);
                self.at += used;
                Ok(())
            }
        }
    }

    /// Checks that the whole file arrived and was converted.
    pub fn finish(self) -> Result<()> {
        let whole = match &self.state {
            Stream::Header => false,
            Stream::AsItIs { len } => self.at == *len,
            Stream::Converting { tensors, next, len, .. } => *next == tensors.len() && self.at + self.pending.len() == *len,
        };
        if !whole {
            return Err(Error::Weights(format!("the safetensors file is truncated: it ended after {} bytes", self.at + self.pending.len())));
        }
        Ok(())
    }

    /// Reads the header once it has all arrived, laying out `out`; false while it has not.
    fn read_header(&mut self, out: &mut dyn ConvertedFile) -> Result<bool> {
        if self.pending.len() >= 4 && self.pending.starts_with(b"PK\x03\x04") {
            return Err(Error::InvalidInput("a PyTorch zip (pytorch_model.bin) cannot be converted as it arrives: convert it whole".into()));
        }
        let Some(first) = self.pending.first_chunk::<8>() else { return Ok(false) };
        let header_len = SafetensorsIndex::header_len(*first)?;
        if self.pending.len() < 8 + header_len {
            return Ok(false);
        }
        let index = SafetensorsIndex::from_header(&self.pending[8..8 + header_len])?;
        let len = index.file_len();
        if len > self.max_len {
            return Err(Error::Weights(format!(
                "the weights file's header describes {len} bytes, more than the {} taken: use a smaller model",
                self.max_len
            )));
        }
        let mut tensors = index
            .tensors()
            .into_iter()
            .map(|(name, info)| Ok(((name, DType::try_from(info.dtype)?, info.shape.clone()), index.data_start() + info.data_offsets.0)))
            .collect::<Result<Vec<(Original, usize)>>>()?;
        if tensors.iter().any(|((name, ..), _)| name.ends_with(SCALE_SUFFIX)) {
            out.allocate(len)?;
            self.state = Stream::AsItIs { len };
            return Ok(true);
        }
        tensors.sort_by_key(|(_, start)| *start);
        for pair in tensors.windows(2) {
            let ((name, dtype, shape), start) = &pair[0];
            if start + shape.iter().product::<usize>() * dtype.size_in_bytes() > pair[1].1 {
                return Err(damaged(format!("{name} overlaps {}", pair[1].0 .0)));
            }
        }
        let originals: Vec<Original> = tensors.iter().map(|(t, _)| t.clone()).collect();
        let layout = Layout::of(&originals, self.stored)?;
        layout.start(out)?;
        self.pending.drain(..8 + header_len);
        self.at = 8 + header_len;
        self.state = Stream::Converting { layout, tensors, next: 0, done: 0, len };
        Ok(true)
    }
}

fn longer(len: usize) -> Error {
    damaged(format!("more bytes arrived than the {len} its header describes"))
}

/// Bytes a model built from a checkpoint holds in memory for its weights, as the checkpoint is and
/// kept as int8: floats widen to f32, int8 codes stay bytes with an f32 scale a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldBytes {
    pub as_it_is: usize,
    pub as_int8: usize,
    /// Whether the checkpoint is stored in int8 already.
    pub stored_int8: bool,
}

impl HeldBytes {
    /// From a safetensors file's first bytes, when they hold its whole header (`None` before, or
    /// for a file that is not safetensors).
    pub fn from_head(head: &[u8]) -> Option<Self> {
        let header_len = SafetensorsIndex::header_len(*head.first_chunk::<8>()?).ok()?;
        let index = SafetensorsIndex::from_header(head.get(8..8 + header_len)?).ok()?;
        let tensors = index.tensors();
        let stored_int8 = tensors.iter().any(|(name, _)| name.ends_with(SCALE_SUFFIX));
        let (mut as_it_is, mut as_int8) = (0, 0);
        for (name, info) in &tensors {
            let count: usize = info.shape.iter().product();
            let dtype = DType::try_from(info.dtype).ok()?;
            let held = if dtype.is_float() { 4 * count } else { count * dtype.size_in_bytes() };
            as_it_is += held;
            as_int8 += if !stored_int8 && dtype.is_float() && quantized(name, &info.shape) { count + 4 * info.shape[0] } else { held };
        }
        Some(Self { as_it_is, as_int8, stored_int8 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_rows_round_trip_within_half_a_step() {
        let w = [[0.5f32, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 2.0, -3.0]];
        for (i, row) in w.iter().enumerate() {
            let mut codes = [0u8; 3];
            let scale = quantize_row(row, &mut codes);
            if i == 1 {
                assert_eq!(codes, [128, 128, 128], "a zero row stays zeros");
            }
            for (&c, &orig) in codes.iter().zip(row) {
                let back = (c as f32 - 128.0) * scale;
                assert!((back - orig).abs() <= scale / 2.0 + 1e-7, "{back} vs {orig} (step {scale})");
            }
        }
        assert!("int9".parse::<StoredAs>().is_err());
    }
}
