//! LayerNorm on rayon's pool (candle-nn's runs one row per task with scalar sums), alone or fused
//! with the residual add before it, and the residual add written in place.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, InplaceOp2, Layout, Module, Result, Shape, Tensor};
use candle_nn::LayerNorm;
use rayon::prelude::*;

use super::arch::with_best_simd;
use super::math::lane_sum;
use super::pool::chunk_len;
use super::{contiguous_f32, ours, ours_contiguous};

/// `LayerNorm` of each `w`-long row of `src` into `dst`: mean, then variance around it (a second
/// pass over a row in L1; E[x²] − E[x]² loses digits when the mean is large).
#[inline(always)]
fn layer_norm_rows(src: &[f32], dst: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let w = weight.len();
    for (s, d) in src.chunks_exact(w).zip(dst.chunks_exact_mut(w)) {
        let mean = lane_sum(s, |v| v) / w as f32;
        let var = lane_sum(s, |v| (v - mean) * (v - mean)) / w as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (((d, &x), &g), &b) in d.iter_mut().zip(s).zip(weight).zip(bias) {
            *d = (x - mean) * inv * g + b;
        }
    }
}

/// `LayerNorm` with its parameters as slices, run straight on candle's storage: alone (one
/// input) or after a residual add (two inputs, whose sum is returned too).
struct LayerNormOp {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl LayerNormOp {
    fn of(ln: &LayerNorm) -> Result<Self> {
        let Some(bias) = ln.bias() else { candle_core::bail!("a LayerNorm without a bias") };
        Ok(Self { weight: ln.weight().to_dtype(DType::F32)?.to_vec1()?, bias: bias.to_dtype(DType::F32)?.to_vec1()?, eps: ln.eps() as f32 })
    }

    /// `LayerNorm(x)`, or with `y`: `[x + y ; LayerNorm(x + y)]` end to end, row chunks across the pool.
    fn run(&self, x: &[f32], y: Option<&[f32]>) -> Result<Vec<f32>> {
        let (len, w) = (x.len(), self.weight.len());
        if w == 0 || len % w != 0 || y.is_some_and(|y| y.len() != len) {
            candle_core::bail!("layer norm of {w} over {len} values");
        }
        let chunk = chunk_len(len, w);
        let run = |src: &[f32], normed: &mut [f32]| with_best_simd!(layer_norm_rows(src, normed, &self.weight, &self.bias, self.eps));
        let mut out = vec![0f32; if y.is_some() { 2 * len } else { len }];
        match y {
            None => out.par_chunks_mut(chunk).enumerate().for_each(|(i, n)| run(&x[i * chunk..][..n.len()], n)),
            Some(y) => {
                let (sum, normed) = out.split_at_mut(len);
                sum.par_chunks_mut(chunk).zip(normed.par_chunks_mut(chunk)).enumerate().for_each(|(i, (s, n))| {
                    with_best_simd!(s.iter_mut().zip(&x[i * chunk..]).zip(&y[i * chunk..]).for_each(|((s, x), y)| *s = x + y));
                    run(s, n)
                });
            }
        }
        Ok(out)
    }
}

impl CustomOp1 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(CustomOp1::name(self), storage, layout)?;
        Ok((CpuStorage::F32(self.run(x, None)?), layout.shape().clone()))
    }
}

impl CustomOp2 for LayerNormOp {
    fn name(&self) -> &'static str {
        "add-layer-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, y) = (contiguous_f32(CustomOp2::name(self), s1, l1)?, contiguous_f32(CustomOp2::name(self), s2, l2)?);
        let mut dims = vec![2];
        dims.extend_from_slice(l1.dims());
        Ok((CpuStorage::F32(self.run(x, Some(y))?), Shape::from(dims)))
    }
}

struct AddInPlace;

