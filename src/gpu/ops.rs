//! Elementwise, layout and assignment kernels: everything between the matmuls that is not a row
//! reduction.

use super::buffer::GpuTensor;
use super::{dispatch, grid, pipeline, shader, u32_of, uniform, workgroups, Gpu, Kernel};
use crate::error::{Error, Result};

/// Dispatches with the parameters at binding 3, as in every shader here.
fn run(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    pipeline: &Kernel,
    buffers: &[(u32, &wgpu::Buffer)],
    params: &wgpu::Buffer,
    groups: (u32, u32, u32),
) {
    let mut bindings = buffers.to_vec();
    bindings.push((3, params));
    dispatch(gpu, encoder, pipeline, &bindings, groups);
}

/// The compiled kernels.
pub struct Ops {
    add: Kernel,
    transpose: Kernel,
    assign_columns: Kernel,
    assign_rows: Kernel,
}

impl Ops {
    pub fn new(gpu: &Gpu) -> Self {
        let elementwise = shader(gpu, "elementwise", include_str!("elementwise.wgsl"));
        let assign = shader(gpu, "assign", include_str!("assign.wgsl"));
        Self {
            add: pipeline(gpu, &elementwise, "add"),
            transpose: pipeline(gpu, &elementwise, "transpose"),
            assign_columns: pipeline(gpu, &assign, "columns"),
            assign_rows: pipeline(gpu, &assign, "rows"),
        }
    }

    /// `y = x + z`, `z` repeated along `x` (its length must divide `x`'s).
    pub fn encode_add(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, x: &GpuTensor, z: &GpuTensor, y: &GpuTensor) -> Result<()> {
        if z.is_empty() || x.len() % z.len() != 0 || y.len() != x.len() {
            return Err(Error::Gpu(format!("cannot add {:?} to {:?}", z.shape, x.shape)));
        }
        let params = uniform(gpu, &[u32_of(x.len())?, u32_of(z.len())?, 0, 0, 0, 0, 0, 0]);
        run(gpu, encoder, &self.add, &[(0, &x.buffer), (1, &z.buffer), (2, &y.buffer)], &params, grid(x.len(), 256));
        Ok(())
    }

    /// `(outer, r, c, inner)` → `(outer, c, r, inner)` from `x` into `y`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_transpose(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        y: &GpuTensor,
        (outer, r, c, inner): (usize, usize, usize, usize),
    ) -> Result<()> {
        let len = outer * r * c * inner;
        if x.len() != len || y.len() != len {
            return Err(Error::Gpu(format!("cannot transpose {:?} as {outer}×{r}×{c}×{inner}", x.shape)));
        }
        let params = uniform(gpu, &[u32_of(len)?, u32_of(outer)?, u32_of(r)?, u32_of(c)?, u32_of(inner)?, 0, 0, 0]);
        run(gpu, encoder, &self.transpose, &[(0, &x.buffer), (2, &y.buffer)], &params, grid(len, 256));
        Ok(())
    }

    /// The assignment: from raw scores `(B, G, N)`, the soft map (softmax over groups) into `soft`
    /// and the normalised hard assignment (one-hot of the argmax group ÷ (group size + eps)) into
    /// `hard`.
    pub fn encode_assign(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        raw: &GpuTensor,
        soft: &GpuTensor,
        hard: &GpuTensor,
        eps: f32,
    ) -> Result<()> {
        let [b, g, n] = raw.shape[..] else {
            return Err(Error::Gpu(format!("assignment scores must be (batch, groups, tokens), not {:?}", raw.shape)));
        };
        if soft.len() != raw.len() || hard.len() != raw.len() {
            return Err(Error::Gpu("assignment outputs must match the scores".into()));
        }
        let params = uniform(gpu, &[u32_of(b)?, u32_of(g)?, u32_of(n)?, eps.to_bits()]);
        let all = [(0, &raw.buffer), (1, &soft.buffer), (2, &hard.buffer)];
        run(gpu, encoder, &self.assign_columns, &all, &params, grid(b * n, 64));
        run(gpu, encoder, &self.assign_rows, &[(2, &hard.buffer)], &params, workgroups(b * g));
        Ok(())
    }
}
