//! Elementwise, layout and assignment kernels: everything between the matmuls that is not a row
//! reduction.

use super::buffer::GpuTensor;
use super::{dispatch, pipeline, uniform, Gpu};
use crate::error::{Error, Result};

const MAX_DISPATCH: usize = 65535;

fn u32_of(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Gpu(format!("size {v} exceeds u32")))
}

/// Dispatches with the parameters at binding 3, as in every shader here.
fn run(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[(u32, &wgpu::Buffer)],
    params: &wgpu::Buffer,
    (x, y): (u32, u32),
) {
    let mut bindings = buffers.to_vec();
    bindings.push((3, params));
    dispatch(gpu, encoder, pipeline, &bindings, (x, y, 1));
}

/// Workgroups for `threads` threads in groups of `size`, spread over two dimensions when needed.
fn grid(threads: usize, size: usize) -> (u32, u32) {
    let groups = threads.div_ceil(size).max(1);
    (groups.min(MAX_DISPATCH) as u32, groups.div_ceil(MAX_DISPATCH) as u32)
}

/// The compiled kernels.
pub struct Ops {
    add: wgpu::ComputePipeline,
    transpose: wgpu::ComputePipeline,
    assign_columns: wgpu::ComputePipeline,
    assign_rows: wgpu::ComputePipeline,
}

impl Ops {
    pub fn new(gpu: &Gpu) -> Self {
        let module = |label: &str, src: &'static str| {
            gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            })
        };
        let elementwise = module("elementwise", include_str!("elementwise.wgsl"));
        let assign = module("assign", include_str!("assign.wgsl"));
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
        run(gpu, encoder, &self.assign_rows, &[(2, &hard.buffer)], &params, (u32_of(b * g)?, 1));
        Ok(())
    }
}
