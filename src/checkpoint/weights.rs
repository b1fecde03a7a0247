//! Reading checkpoint weights: `model.safetensors` or PyTorch's `pytorch_model.bin` (a zip of
//! pickles), from bytes so that the browser, which has no file system, uses the same code.
//! Tensors may be stored in f32, f16 or bf16, or in int8 with per-row scales (`groupseg convert`);
//! the model computes in f32 and keeps int8 weight matrices as int8 (`super::matrix`).

use std::collections::HashMap;
use std::future::Future;
use std::io::{Cursor, Read};
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype;

use crate::error::{Error, Result};

/// Suffix of the per-row scales of a tensor stored in int8 (written by `crate::checkpoint::convert`): the
/// tensor itself is then stored as `u8` = round(w / scale) + 128, and read back as
/// `(u8 - 128) × scale` in f32.
pub const SCALE_SUFFIX: &str = ".q8_scale";

/// The two container formats a checkpoint's weights come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    Safetensors,
    PyTorch,
}

impl WeightsFormat {
    /// Recognises the format from the first bytes: zip archives start with `PK`, safetensors with
    /// a little-endian header length followed by `{`.
    pub fn sniff(bytes: &[u8]) -> Result<Self> {
        if bytes.starts_with(b"PK\x03\x04") {
            return Ok(Self::PyTorch);
        }
        if bytes.len() >= 9 && bytes[8] == b'{' {
            return Ok(Self::Safetensors);
        }
        Err(Error::Weights(
            "the weights file is neither safetensors nor a PyTorch zip checkpoint (pytorch_model.bin)".into(),
        ))
    }

    /// The format of the file `bytes` holds, from its first bytes.
    pub fn of(bytes: &dyn WeightBytes) -> Result<Self> {
        let mut head = [0u8; 9];
        let n = head.len().min(bytes.len());
        bytes.read_at(0, &mut head[..n])?;
        Self::sniff(&head[..n])
    }
}

/// A weights file, read a piece at a time: bytes in memory, or (in the browser) an array left in
/// JavaScript's memory. A WebAssembly memory never shrinks, so a file copied into it whole would
/// keep the page that much larger after its tensors were parsed out; read a tensor at a time, the
/// page holds the weights and one tensor in transit.
pub trait WeightBytes: Send + Sync {
    /// The file's length in bytes.
    fn len(&self) -> usize;

    /// `out.len()` bytes from offset `start` (the caller keeps within [`len`](Self::len)).
    fn read_at(&self, start: usize, out: &mut [u8]) -> Result<()>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Says that bytes `range` will not be read (a tensor left in the file): where the file is
    /// held in pieces, a piece nothing else needs goes now rather than with the file.
    fn pass_over(&self, _range: Range<usize>) {}

    /// The whole file (a PyTorch zip is read as one).
    fn to_vec(&self) -> Result<Vec<u8>> {
        let mut all = vec![0u8; self.len()];
        self.read_at(0, &mut all)?;
        Ok(all)
    }
}

/// Bytes in memory: a file read whole, or one built into the binary.
impl<T: AsRef<[u8]> + Send + Sync> WeightBytes for T {
    fn len(&self) -> usize {
        self.as_ref().len()
    }

    fn read_at(&self, start: usize, out: &mut [u8]) -> Result<()> {
        out.copy_from_slice(&self.as_ref()[start..start + out.len()]);
        Ok(())
    }
}

/// A weights file held in the pieces it arrived in (the package gathers a download's chunks into
/// pieces of [`ArrivingBytes::PIECE`]), each released as soon as every byte of it has been read. A model is
/// built by reading each tensor once, so building one from it holds the file and the model together
/// only piece by piece: in the browser, a download streamed into the module costs about the
/// model's memory instead of the file's and the model's.
pub struct ArrivingBytes {
    pieces: std::sync::Mutex<Vec<Piece>>,
    len: usize,
}

