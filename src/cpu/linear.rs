//! Linear layers: `act(x @ Wᵀ + bias)` with the bias and activation in one pass over the product
//! (a broadcast add alone cost half as much as the matmul), over weights as they are kept
//! ([`super::matrix::Matrix`]: f32, packed at load, or int8: integer products where the CPU runs
//! them, else widened to f32), one or several side by side.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, InplaceOp2, Layout, Result, Shape, Tensor};

use super::activation::Activation;
use super::arch::with_best_simd;
use super::math::epilogue_rows;
use super::matmul::{gemm_f32, matmul};
use super::matrix::{Int8Matrix, Matrix};
use super::packed::{self, OutPtr, PackedMatrix};
use super::packed_int8::PackedInt8;
use super::pool::par_rows_mut;
use super::{contiguous_f32, ours_contiguous};

struct FusedEpilogue(Option<Activation>);

impl InplaceOp2 for FusedEpilogue {
    fn name(&self) -> &'static str {
        "fused-bias-epilogue"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, bias: &CpuStorage, bias_l: &Layout) -> Result<()> {
        let bias = contiguous_f32(self.name(), bias, bias_l)?;
        let CpuStorage::F32(data) = dst else { candle_core::bail!("fused-bias-epilogue takes f32") };
        let Some((start, end)) = dst_l.contiguous_offsets() else { candle_core::bail!("fused-bias-epilogue takes contiguous input") };
        let cols = bias.len();
        if cols == 0 || (end - start) % cols != 0 {
            candle_core::bail!("bias of {cols} does not divide an output of {}", end - start);
        }
        let act = self.0;
        par_rows_mut(&mut data[start..end], cols, |rows| with_best_simd!(epilogue_rows(rows, bias, act)));
        Ok(())
    }
}

/// `act(x @ weightᵀ + bias)` for `x (…, in)`, `weight (out, in)`: bias and activation are applied in
/// one pass over the fresh matmul output (a broadcast add alone cost half as much as the matmul).
pub fn linear(xs: &Tensor, weight: &Matrix, bias: &Tensor, act: Option<Activation>) -> Result<Tensor> {
    let mut dims = xs.dims().to_vec();
    let in_dim = dims.pop().unwrap_or(1);
    let (out_dim, _) = weight.dims()?;
    let x2 = xs.contiguous()?.reshape(((), in_dim))?;
    let y = match weight {
        Matrix::F32(w) => matmul(&x2, &w.t()?)?,
        // Bias and activation run inside the product, on each block as it is finished.
        Matrix::Packed(p) => return packed_linear(xs, vec![Arc::clone(p)], &[bias], act),
        Matrix::PackedInt8(q) => return fused_linear(xs, &[bias], act, &IntegerLinear(Arc::clone(q), act)),
        Matrix::Int8(q) => x2.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.apply_op1_no_bwd(&Int8MatMul(Arc::clone(q)))?,
    };
    let fused = ours_contiguous(&[&y]);
    let y = if fused {
        y.inplace_op2(bias, &FusedEpilogue(act))?;
        match act {
            Some(a @ Activation::GeluTanh) => a.forward(&y)?,
            _ => y,
        }
    } else {
        let y = y.broadcast_add(bias)?;
        match act {
            Some(a) => a.forward(&y)?,
            None => y,
        }
    };
    dims.push(out_dim);
    y.reshape(dims)
}

