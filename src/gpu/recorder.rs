//! Records GPU work into one command encoder: the kernels every module is made of, each allocating
//! its output. Modules (`vision`, `compose`) say what to compute; this says how it is dispatched.

use super::buffer::GpuTensor;
use super::layers::{LayerNorm, Linear};
use super::matmul::{BLayout, Epilogue, Matmul, MatmulShape};
use super::ops::Ops;
use super::rows::RowOps;
use super::Gpu;
use crate::error::{Error, Result};

/// The compiled kernels a forward records.
pub struct Kernels {
    pub(crate) matmul: Matmul,
    pub(crate) rows: RowOps,
    pub(crate) ops: Ops,
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Self {
        Self { matmul: Matmul::new(gpu), rows: RowOps::new(gpu), ops: Ops::new(gpu) }
    }
}

/// Kernels recorded into one command encoder, submitted together.
pub(crate) struct Recorder<'a> {
    pub gpu: &'a Gpu,
    k: &'a Kernels,
    pub enc: wgpu::CommandEncoder,
}

impl<'a> Recorder<'a> {
    pub fn new(gpu: &'a Gpu, k: &'a Kernels) -> Self {
        Self { gpu, k, enc: gpu.device.create_command_encoder(&Default::default()) }
    }

    /// Hands everything recorded to the GPU.
    pub fn submit(self) {
        self.gpu.queue.submit([self.enc.finish()]);
    }

    pub fn empty(&self, shape: &[usize]) -> GpuTensor {
        GpuTensor::empty(self.gpu, shape)
    }

    /// `a · op(b)` with no epilogue, into a new `(batch, m, n)` tensor.
    pub fn matmul(&mut self, a: &GpuTensor, b: &GpuTensor, layout: BLayout, s: MatmulShape) -> Result<GpuTensor> {
        let c = self.empty(&[s.batch, s.m, s.n]);
        self.k.matmul.encode(self.gpu, &mut self.enc, a, b, layout, None, Epilogue::None, &c, s)?;
        Ok(c)
    }

    /// `x (…, in)` → `epilogue(x · weightᵀ + bias)` `(…, out)`.
    pub fn linear(&mut self, x: &GpuTensor, l: &Linear, ep: Epilogue) -> Result<GpuTensor> {
        let (&input, lead) = x.shape.split_last().ok_or_else(|| Error::Gpu("a linear layer needs a tensor".into()))?;
        if input != l.input {
            return Err(Error::Gpu(format!("a linear layer of {} inputs was given {:?}", l.input, x.shape)));
        }
        let rows = x.len() / input;
        let mut shape = lead.to_vec();
        shape.push(l.output);
        let y = self.empty(&shape);
        self.k.matmul.encode_weight(self.gpu, &mut self.enc, x, &l.weight, Some(&l.bias), ep, &y, rows)?;
        Ok(y)
    }

    pub fn layer_norm(&mut self, x: &GpuTensor, ln: &LayerNorm) -> Result<GpuTensor> {
        let y = self.empty(&x.shape);
        self.k.rows.encode_layer_norm(self.gpu, &mut self.enc, x, &ln.weight, &ln.bias, &y, ln.eps)?;
        Ok(y)
    }

    /// Softmax over the last dimension, in place.
    pub fn softmax(&mut self, x: &GpuTensor) -> Result<()> {
        self.k.rows.encode_softmax(self.gpu, &mut self.enc, x)
    }

    /// Each row divided by its norm, in place.
    pub fn l2_normalize(&mut self, x: &GpuTensor) -> Result<()> {
        self.k.rows.encode_l2_normalize(self.gpu, &mut self.enc, x)
    }

    /// `x + z`, `z` repeated along `x`.
    pub fn add(&mut self, x: &GpuTensor, z: &GpuTensor) -> Result<GpuTensor> {
        let y = self.empty(&x.shape);
        self.k.ops.encode_add(self.gpu, &mut self.enc, x, z, &y)?;
        Ok(y)
    }

    /// `x` seen as `(outer, r, c, inner)` → `(outer, c, r, inner)`, shaped `shape`.
    pub fn transpose(&mut self, x: &GpuTensor, dims: (usize, usize, usize, usize), shape: &[usize]) -> Result<GpuTensor> {
        let y = self.empty(shape);
        self.k.ops.encode_transpose(self.gpu, &mut self.enc, x, &y, dims)?;
        Ok(y)
    }

    /// The assignment of raw group–token scores `(B, G, N)`: (soft map, normalised hard one-hot).
    pub fn assign(&mut self, raw: &GpuTensor, eps: f32) -> Result<(GpuTensor, GpuTensor)> {
        let (soft, hard) = (self.empty(&raw.shape), self.empty(&raw.shape));
        self.k.ops.encode_assign(self.gpu, &mut self.enc, raw, &soft, &hard, eps)?;
        Ok((soft, hard))
    }

    fn copy(&mut self, src: &GpuTensor, from: usize, dst: &GpuTensor, to: usize, len: usize) {
        self.enc.copy_buffer_to_buffer(&src.buffer, (from * 4) as u64, &dst.buffer, (to * 4) as u64, (len * 4) as u64);
    }

    /// `(1, G, D)` repeated to `(batch, G, D)`.
    pub fn repeat(&mut self, t: &GpuTensor, batch: usize) -> Result<GpuTensor> {
        let [1, g, d] = t.shape[..] else {
            return Err(Error::Gpu(format!("only a (1, G, D) tensor repeats, not {:?}", t.shape)));
        };
        let y = self.empty(&[batch, g, d]);
        for b in 0..batch {
            self.copy(t, 0, &y, b * g * d, g * d);
        }
        Ok(y)
    }

    /// Tensors of the same trailing shape joined along their first dimension.
    pub fn stack(&mut self, parts: &[&GpuTensor]) -> Result<GpuTensor> {
        let first = parts.first().ok_or_else(|| Error::Gpu("nothing to stack".into()))?;
        if parts.iter().any(|p| p.shape[1..] != first.shape[1..]) {
            return Err(Error::Gpu("stacked tensors must share their trailing shape".into()));
        }
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        let y = self.empty(&shape);
        let mut at = 0;
        for p in parts {
            self.copy(p, 0, &y, at, p.len());
            at += p.len();
        }
        Ok(y)
    }

    /// `[x; g]` along tokens.
    pub fn concat(&mut self, x: &GpuTensor, g: &GpuTensor) -> Result<GpuTensor> {
        let (b, n, d) = (x.shape[0], x.shape[1], x.shape[2]);
        let gn = g.shape[1];
        let y = self.empty(&[b, n + gn, d]);
        for i in 0..b {
            self.copy(x, i * n * d, &y, i * (n + gn) * d, n * d);
            self.copy(g, i * gn * d, &y, (i * (n + gn) + n) * d, gn * d);
        }
        Ok(y)
    }

    /// `(B, n + gn, D)` → the first `n` and the last `gn` tokens.
    pub fn split(&mut self, cat: &GpuTensor, n: usize, gn: usize) -> Result<(GpuTensor, GpuTensor)> {
        let (b, d) = (cat.shape[0], cat.shape[2]);
        let (x, g) = (self.empty(&[b, n, d]), self.empty(&[b, gn, d]));
        for i in 0..b {
            self.copy(cat, i * (n + gn) * d, &x, i * n * d, n * d);
            self.copy(cat, (i * (n + gn) + n) * d, &g, i * gn * d, gn * d);
        }
        Ok((x, g))
    }
}