struct Piece {
    start: usize,
    len: usize,
    /// None once released.
    bytes: Option<Vec<u8>>,
    /// The parts read so far (offsets in the piece), sorted and merged.
    read: Vec<Range<usize>>,
}

impl Piece {
    fn mark_read(&mut self, r: Range<usize>) {
        self.read.push(r);
        self.read.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(self.read.len());
        for r in self.read.drain(..) {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        self.read = merged;
        if self.read.len() == 1 && self.read[0] == (0..self.len) {
            self.bytes = None;
        }
    }
}

impl Default for ArrivingBytes {
    fn default() -> Self {
        Self::new()
    }
}

impl ArrivingBytes {
    /// Bytes of a piece as the package hands them over (its `WEIGHTS_PIECE`): small enough to
    /// release the file gradually, large enough that a freed piece serves a later allocation.
    pub const PIECE: usize = 1 << 20;

    pub fn new() -> Self {
        Self { pieces: std::sync::Mutex::new(Vec::new()), len: 0 }
    }

    /// Appends the file's next bytes as a piece of their own, without copying them (the browser
    /// hands over pieces of [`ArrivingBytes::PIECE`] gathered on its side).
    pub fn push_piece(&mut self, piece: Vec<u8>) {
        if piece.is_empty() {
            return;
        }
        let len = piece.len();
        let pieces = self.pieces.get_mut().unwrap_or_else(|p| p.into_inner());
        pieces.push(Piece { start: self.len, len, bytes: Some(piece), read: Vec::new() });
        self.len += len;
    }

    /// Bytes still held (not yet released).
    pub fn held(&self) -> usize {
        let pieces = self.pieces.lock().unwrap_or_else(|p| p.into_inner());
        pieces.iter().filter(|p| p.bytes.is_some()).map(|p| p.len).sum()
    }
}

impl WeightBytes for ArrivingBytes {
    fn len(&self) -> usize {
        self.len
    }

    fn pass_over(&self, range: Range<usize>) {
        let mut pieces = self.pieces.lock().unwrap_or_else(|p| p.into_inner());
        let first = pieces.partition_point(|p| p.start + p.len <= range.start);
        for piece in pieces[first..].iter_mut().take_while(|p| p.start < range.end) {
            let (from, to) = (range.start.max(piece.start) - piece.start, range.end.min(piece.start + piece.len) - piece.start);
            piece.mark_read(from..to);
        }
    }

    fn read_at(&self, start: usize, out: &mut [u8]) -> Result<()> {
        let end = start + out.len();
        if end > self.len {
            return Err(Error::Weights(format!("bytes {start}..{end} of a {}-byte weights file were asked for", self.len)));
        }
        let mut pieces = self.pieces.lock().unwrap_or_else(|p| p.into_inner());
        let mut i = pieces.partition_point(|p| p.start + p.len <= start);
        let mut at = start;
        while at < end {
            let piece = &mut pieces[i];
            let (from, to) = (at - piece.start, (end - piece.start).min(piece.len));
            let Some(bytes) = &piece.bytes else {
                return Err(Error::Weights(format!(
                    "bytes {start}..{end} of the weights file were read again after they were released (a bug: please report it)"
                )));
            };
            out[at - start..at - start + to - from].copy_from_slice(&bytes[from..to]);
            piece.mark_read(from..to);
            at += to - from;
            i += 1;
        }
        Ok(())
    }
}

/// The bytes of each range asked of a [`WeightRanges`], in order, once read.
pub type RangesRead<'a> = Pin<Box<dyn Future<Output = Result<Vec<Vec<u8>>>> + 'a>>;

/// A weights file read by byte ranges after the model is built, without blocking: in the browser the
/// copy in Cache Storage, which stays on disk (see `super::token_rows`).
pub trait WeightRanges {
    fn read_ranges(&self, ranges: Vec<Range<usize>>) -> RangesRead<'_>;
}

/// A file shared with whoever else reads it.
impl<T: WeightRanges + ?Sized> WeightRanges for Arc<T> {
    fn read_ranges(&self, ranges: Vec<Range<usize>>) -> RangesRead<'_> {
        self.as_ref().read_ranges(ranges)
    }
}

