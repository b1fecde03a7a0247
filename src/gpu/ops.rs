//! Elementwise, layout and assignment kernels: everything between the matmuls that is not a row
//! reduction.

use super::buffer::GpuTensor;
use super::{dispatch, grid, pipeline, shader, shader_params, u32_of, uniform, workgroups, Gpu, Kernel};
use crate::error::{Error, Result};

shader_params! {
    /// `elementwise.wgsl`'s parameters.
    ElementwiseParams {
        len: u32,
        /// add: the repeated operand's length.
        repeat: u32,
        /// transpose: `(outer, rows, cols, inner)` → `(outer, cols, rows, inner)`.
        outer: u32,
        rows: u32,
        cols: u32,
        inner: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

shader_params! {
    /// `assign.wgsl`'s parameters.
    AssignParams {
        batch: u32,
        groups: u32,
        tokens: u32,
        /// `assign_eps` of the normalised hard assignment.
        eps: f32,
    }
}

/// Threads per workgroup of the one-thread-per-element kernels.
const THREADS: u32 = 256;
/// Threads per workgroup of the assignment's per-token kernel.
const ASSIGN_THREADS: u32 = 64;

/// The compiled kernels.
pub struct Ops {
    add: Kernel,
    transpose: Kernel,
    assign_columns: Kernel,
    assign_rows: Kernel,
}

impl Ops {
    pub fn new(gpu: &Gpu) -> Self {
        let elementwise =
            shader::<ElementwiseParams>(gpu, "elementwise", &[("THREADS", THREADS)], include_str!("elementwise.wgsl"));
        let assign = shader::<AssignParams>(gpu, "assign", &[("THREADS", ASSIGN_THREADS)], include_str!("assign.wgsl"));
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
        let params = ElementwiseParams { len: u32_of(x.len())?, repeat: u32_of(z.len())?, ..Default::default() };
        let bindings = [(0, &x.buffer), (1, &z.buffer), (2, &y.buffer), (3, &uniform(gpu, &params))];
        dispatch(gpu, encoder, &self.add, &bindings, grid(x.len(), THREADS));
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
        let params = ElementwiseParams {
            len: u32_of(len)?,
            outer: u32_of(outer)?,
            rows: u32_of(r)?,
            cols: u32_of(c)?,
            inner: u32_of(inner)?,
            ..Default::default()
        };
        let bindings = [(0, &x.buffer), (2, &y.buffer), (3, &uniform(gpu, &params))];
        dispatch(gpu, encoder, &self.transpose, &bindings, grid(len, THREADS));
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
        let params = uniform(gpu, &AssignParams { batch: u32_of(b)?, groups: u32_of(g)?, tokens: u32_of(n)?, eps });
        let all = [(0, &raw.buffer), (1, &soft.buffer), (2, &hard.buffer), (3, &params)];
        dispatch(gpu, encoder, &self.assign_columns, &all, grid(b * n, ASSIGN_THREADS));
        // One workgroup per group.
        dispatch(gpu, encoder, &self.assign_rows, &[(2, &hard.buffer), (3, &params)], workgroups(b * g));
        Ok(())
    }
}
