//! f32 tensors in GPU storage buffers: upload once, compute in place, read back only results;
//! and weight matrices kept at the precision the checkpoint gave them.

use wgpu::util::DeviceExt;

use half::f16;

use super::Gpu;
use crate::error::{Error, Result};
use crate::cpu::matrix::Matrix;

/// A row-major f32 tensor living in a storage buffer.
pub struct GpuTensor {
    pub buffer: wgpu::Buffer,
    pub shape: Vec<usize>,
}

impl GpuTensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Uploads `data` (laid out as `shape`).
    pub fn upload(gpu: &Gpu, data: &[f32], shape: &[usize]) -> Result<Self> {
        if data.len() != shape.iter().product::<usize>() {
            return Err(Error::InvalidInput(format!("{} values do not fill shape {shape:?}", data.len())));
        }
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        Ok(Self { buffer: words_buffer(gpu, data.iter().map(|v| v.to_bits()), usage), shape: shape.to_vec() })
    }

    /// Uploads a CPU tensor (any float dtype; computed in f32).
    pub fn from_tensor(gpu: &Gpu, t: &candle_core::Tensor) -> Result<Self> {
        let values = t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Self::upload(gpu, &values, t.dims())
    }

    /// An uninitialised output of `shape`.
    pub fn empty(gpu: &Gpu, shape: &[usize]) -> Self {
        let len = shape.iter().product::<usize>().max(1);
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (len * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self { buffer, shape: shape.to_vec() }
    }

    /// Copies the tensor back to the CPU.
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let bytes = read_buffer(gpu, &self.buffer, self.len()).await?;
        Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// Copies back a tensor that kernels filled with `u32`s (label maps).
    pub async fn read_u32(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        let bytes = read_buffer(gpu, &self.buffer, self.len()).await?;
        Ok(bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// [`GpuTensor::read`], blocking (native only).
    #[cfg(native)]
    pub fn read_blocking(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        pollster::block_on(self.read(gpu))
    }
}

/// A weight matrix `(rows, cols)` on the GPU, as narrow as its values allow: int8 codes stay
/// int8 and f16 values stay f16 (the matmul widens them as it stages them), so an int8 checkpoint
/// holds a quarter of f32's bytes on the GPU too. Narrow rows start on a 32-bit word, zero-padded.
pub enum GpuMatrix {
    F32(GpuTensor),
    /// Two values a word; `scales` multiplies each row's products (a scaling folded into the layer).
    F16 { words: wgpu::Buffer, scales: GpuTensor, rows: usize, cols: usize },
    /// Four codes a word, `w[r][c] = (code − 128) × scales[r]`.
    Int8 { words: wgpu::Buffer, scales: GpuTensor, rows: usize, cols: usize },
}

impl GpuMatrix {
    /// `weight` times `scale` (a factor folded into the layer): int8 stays int8; f32 values that
    /// f16 holds exactly (an f16 checkpoint's, widened on loading) go up as f16; others as f32.
    pub fn upload(gpu: &Gpu, weight: &Matrix, scale: f32) -> Result<Self> {
        let (rows, cols) = weight.dims()?;
        // An empty matrix goes up as f32, which keeps a placeholder element.
        let narrow = rows * cols > 0;
        // Four codes a word; a row's last word is padded with 128, a zero.
        let word = |c: &[u8]| c.iter().rev().fold(0, |w, &b| w << 8 | b as u32);
        let int8 = match weight {
            Matrix::Int8(q) => Some((q.with_codes(|codes| pack_rows(codes, cols, 4, word, 128)), q.scales())),
            Matrix::PackedInt8(q) => Some((pack_rows(&q.codes(), cols, 4, word, 128), q.scales())),
            Matrix::F32(_) | Matrix::Packed(_) => None,
        };
        if let (true, Some((words, scales))) = (narrow, int8) {
            let scales: Vec<f32> = scales.iter().map(|s| s * scale).collect();
            let scales = GpuTensor::upload(gpu, &scales, &[rows])?;
            return Ok(Self::Int8 { words: words_buffer(gpu, words.into_iter(), wgpu::BufferUsages::STORAGE), scales, rows, cols });
        }
        let values = weight.to_f32()?.flatten_all()?.to_vec1::<f32>()?;
        if narrow && values.iter().all(|&v| f16::from_f32(v).to_f32() == v) {
            let word = |c: &[f32]| c.iter().rev().fold(0, |w, &v| w << 16 | f16::from_f32(v).to_bits() as u32);
            let words = pack_rows(&values, cols, 2, word, 0.0);
            let scales = GpuTensor::upload(gpu, &vec![scale; rows], &[rows])?;
            return Ok(Self::F16 { words: words_buffer(gpu, words.into_iter(), wgpu::BufferUsages::STORAGE), scales, rows, cols });
        }
        let values: Vec<f32> = if scale == 1.0 { values } else { values.iter().map(|v| v * scale).collect() };
        Ok(Self::F32(GpuTensor::upload(gpu, &values, &[rows, cols])?))
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            Self::F32(t) => (t.shape[0], t.shape[1]),
            Self::F16 { rows, cols, .. } | Self::Int8 { rows, cols, .. } => (*rows, *cols),
        }
    }
}

/// Rows of `cols` values packed `per_word` to a 32-bit word by `word` (first value in the low bits),
/// each row's last word filled up with `pad`.
fn pack_rows<T: Copy>(values: &[T], cols: usize, per_word: usize, word: impl Fn(&[T]) -> u32, pad: T) -> Vec<u32> {
    let mut chunk = vec![pad; per_word];
    values
        .chunks_exact(cols)
        .flat_map(|row| row.chunks(per_word))
        .map(|c| {
            chunk.fill(pad);
            chunk[..c.len()].copy_from_slice(c);
            word(&chunk)
        })
        .collect()
}

/// A buffer holding `words` little-endian, as shaders read them, counted as uploaded. Zero-sized
/// bindings are invalid: an empty one keeps one zero word.
fn words_buffer(gpu: &Gpu, words: impl Iterator<Item = u32>, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    let mut bytes: Vec<u8> = words.flat_map(u32::to_le_bytes).collect();
    if bytes.is_empty() {
        bytes = vec![0; 4];
    }
    gpu.count_upload(bytes.len());
    gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: &bytes, usage })
}

/// The first `words` 32-bit words of `buffer`, copied back to the CPU as bytes.
pub(crate) async fn read_buffer(gpu: &Gpu, buffer: &wgpu::Buffer, words: usize) -> Result<Vec<u8>> {
    let size = (words.max(1) * 4) as u64;
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
    gpu.queue.submit([encoder.finish()]);
    let (tx, rx) = futures_channel::oneshot::channel();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    // Natively someone must drive the device; in the browser its event loop does.
    #[cfg(native)]
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))?;
    rx.await
        .map_err(|_| Error::Gpu("the GPU device was lost".into()))?
        .map_err(|e| Error::Gpu(format!("reading a GPU buffer failed: {e}")))?;
    let data =
        staging.slice(..).get_mapped_range().map_err(|e| Error::Gpu(format!("reading a GPU buffer failed: {e}")))?;
    let mut out = data.to_vec();
    drop(data);
    staging.unmap();
    out.truncate(words * 4);
    Ok(out)
}