/// Where a tensor's data lies in a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorLocation {
    /// Offset of its first byte in the file.
    pub start: usize,
    pub len: usize,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

/// A safetensors file's header: where each tensor's bytes lie in the file.
pub struct SafetensorsIndex {
    metadata: Metadata,
    /// Where the tensors' data starts in the file (after the length and the header).
    data_start: usize,
}

/// A safetensors file that does not hold what its header says, `why` in brackets.
pub(crate) fn damaged(why: String) -> Error {
    Error::Weights(format!("the safetensors file is damaged or truncated ({why})"))
}

impl SafetensorsIndex {
    /// The largest header read: a full-size GroupViT's is 62 KB.
    const MAX_HEADER: usize = 100 << 20;

    /// Reads and checks the header of the safetensors file `bytes`, so that a truncated download is
    /// reported as such before any tensor is read.
    pub fn of(bytes: &dyn WeightBytes) -> Result<Self> {
        let mut len = [0u8; 8];
        if bytes.len() < 8 {
            return Err(damaged(format!("{} bytes", bytes.len())));
        }
        bytes.read_at(0, &mut len)?;
        let header_len = Self::header_len(len)?;
        if 8 + header_len > bytes.len() {
            return Err(damaged(format!("a {header_len}-byte header in a {}-byte file", bytes.len())));
        }
        let mut header = vec![0u8; header_len];
        bytes.read_at(8, &mut header)?;
        let index = Self::from_header(&header)?;
        if index.file_len() != bytes.len() {
            return Err(damaged(format!("its header describes a {}-byte file, the file has {}", index.file_len(), bytes.len())));
        }
        Ok(index)
    }

    /// The header's length from the file's first 8 bytes, refused past [`Self::MAX_HEADER`].
    pub fn header_len(first: [u8; 8]) -> Result<usize> {
        let header_len = u64::from_le_bytes(first);
        if header_len > Self::MAX_HEADER as u64 {
            return Err(damaged(format!("a {header_len}-byte header")));
        }
        Ok(header_len as usize)
    }

    /// The index of a file whose header (the JSON after the length) is `header`.
    pub fn from_header(header: &[u8]) -> Result<Self> {
        let metadata: Metadata = serde_json::from_slice(header).map_err(|e| damaged(e.to_string()))?;
        Ok(Self { metadata, data_start: 8 + header.len() })
    }

    /// Where the tensors' data starts in the file.
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    /// The file's length as the header describes it.
    pub fn file_len(&self) -> usize {
        // Saturating: a 32-bit address space cannot hold what a hostile header may describe.
        self.data_start.saturating_add(self.metadata.tensors().values().map(|t| t.data_offsets.1).max().unwrap_or(0))
    }

    /// Every tensor: name, dtype and shape.
    pub fn tensors(&self) -> Vec<(String, &TensorInfo)> {
        self.metadata.tensors().into_iter().collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.metadata.info(name).is_some()
    }

    /// Where tensor `name`'s data lies in the file.
    pub fn locate(&self, name: &str) -> Option<TensorLocation> {
        let info = self.metadata.info(name)?;
        let (start, end) = info.data_offsets;
        Some(TensorLocation { start: self.data_start + start, len: end - start, dtype: info.dtype, shape: info.shape.clone() })
    }

