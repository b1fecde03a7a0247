//! Row-wise GPU operations: LayerNorm and softmax over the last dimension.

use wgpu::util::DeviceExt;

use super::buffer::GpuTensor;
use super::Gpu;
use crate::error::{Error, Result};

const MAX_DISPATCH: u32 = 65535;

/// The compiled row kernels.
pub struct RowOps {
    layer_norm: wgpu::ComputePipeline,
    softmax: wgpu::ComputePipeline,
}

fn pipeline(gpu: &Gpu, module: &wgpu::ShaderModule, entry: &str) -> wgpu::ComputePipeline {
    gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    })
}

impl RowOps {
    pub fn new(gpu: &Gpu) -> Self {
        let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("rows"),
            source: wgpu::ShaderSource::Wgsl(include_str!("rows.wgsl").into()),
        });
        Self { layer_norm: pipeline(gpu, &module, "layer_norm"), softmax: pipeline(gpu, &module, "softmax") }
    }

    fn dispatch(
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[(u32, &wgpu::Buffer)],
        rows: usize,
        cols: usize,
        eps: f32,
    ) -> Result<()> {
        let (rows_u32, cols_u32) = match (u32::try_from(rows), u32::try_from(cols)) {
            (Ok(r), Ok(c)) if c > 0 => (r, c),
            _ => return Err(Error::Gpu(format!("cannot run a row kernel on {rows} × {cols}"))),
        };
        let mut bytes = Vec::with_capacity(16);
        for v in [rows_u32, cols_u32, eps.to_bits(), 0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let uniform = gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("row params"),
            contents: &bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries: Vec<wgpu::BindGroupEntry> =
            buffers.iter().map(|&(binding, b)| wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }).collect();
        entries.push(wgpu::BindGroupEntry { binding: 4, resource: uniform.as_entire_binding() });
        let bind = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(rows_u32.min(MAX_DISPATCH), rows_u32.div_ceil(MAX_DISPATCH), 1);
        Ok(())
    }

    /// `y = LayerNorm(x) · weight + bias` over the last dimension of `x`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_layer_norm(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        weight: &GpuTensor,
        bias: &GpuTensor,
        y: &GpuTensor,
        eps: f32,
    ) -> Result<()> {
        let cols = *x.shape.last().unwrap_or(&0);
        if weight.len() != cols || bias.len() != cols || y.len() != x.len() {
            return Err(Error::Gpu(format!("layer norm over {cols} columns got mismatched parameters")));
        }
        let rows = x.len() / cols.max(1);
        let buffers = [(0, &x.buffer), (1, &weight.buffer), (2, &bias.buffer), (3, &y.buffer)];
        Self::dispatch(gpu, encoder, &self.layer_norm, &buffers, rows, cols, eps)
    }

    /// Softmax over the last dimension of `x`, in place.
    pub fn encode_softmax(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, x: &GpuTensor) -> Result<()> {
        let cols = *x.shape.last().unwrap_or(&0);
        let rows = x.len() / cols.max(1);
        Self::dispatch(gpu, encoder, &self.softmax, &[(0, &x.buffer)], rows, cols, 0.0)
    }
}
