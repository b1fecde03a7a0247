//! Smaller checkpoints for the same model: every float tensor in f16, or the weight matrices in int8
//! with one scale per output row (weights only, symmetric; biases, norms, embeddings of a single row
//! and group tokens stay in f16). `crate::model::weights` reads both back in f32.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, D};

use super::weights::{read_pytorch, WeightsFormat, SCALE_SUFFIX};
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
fn quantized(name: &str, t: &Tensor) -> bool {
    name.ends_with(".weight") && t.rank() >= 2 && t.dim(0).is_ok_and(|r| r >= MIN_ROWS)
}

/// Every tensor of a checkpoint's weights file (safetensors or `pytorch_model.bin`), by name.
fn tensors(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>> {
    let device = Device::Cpu;
    Ok(match WeightsFormat::sniff(bytes)? {
        WeightsFormat::Safetensors => candle_core::safetensors::load_buffer(bytes, &device)
            .map_err(|e| Error::Weights(format!("the safetensors file is damaged or truncated ({e})")))?
            .into_iter()
            .collect(),
        WeightsFormat::PyTorch => read_pytorch(bytes, &device)?.into_iter().collect(),
    })
}

/// `t` (rows first) as `u8` codes round(w / scale) + 128 and one scale per row, scale = max|w| / 127.
fn to_int8(t: &Tensor) -> Result<(Tensor, Tensor)> {
    let rows = t.dim(0)?;
    let flat = t.to_dtype(DType::F32)?.reshape((rows, ()))?;
    // A row of zeros keeps scale 1 so that it decodes to zeros without dividing by zero.
    let max = flat.abs()?.max_keepdim(D::Minus1)?;
    let scale = ((&max / 127.0)? + max.eq(0f32)?.to_dtype(DType::F32)?)?;
    let codes = (flat.broadcast_div(&scale)?.round()?.clamp(-127f32, 127f32)? + 128.0)?.to_dtype(DType::U8)?;
    Ok((codes.reshape(t.shape())?, scale.flatten_all()?))
}

/// The checkpoint in `bytes` rewritten as `stored`: the safetensors file's bytes.
pub fn convert(bytes: &[u8], stored: StoredAs) -> Result<Vec<u8>> {
    let mut out: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, t) in tensors(bytes)? {
        if name.ends_with(SCALE_SUFFIX) {
            return Err(Error::InvalidInput(format!("{name}: the checkpoint is already in int8; convert its f32 or f16 original")));
        }
        if !t.dtype().is_float() {
            out.insert(name, t);
        } else if stored == StoredAs::Int8 && quantized(&name, &t) {
            let (codes, scale) = to_int8(&t)?;
            out.insert(format!("{name}{SCALE_SUFFIX}"), scale);
            out.insert(name, codes);
        } else {
            out.insert(name, t.to_dtype(DType::F16)?);
        }
    }
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("format".to_owned(), "pt".to_owned());
    let views: Vec<(String, Tensor)> = out.into_iter().collect();
    safetensors::serialize(views.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
        .map_err(|e| Error::Weights(format!("cannot write the converted checkpoint: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_rows_round_trip_within_half_a_step() {
        let w = Tensor::new(&[[0.5f32, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 2.0, -3.0]], &Device::Cpu).unwrap();
        let (codes, scale) = to_int8(&w).unwrap();
        assert_eq!(codes.to_vec2::<u8>().unwrap()[1], [128, 128, 128], "a zero row stays zeros");
        let back = (codes.to_dtype(DType::F32).unwrap() - 128.0).unwrap().broadcast_mul(&scale.reshape((3, 1)).unwrap()).unwrap();
        let steps = scale.to_vec1::<f32>().unwrap();
        for ((row, orig), step) in back.to_vec2::<f32>().unwrap().iter().zip(w.to_vec2::<f32>().unwrap()).zip(&steps) {
            for (a, b) in row.iter().zip(orig) {
                assert!((a - b).abs() <= step / 2.0 + 1e-7, "{a} vs {b} (step {step})");
            }
        }
        assert!("int9".parse::<StoredAs>().is_err());
    }
}