    /// `out.len()` bytes of tensor `name`'s data from byte `at`, read from `bytes` (the file this
    /// index was read from).
    pub fn read_tensor(&self, bytes: &dyn WeightBytes, name: &str, at: usize, out: &mut [u8]) -> Result<()> {
        let info = self.metadata.info(name).ok_or_else(|| Error::Weights(format!("no tensor {name} in the checkpoint")))?;
        let (start, end) = info.data_offsets;
        if at + out.len() > end - start {
            return Err(Error::Weights(format!("{name}: bytes {at}..{} of {}", at + out.len(), end - start)));
        }
        bytes.read_at(self.data_start + start + at, out)
    }

    /// The tensor `name`, read from `bytes` (the file this index was read from).
    pub fn load(&self, bytes: &dyn WeightBytes, name: &str, device: &Device) -> candle_core::Result<Tensor> {
        let Some(info) = self.metadata.info(name) else {
            return Err(candle_core::Error::CannotFindTensor { path: name.to_string() }.bt());
        };
        let dtype = DType::try_from(info.dtype)?;
        let len = info.data_offsets.1 - info.data_offsets.0;
        if dtype == DType::F32 && cfg!(target_endian = "little") && len % 4 == 0 {
            // Read straight into the tensor's storage: the largest tensor (the token table, 101 MB
            // in f32) is then never held twice while it is read.
            let mut values = vec![0f32; len / 4];
            self.read_tensor(bytes, name, 0, bytemuck::cast_slice_mut(&mut values)).map_err(candle_core::Error::wrap)?;
            return Tensor::from_vec(values, info.shape.as_slice(), device);
        }
        let mut raw = vec![0u8; len];
        self.read_tensor(bytes, name, 0, &mut raw).map_err(candle_core::Error::wrap)?;
        if dtype == DType::U8 {
            // Codes become the tensor's storage as read, without a second copy.
            return Tensor::from_vec(raw, info.shape.as_slice(), device);
        }
        Tensor::from_raw_buffer(&raw, dtype, &info.shape, device)
    }
}

/// A safetensors file as a candle backend: each tensor read from the file when a module asks.
struct Safetensors {
    bytes: Arc<dyn WeightBytes>,
    index: Arc<SafetensorsIndex>,
}

impl SimpleBackend for Safetensors {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!("tensor {name} has shape {:?}, the model expects {:?}", t.dims(), s.dims());
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.index.load(&*self.bytes, name, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.index.contains(name)
    }
}

/// A checkpoint's weights, read from a file's bytes: every tensor is converted to f32 when a module
/// fetches it, and the bytes handed out are counted (what a model built from them holds).
pub struct Weights {
    vb: VarBuilder<'static>,
    fetched: Arc<AtomicUsize>,
    /// A safetensors file's header (a PyTorch zip has no tensor at a fixed place), and its bytes.
    index: Option<(Arc<SafetensorsIndex>, Arc<dyn WeightBytes>)>,
}

impl Weights {
    pub fn from_bytes(bytes: Vec<u8>, device: &Device) -> Result<Self> {
        Self::read(Box::new(bytes), device)
    }

    /// The weights in `bytes`, which stay where they are until a module asks for a tensor
    /// (safetensors; a PyTorch zip is read whole).
    pub fn read(bytes: Box<dyn WeightBytes>, device: &Device) -> Result<Self> {
        let (inner, index): (Box<dyn SimpleBackend>, _) = match WeightsFormat::of(bytes.as_ref())? {
            WeightsFormat::Safetensors => {
                let index = Arc::new(SafetensorsIndex::of(bytes.as_ref())?);
                let bytes: Arc<dyn WeightBytes> = Arc::from(bytes);
                (Box::new(Safetensors { bytes: Arc::clone(&bytes), index: Arc::clone(&index) }), Some((index, bytes)))
            }
            WeightsFormat::PyTorch => (Box::new(read_pytorch(&bytes.to_vec()?, device)?), None),
        };
        let fetched = Arc::new(AtomicUsize::new(0));
        let backend = Counting { inner, fetched: Arc::clone(&fetched) };
        Ok(Self { vb: VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone()), fetched, index })
    }

    /// Where tensor `name` lies in the file, for a safetensors file.
    pub fn locate(&self, name: &str) -> Option<TensorLocation> {
        self.index.as_ref()?.0.locate(name)
    }

    /// Leaves the tensor at `at` in the file: it is not read, and the memory of the file's bytes
    /// there is let go now (see [`WeightBytes::pass_over`]).
    pub fn leave_in_file(&self, at: &TensorLocation) {
        if let Some((_, bytes)) = &self.index {
            bytes.pass_over(at.start..at.start + at.len);
        }
    }

    /// The root of the checkpoint's names.
    pub fn var_builder(&self) -> VarBuilder<'static> {
        self.vb.clone()
    }

    /// Bytes of all tensors fetched so far.
    pub fn fetched_bytes(&self) -> usize {
        self.fetched.load(Ordering::Relaxed)
    }
}

