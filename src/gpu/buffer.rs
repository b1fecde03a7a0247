//! f32 tensors in GPU storage buffers: upload once, compute in place, read back only results.

use wgpu::util::DeviceExt;

use super::Gpu;
use crate::error::{Error, Result};

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
        // Zero-sized bindings are invalid: keep at least one element.
        let bytes: Vec<u8> = if data.is_empty() { vec![0; 4] } else { data.iter().flat_map(|v| v.to_le_bytes()).collect() };
        let buffer = gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: &bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        });
        gpu.count_upload(bytes.len());
        Ok(Self { buffer, shape: shape.to_vec() })
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
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        pollster::block_on(self.read(gpu))
    }
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
    #[cfg(not(target_arch = "wasm32"))]
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
