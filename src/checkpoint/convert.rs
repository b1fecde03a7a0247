//! Smaller checkpoints for the same model: every float tensor in f16, or the weight matrices in int8
//! with one scale per output row (weights only, symmetric; biases, norms, embeddings of a single row
//! and group tokens stay in f16). `crate::checkpoint::weights` reads both back in f32.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::View;

use super::weights::{read_pytorch, SafetensorsIndex, WeightBytes, WeightsFormat, SCALE_SUFFIX};
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
/// passes through in blocks of about this much.
const BLOCK_BYTES: usize = 1 << 20;

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

/// Little-endian floats of `dtype` in `raw`, as f32 (candle's conversions).
fn decode(dtype: DType, raw: &[u8]) -> Result<Vec<f32>> {
    let count = raw.len() / dtype.size_in_bytes();
    Ok(Tensor::from_raw_buffer(raw, dtype, &[count], &Device::Cpu)?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
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

/// Writes `tensors` as `stored` into `out`: the header first, from the shapes alone, then each
/// tensor's bytes at their place, read a block at a time by `read(name, byte offset in the tensor,
/// block)`.
fn write(
    tensors: &[Original],
    stored: StoredAs,
    read: &ReadBlock,
    out: &mut dyn ConvertedFile,
) -> Result<()> {
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
    let mut place = std::collections::HashMap::with_capacity(entries.len());
    for (name, (dtype, shape)) in &entries {
        let size = shape.iter().product::<usize>() * dtype.size_in_bytes();
        place.insert(name.as_str(), offset);
        infos.push((name.clone(), TensorInfo { dtype: (*dtype).into(), shape: shape.clone(), data_offsets: (offset, offset + size) }));
        offset += size;
    }
    let bad_header = |e: String| Error::Weights(format!("cannot write the converted checkpoint: {e}"));
    let meta = std::collections::HashMap::from([("format".to_owned(), "pt".to_owned())]);
    let metadata = Metadata::new(Some(meta), infos).map_err(|e| bad_header(e.to_string()))?;
    let mut header = serde_json::to_vec(&metadata).map_err(|e| bad_header(e.to_string()))?;
    // Padded with spaces to 8 bytes, as safetensors writes it, so the data is aligned for f32.
    header.resize(header.len().next_multiple_of(8), b' ');
    let data_start = 8 + header.len();
    out.allocate(data_start + offset)?;
    out.write_at(0, &(header.len() as u64).to_le_bytes())?;
    out.write_at(8, &header)?;
    let at = |name: &str| data_start + place[name];

    // One block in, one out.
    let (mut raw, mut block) = (Vec::new(), Vec::new());
    for (name, dtype, shape) in tensors {
        let elem = dtype.size_in_bytes();
        let count: usize = shape.iter().product();
        match written(name, *dtype, shape, stored) {
            Written::Same => {
                let to = at(name);
                for start in (0..count * elem).step_by(BLOCK_BYTES) {
                    raw.resize(BLOCK_BYTES.min(count * elem - start), 0);
                    read(name, start, &mut raw)?;
                    out.write_at(to + start, &raw)?;
                }
            }
            Written::F16 => {
                let to = at(name);
                let per_block = (BLOCK_BYTES / elem).max(1);
                for first in (0..count).step_by(per_block) {
                    let n = per_block.min(count - first);
                    raw.resize(n * elem, 0);
                    read(name, first * elem, &mut raw)?;
                    block.clear();
                    block.extend(decode_finite(name, *dtype, &raw)?.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()));
                    out.write_at(to + 2 * first, &block)?;
                }
            }
            Written::Int8 => {
                let (rows, cols) = (shape[0], count / shape[0]);
                let (codes_at, scales_at) = (at(name), at(&format!("{name}{SCALE_SUFFIX}")));
                let per_block = (BLOCK_BYTES / (cols * elem).max(1)).max(1);
                for r0 in (0..rows).step_by(per_block) {
                    let n = per_block.min(rows - r0);
                    raw.resize(n * cols * elem, 0);
                    read(name, r0 * cols * elem, &mut raw)?;
                    block.resize(n * cols, 0);
                    let mut scales = Vec::with_capacity(4 * n);
                    for (row, codes) in decode_finite(name, *dtype, &raw)?.chunks_exact(cols.max(1)).zip(block.chunks_exact_mut(cols.max(1))) {
                        scales.extend(quantize_row(row, codes).to_le_bytes());
                    }
                    out.write_at(codes_at + r0 * cols, &block)?;
                    out.write_at(scales_at + 4 * r0, &scales)?;
                }
            }
        }
    }
    Ok(())
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