/// Builds a `VarBuilder` over the weights in `bytes`, converting every tensor to f32 on use.
pub fn var_builder(bytes: Vec<u8>, device: &Device) -> Result<VarBuilder<'static>> {
    Ok(Weights::from_bytes(bytes, device)?.var_builder())
}

/// Counts the bytes of the tensors it hands out.
struct Counting {
    inner: Box<dyn SimpleBackend>,
    fetched: Arc<AtomicUsize>,
}

impl Counting {
    /// Counts a fetched tensor, refusing one with NaN or infinite values (a damaged checkpoint would
    /// otherwise segment everything as background without a word).
    fn count(&self, name: &str, t: candle_core::Result<Tensor>) -> candle_core::Result<Tensor> {
        let t = t?;
        // One pass: a sum is finite exactly when every value is (weights never approach f32's range).
        if t.dtype().is_float() && !t.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?.is_finite() {
            candle_core::bail!("tensor {name} holds NaN or infinite values: the weights file is damaged");
        }
        self.fetched.fetch_add(t.elem_count() * t.dtype().size_in_bytes(), Ordering::Relaxed);
        Ok(t)
    }
}

impl Counting {
    /// The tensor `name`, dequantized when the checkpoint stores it in int8 (see [`SCALE_SUFFIX`])
    /// unless asked for `u8`: then its codes as stored (`super::matrix::Matrix` keeps them so).
    fn fetch(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let scale_name = format!("{name}{SCALE_SUFFIX}");
        if !self.inner.contains_tensor(&scale_name) {
            return self.inner.get_unchecked(name, dtype, dev);
        }
        let q = self.inner.get_unchecked(name, DType::U8, dev)?;
        if dtype == DType::U8 {
            return Ok(q);
        }
        let scale = self.inner.get_unchecked(&scale_name, DType::F32, dev)?;
        let rows = q.dim(0)?;
        if scale.dims() != [rows] {
            candle_core::bail!("{scale_name} has shape {:?}, not one scale per row of {name} ({rows})", scale.dims());
        }
        dequantize_rows(&q, &scale)?.to_dtype(dtype)
    }
}

/// int8 codes `(rows, …)` as stored (`u8`, offset by 128) back to f32 with one scale per row.
pub fn dequantize_rows(codes: &Tensor, scales: &Tensor) -> candle_core::Result<Tensor> {
    let mut per_row = vec![codes.dim(0)?];
    per_row.resize(codes.rank(), 1);
    (codes.to_dtype(DType::F32)? - 128.0)?.broadcast_mul(&scales.reshape(per_row)?)
}

impl SimpleBackend for Counting {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.fetch(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!("tensor {name} has shape {:?}, the model expects {:?}", t.dims(), s.dims());
        }
        self.count(name, Ok(t))
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.count(name, self.fetch(name, dtype, dev))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(name)
    }
}

fn pth_error(e: impl std::fmt::Display) -> Error {
    Error::Weights(format!("the PyTorch checkpoint is damaged or truncated ({e})"))
}

