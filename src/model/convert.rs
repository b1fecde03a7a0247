//! Smaller checkpoints for the same model: every float tensor in f16, or the weight matrices in int8
//! with one scale per output row (weights only, symmetric; biases, norms, embeddings of a single row
//! and group tokens stay in f16). `crate::model::weights` reads both back in f32.

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

/// The checkpoint in `bytes` rewritten as `stored`: the safetensors file's bytes. The output is laid
/// out from the header alone and each tensor converted into it a block at a time, so converting
/// holds the output and one block (in the browser, whose memory never shrinks, the page stays that
/// size); a PyTorch zip is read whole first.
pub fn convert(bytes: &dyn WeightBytes, stored: StoredAs) -> Result<Vec<u8>> {
    match WeightsFormat::of(bytes)? {
        WeightsFormat::Safetensors => {
            let index = SafetensorsIndex::of(bytes)?;
            let tensors = index
                .tensors()
                .into_iter()
                .map(|(name, info)| Ok((name, DType::try_from(info.dtype)?, info.shape.clone())))
                .collect::<Result<Vec<Original>>>()?;
            write(&tensors, stored, &|name, at, out| index.read_tensor(bytes, name, at, out))
        }
        WeightsFormat::PyTorch => {
            let all = read_pytorch(&bytes.to_vec()?, &Device::Cpu)?;
            let tensors: Vec<Original> = all.iter().map(|(n, t)| (n.clone(), t.dtype(), t.dims().to_vec())).collect();
            // The bytes safetensors would store for each tensor (candle's `View` of it).
            let raw: std::collections::HashMap<_, _> = all.into_iter().map(|(n, t)| (n, t.data().into_owned())).collect();
            write(&tensors, stored, &|name, at, out| {
                out.copy_from_slice(&raw[name][at..at + out.len()]);
                Ok(())
            })
        }
    }
}

/// Writes `tensors` as `stored`: the header first, from the shapes alone, then each tensor's bytes
/// at their place, read a block at a time by `read(name, byte offset in the tensor, out)`.
fn write(tensors: &[Original], stored: StoredAs, read: &dyn Fn(&str, usize, &mut [u8]) -> Result<()>) -> Result<Vec<u8>> {
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
    let mut out = vec![0u8; data_start + offset];
    out[..8].copy_from_slice(&(header.len() as u64).to_le_bytes());
    out[8..data_start].copy_from_slice(&header);
    let at = |name: &str| data_start + place[name];

    let mut raw = Vec::new();
    for (name, dtype, shape) in tensors {
        let elem = dtype.size_in_bytes();
        let count: usize = shape.iter().product();
        match written(name, *dtype, shape, stored) {
            Written::Same => {
                let to = at(name);
                for start in (0..count * elem).step_by(BLOCK_BYTES) {
                    let n = BLOCK_BYTES.min(count * elem - start);
                    read(name, start, &mut out[to + start..to + start + n])?;
                }
            }
            Written::F16 => {
                let to = at(name);
                let per_block = (BLOCK_BYTES / elem).max(1);
                for first in (0..count).step_by(per_block) {
                    let n = per_block.min(count - first);
                    raw.resize(n * elem, 0);
                    read(name, first * elem, &mut raw)?;
                    for (i, v) in decode(*dtype, &raw)?.iter().enumerate() {
                        out[to + 2 * (first + i)..][..2].copy_from_slice(&half::f16::from_f32(*v).to_le_bytes());
                    }
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
                    for (i, row) in decode(*dtype, &raw)?.chunks_exact(cols.max(1)).enumerate() {
                        let r = r0 + i;
                        let scale = quantize_row(row, &mut out[codes_at + r * cols..][..cols]);
                        out[scales_at + 4 * r..][..4].copy_from_slice(&scale.to_le_bytes());
                    }
                }
            }
        }
    }
    Ok(out)
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
