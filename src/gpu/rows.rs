//! Row-wise GPU operations over the last dimension: LayerNorm, softmax, L2 normalisation.

use super::buffer::GpuTensor;
use super::{dispatch, pipeline, shader, shader_params, uniform, workgroups, Gpu, Kernel};
use crate::error::{Error, Result};

shader_params! {
    /// `rows.wgsl`'s parameters.
    RowParams {
        rows: u32,
        cols: u32,
        /// LayerNorm's epsilon.
        eps: f32,
        _pad: u32,
    }
}

/// The compiled row kernels.
pub struct RowOps {
    layer_norm: Kernel,
    softmax: Kernel,
    l2_normalize: Kernel,
}

impl RowOps {
    pub fn new(gpu: &Gpu) -> Self {
        let module = shader::<RowParams>(gpu, "rows", &[], include_str!("rows.wgsl"));
        Self {
            layer_norm: pipeline(gpu, &module, "layer_norm"),
            softmax: pipeline(gpu, &module, "softmax"),
            l2_normalize: pipeline(gpu, &module, "l2_normalize"),
        }
    }

    fn run(
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        pipeline: &Kernel,
        buffers: &[(u32, &wgpu::Buffer)],
        rows: usize,
        cols: usize,
        eps: f32,
    ) -> Result<()> {
        let (rows_u32, cols_u32) = match (u32::try_from(rows), u32::try_from(cols)) {
            (Ok(r), Ok(c)) if c > 0 => (r, c),
            _ => return Err(Error::Gpu(format!("cannot run a row kernel on {rows} × {cols}"))),
        };
        let params = uniform(gpu, &RowParams { rows: rows_u32, cols: cols_u32, eps, _pad: 0 });
        let mut bindings = buffers.to_vec();
        bindings.push((4, &params));
        // One workgroup per row.
        dispatch(gpu, encoder, pipeline, &bindings, workgroups(rows));
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
        Self::run(gpu, encoder, &self.layer_norm, &buffers, rows, cols, eps)
    }

    /// Softmax over the last dimension of `x`, in place.
    pub fn encode_softmax(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, x: &GpuTensor) -> Result<()> {
        let cols = *x.shape.last().unwrap_or(&0);
        let rows = x.len() / cols.max(1);
        Self::run(gpu, encoder, &self.softmax, &[(0, &x.buffer)], rows, cols, 0.0)
    }

    /// Each row of `x` divided by its Euclidean norm, in place.
    pub fn encode_l2_normalize(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, x: &GpuTensor) -> Result<()> {
        let cols = *x.shape.last().unwrap_or(&0);
        let rows = x.len() / cols.max(1);
        Self::run(gpu, encoder, &self.l2_normalize, &[(0, &x.buffer)], rows, cols, 0.0)
    }
}
