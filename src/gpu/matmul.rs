//! Tiled matrix product on the GPU with bias and activation fused into its last step.
//! This one kernel carries almost all of GroupViT's FLOPs: linear layers (C = A·Wᵀ + b) and the
//! attention products (Q·Kᵀ, P·V).

use wgpu::util::DeviceExt;

use super::buffer::GpuTensor;
use super::{dispatch_counted, pipeline, shader, u32_of, uniform, Gpu, Kernel};
use crate::error::{Error, Result};

/// What follows the product, in the same pass (the activations the CPU path fuses, with the
/// discriminants `matmul.wgsl` switches on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    None = 0,
    Bias = 1,
    BiasGeluErf = 2,
    BiasQuickGelu = 3,
    BiasRelu = 4,
}

/// How B is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BLayout {
    /// B is N×K: C = A·Bᵀ (weights as stored by PyTorch, attention keys).
    Transposed,
    /// B is K×N (attention values).
    Plain,
}

/// Sizes of one batched product C[batch] (M×N) = A[batch] (M×K) · op(B[batch]).
#[derive(Debug, Clone, Copy)]
pub struct MatmulShape {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Whether B is one matrix for the whole batch (a weight) or one per item.
    pub b_shared: bool,
}

const TILE: usize = 64;

/// The compiled kernel.
pub struct Matmul {
    pipeline: Kernel,
    /// Bound in place of a bias when there is none.
    no_bias: wgpu::Buffer,
}

impl Matmul {
    pub fn new(gpu: &Gpu) -> Self {
        let module = shader(gpu, "matmul", include_str!("matmul.wgsl"));
        let pipeline = pipeline(gpu, &module, "matmul");
        let no_bias = gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("no bias"),
            contents: &[0; 4],
            usage: wgpu::BufferUsages::STORAGE,
        });
        Self { pipeline, no_bias }
    }

    /// Records `c = epilogue(a · op(b) + bias)` into `encoder`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        a: &GpuTensor,
        b: &GpuTensor,
        b_layout: BLayout,
        bias: Option<&GpuTensor>,
        epilogue: Epilogue,
        c: &GpuTensor,
        s: MatmulShape,
    ) -> Result<()> {
        let need = |t: &GpuTensor, len: usize, what: &str| {
            if t.len() < len {
                Err(Error::Gpu(format!("matmul {what}: {} values for {len}", t.len())))
            } else {
                Ok(())
            }
        };
        need(a, s.batch * s.m * s.k, "A")?;
        need(b, if s.b_shared { 1 } else { s.batch } * s.n * s.k, "B")?;
        need(c, s.batch * s.m * s.n, "C")?;
        if epilogue != Epilogue::None {
            need(bias.ok_or_else(|| Error::Gpu("matmul: this epilogue needs a bias".into()))?, s.n, "bias")?;
        }
        // The WGSL `Params` struct, field by field.
        let params: [u32; 8] = [
            u32_of(s.m)?,
            u32_of(s.n)?,
            u32_of(s.k)?,
            u32::from(b_layout == BLayout::Transposed),
            u32_of(s.m * s.k)?,
            if s.b_shared { 0 } else { u32_of(s.n * s.k)? },
            u32_of(s.m * s.n)?,
            epilogue as u32,
        ];
        let params = uniform(gpu, &params);
        let bias = bias.map_or(&self.no_bias, |t| &t.buffer);
        let bindings = [(0, &a.buffer), (1, &b.buffer), (2, bias), (3, &c.buffer), (4, &params)];
        let workgroups = (s.n.div_ceil(TILE) as u32, s.m.div_ceil(TILE) as u32, s.batch as u32);
        let flops = 2 * (s.batch * s.m * s.n * s.k) as u64;
        dispatch_counted(gpu, encoder, &self.pipeline, &bindings, workgroups, flops);
        Ok(())
    }
}