impl InplaceOp2 for AddInPlace {
    fn name(&self) -> &'static str {
        "add-in-place"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, src: &CpuStorage, src_l: &Layout) -> Result<()> {
        let src = contiguous_f32(self.name(), src, src_l)?;
        let CpuStorage::F32(data) = dst else { candle_core::bail!("{} takes f32", self.name()) };
        let Some((start, end)) = dst_l.contiguous_offsets() else { candle_core::bail!("{} takes contiguous input", self.name()) };
        let dst = &mut data[start..end];
        if dst.len() != src.len() {
            candle_core::bail!("{}: {} elements and {}", self.name(), dst.len(), src.len());
        }
        let chunk = chunk_len(dst.len(), 1);
        dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += s));
        Ok(())
    }
}

/// `update + residual`, written over `update`, which must own its storage (fresh from an op):
/// a transformer block's last residual add without a new buffer, on rayon's pool (candle's
/// add runs on a pool of its own, whose thread then spins beside ours).
pub(crate) fn add_residual(update: Tensor, residual: &Tensor) -> Result<Tensor> {
    if ours_contiguous(&[&update, residual]) && update.shape() == residual.shape() {
        update.inplace_op2(residual, &AddInPlace)?;
        Ok(update)
    } else {
        update + residual
    }
}

/// `ln(x)` over the last dimension (candle-nn's runs one row per task with scalar sums).
pub fn layer_norm(x: &Tensor, ln: &LayerNorm) -> Result<Tensor> {
    let width = ln.weight().elem_count();
    if !ours(&[x]) || ln.bias().is_none() || x.dims().last() != Some(&width) {
        return ln.forward(x);
    }
    x.contiguous()?.apply_op1_no_bwd(&LayerNormOp::of(ln)?)
}

/// `(x + y, ln(x + y))`: a transformer block's residual add and the LayerNorm after it, in one
/// pass, both results views of one buffer.
pub fn add_layer_norm(x: &Tensor, y: &Tensor, ln: &LayerNorm) -> Result<(Tensor, Tensor)> {
    if !(ours(&[x, y]) && x.shape() == y.shape()) || ln.bias().is_none() || x.dims().last() != Some(&ln.weight().elem_count()) {
        let sum = (x + y)?;
        let normed = ln.forward(&sum)?;
        return Ok((sum, normed));
    }
    let both = x.contiguous()?.apply_op2_no_bwd(&y.contiguous()?, &LayerNormOp::of(ln)?)?;
    Ok((both.get(0)?, both.get(1)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn layer_norms_match_an_f64_reference() -> Result<()> {
        let dev = Device::Cpu;
        let ln = LayerNorm::new(Tensor::randn(1f32, 0.2, 40, &dev)?, Tensor::randn(0f32, 0.2, 40, &dev)?, 1e-5);
        // Far from zero mean, where the one-pass variance loses digits.
        let x = (Tensor::randn(0f32, 1.0, (3, 77, 40), &dev)? + 20.0)?;
        let y = Tensor::randn(0f32, 1.0, (3, 77, 40), &dev)?;
        let max_diff = |a: &Tensor, b: &Tensor| -> Result<f32> { (a - b)?.abs()?.max_all()?.to_scalar::<f32>() };
        // The reference in f64 (candle's own f32 LayerNorm takes E[x²] − E[x]², off by ~1e-3 here).
        let reference = |x: &Tensor| -> Result<Tensor> {
            let x = x.to_dtype(DType::F64)?;
            let centred = x.broadcast_sub(&x.mean_keepdim(2)?)?;
            let std = (centred.sqr()?.mean_keepdim(2)? + 1e-5)?.sqrt()?;
            let (w, b) = (ln.weight().to_dtype(DType::F64)?, ln.bias().expect("bias").to_dtype(DType::F64)?);
            centred.broadcast_div(&std)?.broadcast_mul(&w)?.broadcast_add(&b)?.to_dtype(DType::F32)
        };
        assert!(max_diff(&layer_norm(&x, &ln)?, &reference(&x)?)? < 2e-5);
        let (sum, normed) = add_layer_norm(&x, &y, &ln)?;
        let want = (&x + &y)?;
        assert!(max_diff(&sum, &want)? == 0.0);
        assert!(max_diff(&normed, &reference(&want)?)? < 2e-5);
        // The block's last residual add, over the fresh update, is the plain sum.
        assert!(max_diff(&add_residual(y.copy()?, &x)?, &want)? == 0.0);
        Ok(())
    }
}