/// Reads every tensor of a `torch.save` zip archive held in memory.
pub fn read_pytorch(bytes: &[u8], device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(pth_error)?;
    let pickle_name = zip
        .file_names()
        .filter_map(|n| n.ok())
        .find(|n| n.ends_with("data.pkl"))
        .map(|n| n.into_owned())
        .ok_or_else(|| pth_error("no data.pkl inside"))?;
    let dir = std::path::PathBuf::from(pickle_name.trim_end_matches(".pkl"));
    let mut pickle = Vec::new();
    zip.by_name(&pickle_name).map_err(pth_error)?.read_to_end(&mut pickle).map_err(pth_error)?;
    let mut stack = Stack::empty();
    stack.read_loop(&mut Cursor::new(pickle))?;
    let entries = match stack.finalize()? {
        Object::Dict(entries) => entries,
        _ => return Err(pth_error("data.pkl does not hold a state dict")),
    };
    let mut tensors = HashMap::with_capacity(entries.len());
    for (name, value) in entries {
        // Non-tensor entries (e.g. metadata) are skipped, as transformers does.
        let Some(info) = value.into_tensor_info(name, &dir)? else { continue };
        let layout = &info.layout;
        let fortran = layout.is_fortran_contiguous() && !layout.is_contiguous();
        if !layout.is_contiguous() && !fortran {
            return Err(Error::Weights(format!("tensor {} is stored with strides this reader does not handle", info.name)));
        }
        let mut file = zip.by_name(&info.path).map_err(pth_error)?;
        let elem = info.dtype.size_in_bytes();
        let mut raw = vec![0u8; (layout.start_offset() + layout.shape().elem_count()) * elem];
        file.read_exact(&mut raw).map_err(|e| pth_error(format!("{}: {e}", info.name)))?;
        let raw = &raw[layout.start_offset() * elem..];
        let dims = layout.dims();
        let tensor = if fortran && dims.len() > 1 {
            let reversed: Vec<usize> = dims.iter().rev().copied().collect();
            let t = Tensor::from_raw_buffer(raw, info.dtype, &reversed, device)?;
            t.permute((0..dims.len()).rev().collect::<Vec<_>>())?.contiguous()?
        } else {
            Tensor::from_raw_buffer(raw, info.dtype, dims, device)?
        };
        tensors.insert(info.name, tensor);
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces are released as they are read through, whatever the order, and not before.
    #[test]
    fn arriving_bytes_release_each_piece_once_all_of_it_is_read() {
        let file: Vec<u8> = (0..3 * ArrivingBytes::PIECE + 100).map(|i| (i % 251) as u8).collect();
        let mut arriving = ArrivingBytes::new();
        for piece in file.chunks(ArrivingBytes::PIECE) {
            arriving.push_piece(piece.to_vec());
        }
        arriving.push_piece(Vec::new());
        assert_eq!(arriving.len(), file.len());
        assert_eq!(arriving.held(), file.len());
        let read = |start: usize, len: usize| {
            let mut out = vec![0u8; len];
            arriving.read_at(start, &mut out).unwrap();
            assert_eq!(out, file[start..start + len]);
        };
        // The header, read twice, releases nothing.
        read(0, 9);
        read(0, 200);
        assert_eq!(arriving.held(), file.len());
        // The second piece, in two reads from its end, is released; then the last, across the
        // third piece's end.
        let p = ArrivingBytes::PIECE;
        read(p + 10, p - 10);
        read(p, 10);
        assert_eq!(arriving.held(), file.len() - p);
        read(2 * p, p + 100);
        assert_eq!(arriving.held(), p);
        read(200, p - 200);
        assert_eq!(arriving.held(), 0);
        let e = arriving.read_at(5, &mut [0u8; 4]).unwrap_err();
        assert!(e.to_string().contains("read again after they were released"), "{e}");
        assert!(arriving.read_at(file.len() - 2, &mut [0u8; 4]).is_err(), "past the end");
    }
}
