//! Reading checkpoint weights: `model.safetensors` or PyTorch's `pytorch_model.bin` (a zip of
//! pickles), from bytes so that the browser, which has no file system, uses the same code.
//! Tensors may be stored in f32, f16 or bf16, or in int8 with per-row scales (`groupseg convert`);
//! the model computes in f32 and keeps int8 weight matrices as int8 (`super::matrix`).

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::error::{Error, Result};

/// Suffix of the per-row scales of a tensor stored in int8 (written by `crate::model::convert`): the
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
}

/// A checkpoint's weights, read from `bytes`: every tensor is converted to f32 when a module
/// fetches it, and the bytes handed out are counted (what a model built from them holds).
pub struct Weights {
    vb: VarBuilder<'static>,
    fetched: Arc<AtomicUsize>,
}

impl Weights {
    pub fn from_bytes(bytes: Vec<u8>, device: &Device) -> Result<Self> {
        let inner: Box<dyn SimpleBackend> = match WeightsFormat::sniff(&bytes)? {
            WeightsFormat::Safetensors => {
                // Validate the header and data extents now, so a truncated download is reported as such.
                safetensors::SafeTensors::deserialize(&bytes)
                    .map_err(|e| Error::Weights(format!("the safetensors file is damaged or truncated ({e})")))?;
                Box::new(candle_core::safetensors::BufferedSafetensors::new(bytes)?)
            }
            WeightsFormat::PyTorch => Box::new(read_pytorch(&bytes, device)?),
        };
        let fetched = Arc::new(AtomicUsize::new(0));
        let backend = Counting { inner, fetched: Arc::clone(&fetched) };
        Ok(Self { vb: VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone()), fetched })
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
        let mut per_row = vec![rows];
        per_row.resize(q.rank(), 1);
        (q.to_dtype(DType::F32)? - 128.0)?.broadcast_mul(&scale.reshape(per_row)?)?.to_dtype(dtype)
    }
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
