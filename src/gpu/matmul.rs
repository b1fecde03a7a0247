//! Tiled matrix product on the GPU with bias and activation fused into its last step.
//! This one kernel carries almost all of GroupViT's FLOPs: linear layers (C = A·Wᵀ + b) and the
//! attention products (Q·Kᵀ, P·V).

use wgpu::util::DeviceExt;

use super::buffer::{GpuMatrix, GpuTensor};
use super::{dispatch_counted, pipeline, shader, shader_params, u32_of, uniform, Gpu, Kernel};
use crate::error::{Error, Result};

shader_params! {
    /// `matmul.wgsl`'s parameters.
    MatmulParams {
        m: u32,
        n: u32,
        k: u32,
        /// 1: B is N×K (C = A·Bᵀ); 0: B is K×N.
        b_transposed: u32,
        /// Elements between consecutive batch items (0 for a matrix shared by the batch).
        a_batch_stride: u32,
        b_batch_stride: u32,
        c_batch_stride: u32,
        /// An [`Epilogue`].
        epilogue: u32,
    }
}

/// What follows the product, in the same pass (the activations the CPU path fuses; `matmul.wgsl`
/// gets the discriminants as constants).
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

/// Outputs per workgroup along each side, and its threads along each side: each thread holds a
/// 4 × 4 block of outputs, and stages 4 values of each operand per K slice.
const TILE: u32 = 64;
const TILE_THREADS: u32 = 16;
/// K per slice staged in workgroup memory.
const TILE_K: u32 = 16;
const _: () = assert!(TILE == 4 * TILE_THREADS && TILE * TILE_K == 4 * TILE_THREADS * TILE_THREADS);
// The int8 format stages a slice's codes one word a thread, starting on a word.
const _: () = assert!(TILE_K % 4 == 0 && TILE * TILE_K / 4 == TILE_THREADS * TILE_THREADS);

/// `matmul.wgsl`'s `B_FORMAT`s.
const B_F32: u32 = 0;
const B_F16: u32 = 1;
const B_INT8: u32 = 2;

/// The compiled kernels: one per way B is stored.
pub struct Matmul {
    f32: Kernel,
    f16: Kernel,
    int8: Kernel,
    /// Bound in place of a bias when there is none, and of the B bindings a format does not read.
    no_bias: wgpu::Buffer,
}

impl Matmul {
    pub fn new(gpu: &Gpu) -> Self {
        // One pipeline per way B is stored, from the same body (`B_FORMAT`).
        let compile = |format: u32| {
            let constants = [
                ("TILE", TILE),
                ("TILE_THREADS", TILE_THREADS),
                ("TILE_K", TILE_K),
                ("EPILOGUE_NONE", Epilogue::None as u32),
                ("EPILOGUE_BIAS_GELU_ERF", Epilogue::BiasGeluErf as u32),
                ("EPILOGUE_BIAS_QUICK_GELU", Epilogue::BiasQuickGelu as u32),
                ("EPILOGUE_BIAS_RELU", Epilogue::BiasRelu as u32),
                ("B_F32", B_F32),
                ("B_F16", B_F16),
                ("B_INT8", B_INT8),
                ("B_FORMAT", format),
            ];
            let module = shader::<MatmulParams>(gpu, "matmul", &constants, include_str!("matmul.wgsl"));
            pipeline(gpu, &module, "matmul")
        };
        let (f32, f16, int8) = (compile(B_F32), compile(B_F16), compile(B_INT8));
        let no_bias = gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("no bias"),
            contents: &[0; 4],
            usage: wgpu::BufferUsages::STORAGE,
        });
        Self { f32, f16, int8, no_bias }
    }

    /// Records `c = epilogue(a · weightᵀ + bias)` into `encoder`: a linear layer, `a` of `m` rows.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_weight(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        a: &GpuTensor,
        weight: &GpuMatrix,
        bias: Option<&GpuTensor>,
        epilogue: Epilogue,
        c: &GpuTensor,
        m: usize,
    ) -> Result<()> {
        let (n, k) = weight.dims();
        let s = MatmulShape { batch: 1, m, n, k, b_shared: true };
        let (kernel, words, scales) = match weight {
            GpuMatrix::F32(b) => return self.encode(gpu, encoder, a, b, BLayout::Transposed, bias, epilogue, c, s),
            GpuMatrix::F16 { words, scales, .. } => (&self.f16, words, scales),
            GpuMatrix::Int8 { words, scales, .. } => (&self.int8, words, scales),
        };
        let params = Self::params(gpu, a, None, bias, epilogue, c, s)?;
        let bias = bias.map_or(&self.no_bias, |t| &t.buffer);
        let bindings = [(0, &a.buffer), (1, &self.no_bias), (2, bias), (3, &c.buffer), (4, &params), (5, words), (6, &scales.buffer)];
        dispatch_counted(gpu, encoder, kernel, &bindings, Self::workgroups(s)?, s.flops());
        Ok(())
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
        let params = Self::params(gpu, a, Some((b, b_layout)), bias, epilogue, c, s)?;
        let bias = bias.map_or(&self.no_bias, |t| &t.buffer);
        let none = &self.no_bias;
        let bindings = [(0, &a.buffer), (1, &b.buffer), (2, bias), (3, &c.buffer), (4, &params), (5, none), (6, none)];
        dispatch_counted(gpu, encoder, &self.f32, &bindings, Self::workgroups(s)?, s.flops());
        Ok(())
    }

    /// The operands' sizes checked against `s` (B's only when it is an f32 tensor), and the
    /// kernel's parameters.
    #[allow(clippy::too_many_arguments)]
    fn params(
        gpu: &Gpu,
        a: &GpuTensor,
        b: Option<(&GpuTensor, BLayout)>,
        bias: Option<&GpuTensor>,
        epilogue: Epilogue,
        c: &GpuTensor,
        s: MatmulShape,
    ) -> Result<wgpu::Buffer> {
        let need = |t: &GpuTensor, len: usize, what: &str| {
            if t.len() < len {
                Err(Error::Gpu(format!("matmul {what}: {} values for {len}", t.len())))
            } else {
                Ok(())
            }
        };
        need(a, s.batch * s.m * s.k, "A")?;
        if let Some((b, _)) = b {
            need(b, if s.b_shared { 1 } else { s.batch } * s.n * s.k, "B")?;
        }
        need(c, s.batch * s.m * s.n, "C")?;
        if epilogue != Epilogue::None {
            need(bias.ok_or_else(|| Error::Gpu("matmul: this epilogue needs a bias".into()))?, s.n, "bias")?;
        }
        Ok(uniform(
            gpu,
            &MatmulParams {
                m: u32_of(s.m)?,
                n: u32_of(s.n)?,
                k: u32_of(s.k)?,
                b_transposed: u32::from(b.is_none_or(|(_, layout)| layout == BLayout::Transposed)),
                a_batch_stride: u32_of(s.m * s.k)?,
                b_batch_stride: if s.b_shared { 0 } else { u32_of(s.n * s.k)? },
                c_batch_stride: u32_of(s.m * s.n)?,
                epilogue: epilogue as u32,
            },
        ))
    }

    fn workgroups(s: MatmulShape) -> Result<(u32, u32, u32)> {
        let tile = TILE as usize;
        Ok((u32_of(s.n.div_ceil(tile))?, u32_of(s.m.div_ceil(tile))?, u32_of(s.batch)?))
    }
}

impl MatmulShape {
    fn flops(&self) -> u64 {
        2 * (self.batch * self.m * self.n * self.k) as u64
    }
}