/// `f` over blocks of at most `rows` rows of `xs (…, in)`, their outputs `(…, out)` gathered in one
/// tensor: whatever `f` holds in between (an MLP's hidden layer) is held for one block at a time.
pub fn by_row_blocks(xs: &Tensor, rows: usize, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let mut dims = xs.dims().to_vec();
    let in_dim = dims.pop().unwrap_or(1);
    let m: usize = dims.iter().product();
    if m <= rows.max(1) {
        return f(xs);
    }
    let x2 = xs.contiguous()?.reshape((m, in_dim))?;
    let mut out: Vec<f32> = Vec::new();
    let mut out_dim = 0;
    for r0 in (0..m).step_by(rows) {
        let y = f(&x2.narrow(0, r0, rows.min(m - r0))?)?;
        out_dim = y.dim(1)?;
        out.reserve_exact(m * out_dim - out.len());
        out.extend_from_slice(&y.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
    }
    dims.push(out_dim);
    Tensor::from_vec(out, dims, xs.device())
}

/// `act([x · W₁ᵀ | x · W₂ᵀ | …] + bias)` with the Ws packed at load ([`PackedMatrix`]) and their
/// biases end to end.
struct PackedLinear(Vec<Arc<PackedMatrix>>, Option<Activation>);

impl CustomOp2 for PackedLinear {
    fn name(&self) -> &'static str {
        "packed-linear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(self.name(), s1, l1)?;
        let bias = contiguous_f32(self.name(), s2, l2)?;
        let &[m, k] = l1.dims() else { candle_core::bail!("{} takes a matrix", self.name()) };
        let n: usize = self.0.iter().map(|w| w.rows()).sum();
        if self.0.iter().any(|w| w.cols() != k) || bias.len() != n {
            candle_core::bail!("{}: an input of {k} columns and a bias of {} against {n} output columns", self.name(), bias.len());
        }
        let act = self.1;
        let ws: Vec<&PackedMatrix> = self.0.iter().map(|w| &**w).collect();
        let out = packed::side_by_side(&ws, x, m, |part, c0| with_best_simd!(epilogue_rows(part, &bias[c0..c0 + part.len()], act)));
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

/// `[x · W₁ᵀ + b₁ | x · W₂ᵀ + b₂ | …]`, `(…, Σ out)`, in one pass over `x` when every weight is
/// packed (an attention's projections of the same tokens); `None` otherwise.
pub fn linears_side_by_side(xs: &Tensor, layers: &[(&Matrix, &Tensor)]) -> Result<Option<Tensor>> {
    let ws: Option<Vec<Arc<PackedMatrix>>> = layers
        .iter()
        .map(|(w, _)| match w {
            Matrix::Packed(p) => Some(Arc::clone(p)),
            _ => None,
        })
        .collect();
    let Some(ws) = ws else { return Ok(None) };
    let biases: Vec<&Tensor> = layers.iter().map(|(_, b)| *b).collect();
    Ok(Some(packed_linear(xs, ws, &biases, None)?))
}

/// `act([x · W₁ᵀ | x · W₂ᵀ | …] + [b₁ | b₂ | …])` over `x (…, in)`, the Ws packed.
fn packed_linear(xs: &Tensor, ws: Vec<Arc<PackedMatrix>>, biases: &[&Tensor], act: Option<Activation>) -> Result<Tensor> {
    fused_linear(xs, biases, act, &PackedLinear(ws, act))
}

/// `act(x · Wᵀ + bias)` with W's codes packed for the integer product ([`PackedInt8`]): bias and
/// activation run on each block as it is scaled back to f32.
struct IntegerLinear(Arc<PackedInt8>, Option<Activation>);

impl CustomOp2 for IntegerLinear {
    fn name(&self) -> &'static str {
        "integer-linear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(self.name(), s1, l1)?;
        let bias = contiguous_f32(self.name(), s2, l2)?;
        let &[m, k] = l1.dims() else { candle_core::bail!("{} takes a matrix", self.name()) };
        let (n, w) = (self.0.rows(), &self.0);
        if w.cols() != k || bias.len() != n {
            candle_core::bail!("{}: an input of {k} columns and a bias of {} against a {n} × {} weight", self.name(), bias.len(), w.cols());
        }
        let act = self.1;
        let out = w.matmul(x, m, |part, c0| with_best_simd!(epilogue_rows(part, &bias[c0..c0 + part.len()], act)));
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

/// `op(x, [b₁ | b₂ | …])` over `x (…, in)` flattened to rows, for an op that fuses the bias and
/// activation `act` into its product (the tanh GELU excepted, applied after).
fn fused_linear(xs: &Tensor, biases: &[&Tensor], act: Option<Activation>, op: &impl CustomOp2) -> Result<Tensor> {
    let mut dims = xs.dims().to_vec();
    let in_dim = dims.pop().unwrap_or(1);
    let x2 = xs.contiguous()?.reshape(((), in_dim))?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    let biases = biases.iter().map(|b| b.to_dtype(DType::F32)?.to_device(&Device::Cpu)).collect::<Result<Vec<_>>>()?;
    let bias = if biases.len() == 1 { biases[0].clone() } else { Tensor::cat(&biases, 0)? };
    let y = x2.apply_op2_no_bwd(&bias, op)?;
    // The tanh GELU is not fused (see `epilogue_rows`).
    let y = match act {
        Some(a @ Activation::GeluTanh) => a.forward(&y)?,
        _ => y,
    };
    dims.push(y.dim(1)?);
    y.reshape(dims)
}

/// Output columns per block of the int8 product: that many weight rows are widened to f32 at a
/// time (64 × 4096 floats = 1 MB at most here), and blocks are what rayon's pool shares out.
const INT8_BLOCK: usize = 64;

/// `x (m × k) · Wᵀ` with `W (n × k)` held in int8: each block of W's rows is widened (code × row
/// scale) into a buffer of its own and multiplied in f32, its columns written straight into the
/// output: widened straight into the panels of [`packed`]'s register tiles where they run (the f32
/// weights' kernels, natively and in WebAssembly), else widened and multiplied by the kernels
/// `matmul` uses. Widening costs a pass over W per product (1/m of the work).
struct Int8MatMul(Arc<Int8Matrix>);

impl CustomOp1 for Int8MatMul {
    fn name(&self) -> &'static str {
        "int8-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(self.name(), storage, layout)?;
        let w = &self.0;
        let &[m, k] = layout.dims() else { candle_core::bail!("{} takes a matrix", self.name()) };
        let (n, kw) = (w.rows(), w.cols());
        if k != kw {
            candle_core::bail!("{}: an input of {k} columns against a weight of {kw}", self.name());
        }
        let len = m * n;
        if len == 0 || k == 0 {
            return Ok((CpuStorage::F32(vec![0f32; len]), Shape::from((m, n))));
        }
        let mut dst: Vec<f32> = Vec::with_capacity(len);
        let out = OutPtr(dst.spare_capacity_mut().as_mut_ptr().cast());
        let block = |j0: usize| {
            let cols = INT8_BLOCK.min(n - j0);
            if packed::available() {
                // Widened straight into the packed kernels' panels (natively and in WebAssembly):
                // one pass over the block's codes, not widening and then packing.
                let block = PackedMatrix::from_rows(cols, k, |r, row| w.widen_rows(j0 + r, row));
                // SAFETY: `x` holds m rows of k floats; this block alone writes columns
                // j0..j0 + cols of the m × n output.
                unsafe { block.product(x.as_ptr(), k, m, out.at(j0), n) };
                return;
            }
            let mut wide = vec![0f32; cols * k];
            w.widen_rows(j0, &mut wide);
            // SAFETY: `x` holds m × k floats read with row stride k, `wide` cols × k read as its
            // transpose, and this block alone writes columns j0..j0 + cols of the m × n output.
            unsafe { gemm_f32(m, cols, k, out.at(j0), n, x.as_ptr(), (k as isize, 1), wide.as_ptr(), (1, k as isize)) }
        };
        packed::for_each_task(n.div_ceil(INT8_BLOCK), |i| block(i * INT8_BLOCK));
        // SAFETY: the blocks cover all n columns of all m rows.
        unsafe { dst.set_len(len) };
        Ok((CpuStorage::F32(dst), Shape::from((m, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_gelu_matches_candle_exact_gelu() {
        // An identity weight and zero bias leave only the activation, over a wide input range.
        let xs = Tensor::randn(0f32, 3.0, (97, 101), &Device::Cpu).unwrap();
        let eye = Tensor::eye(101, DType::F32, &Device::Cpu).unwrap();
        let zero = Tensor::zeros(101, DType::F32, &Device::Cpu).unwrap();
        let fast = linear(&xs, &Matrix::F32(eye), &zero, Some(Activation::Gelu)).unwrap();
        let exact = xs.gelu_erf().unwrap();
        let diff = (fast - exact).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 2e-6, "max |diff| {diff:e}");
        // A non-contiguous input goes through the same kernel after a copy.
        let t = xs.t().unwrap();
        let fast_t = linear(&t, &Matrix::F32(Tensor::eye(97, DType::F32, &Device::Cpu).unwrap()), &Tensor::zeros(97, DType::F32, &Device::Cpu).unwrap(), Some(Activation::Gelu)).unwrap();
        let d = (fast_t - t.gelu_erf().unwrap()).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 2e-6);
    }

    #[test]
    fn fused_linear_matches_candle_linear() {
        use candle_core::Module;
        let x = Tensor::randn(0f32, 1.0, (2, 33, 24), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 0.3, (40, 24), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 1.0, 40, &Device::Cpu).unwrap();
        let reference = candle_nn::Linear::new(w.clone(), Some(b.clone())).forward(&x).unwrap();
        for (act, want) in [
            (None, reference.clone()),
            (Some(Activation::Relu), reference.relu().unwrap()),
            (Some(Activation::Gelu), reference.gelu_erf().unwrap()),
            (Some(Activation::QuickGelu), (&reference * candle_nn::ops::sigmoid(&(&reference * 1.702).unwrap()).unwrap()).unwrap()),
            (Some(Activation::GeluTanh), reference.gelu().unwrap()),
        ] {
            // As loaded (packed where the CPU has the packed kernels) and as a plain tensor.
            let values = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let packed = Matrix::Packed(Arc::new(PackedMatrix::pack(&values, 40, 24)));
            for (i, weight) in [Matrix::F32(w.clone()), packed].iter().enumerate().take(if packed::available() { 2 } else { 1 }) {
                let got = linear(&x, weight, &b, act).unwrap();
                assert_eq!(got.dims(), &[2, 33, 40]);
                let d = (got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(d < 1e-5, "{act:?}, {}: max |diff| {d:e}", ["tensor", "packed"][i]);
            }
        }
    }

    /// The int8 product (blocks of widened rows, split across the pool) against the f32 product of
    /// the same matrix widened whole, over output widths that leave a partial block.
    #[test]
    fn int8_linear_matches_its_widened_f32_weight() -> Result<()> {
        for (m, k, n) in [(1, 5, 3), (33, 70, 150), (200, 384, 64), (7, 256, 129)] {
            let codes: Vec<u8> = (0..n * k).map(|i| ((i * 7919 + 13) % 254) as u8 + 1).collect();
            let scales: Vec<f32> = (0..n).map(|r| 0.002 + 0.0001 * r as f32).collect();
            let q = Matrix::Int8(Arc::new(Int8Matrix::new(codes, scales, n, k)?));
            let f = Matrix::F32(q.to_f32()?);
            let x = Tensor::randn(0f32, 1.0, (2, m, k), &Device::Cpu)?;
            let b = Tensor::randn(0f32, 1.0, n, &Device::Cpu)?;
            let got = linear(&x, &q, &b, Some(Activation::Gelu))?;
            let want = linear(&x, &f, &b, Some(Activation::Gelu))?;
            assert_eq!(got.dims(), &[2, m, n]);
            let d = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-4, "{m}×{k}×{n}: max |diff| {d:e}");
        }
        Ok(())
    }

    #[test]
    fn row_blocks_give_what_the_whole_does() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (4, 6), &dev)?;
        let f = |x: &Tensor| -> Result<Tensor> { (x.broadcast_matmul(&w)? + 1.0)?.tanh() };
        // 2 × 5 rows of 4 in blocks of 3: the last block short, crossing the batch boundary.
        let x = Tensor::randn(0f32, 1.0, (2, 5, 4), &dev)?;
        for rows in [3, 10, 64] {
            let got = by_row_blocks(&x, rows, f)?;
            assert_eq!(got.dims(), &[2, 5, 6]);
            let diff = (got - f(&x)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-6, "blocks of {rows}: max |diff| {diff:e}");
        }
        Ok(())
    }
}
