//! Multi-head attention fused on the CPU (scores, softmax and the weighted sum per block of query
//! rows, never all the scores at once), and the softmax of attention scores in place.

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::arch::{self, with_best_simd};
use super::math::{scaled_exp, softmax_rows};
use super::matmul::{gemm_f32, matmul};
use super::packed::{self, OutPtr, PackedMatrix};
use super::pool::par_rows_mut;
use super::{ours, ours_contiguous};

/// Query rows per fused-attention task: their scores (48 × 848 floats at 448 pixels, 160 KB)
/// stay in L2 between the two products.
const ATTENTION_ROWS: usize = 48;

/// Query rows per task of the fused attention where keys and values are read through their
/// strides: 128 × 848 scores are 434 KB.
const STRIDED_ATTENTION_ROWS: usize = 128;

const MOST_ATTENTION_ROWS: usize = if ATTENTION_ROWS > STRIDED_ATTENTION_ROWS { ATTENTION_ROWS } else { STRIDED_ATTENTION_ROWS };

/// Multi-head attention `softmax(q·kᵀ·scale + mask)·v` for `q (B, Tq, D)`, `k`, `v (B, Tk, D)`
/// with `D = heads · head_dim`, returning `(B, Tq, D)` with heads already merged. `mask (Tq, Tk)`
/// is added to the scores (−∞ where a query may not look).
///
/// Fused on the CPU: each block of a head's query rows computes its scores, their softmax and its
/// share of the output, so the scores (6 × 848² floats, 17 MB, a layer at 448 pixels) are never
/// held, and the output is written in place of merging heads. Natively, where weights are packed
/// ([`packed::available`]), each head's keys and values are packed once; in WebAssembly the
/// products read them through their strides (packing every head's would hold another copy of
/// both, 2.6 MB at 448, in a heap that keeps its high-water mark). Other devices and dtypes:
/// [`attention_by_heads`].
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f64, mask: Option<&Tensor>) -> Result<Tensor> {
    fused_attention(q, k, v, heads, scale, mask, arch::PACKED_ATTENTION && packed::available())
}

/// [`attention`], keys and values packed for the products or read through their strides.
fn fused_attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f64, mask: Option<&Tensor>, pack: bool) -> Result<Tensor> {
    let (_, tq, d) = q.dims3()?;
    let tk = k.dim(1)?;
    let cpu_f32 = ours(&[q, k, v]);
    if !cpu_f32 || heads == 0 || d % heads != 0 || d == 0 || tk == 0 {
        return attention_by_heads(q, k, v, heads, scale, mask, rayon::current_num_threads());
    }
    let mask = match mask {
        Some(m) => Some(m.to_dtype(DType::F32)?.broadcast_as((tq, tk))?.contiguous()?.flatten_all()?.to_vec1::<f32>()?),
        None => None,
    };
    // Views of a side-by-side projection are read in place; other layouts are copied first.
    let rows = |t: &Tensor| if t.stride().last() == Some(&1) { Ok(t.clone()) } else { t.contiguous() };
    rows(q)?.apply_op3_no_bwd(&rows(k)?, &rows(v)?, &FusedAttention { heads, scale: scale as f32, mask, pack })
}

/// [`attention`] off the CPU or in other dtypes: two batched matmuls around a softmax, `at_once`
/// heads at a time (all heads' scores together are a forward's largest buffer).
fn attention_by_heads(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f64,
    mask: Option<&Tensor>,
    at_once: usize,
) -> Result<Tensor> {
    let (b, tq, d) = q.dims3()?;
    let split = |t: &Tensor| -> Result<Tensor> {
        let (b, t_, _) = t.dims3()?;
        t.reshape((b, t_, heads, d / heads.max(1)))?.transpose(1, 2)
    };
    let (qh, kh, vh) = (split(&(q * scale)?)?, split(k)?, split(v)?);
    let at_once = at_once.clamp(1, heads.max(1));
    let mut outs = Vec::with_capacity(heads.div_ceil(at_once));
    for first in (0..heads).step_by(at_once) {
        let n = at_once.min(heads - first);
        let scores = matmul(&qh.narrow(1, first, n)?, &kh.narrow(1, first, n)?.t()?)?;
        let scores = match mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let attn = softmax_last_dim_in_place(scores)?;
        outs.push(matmul(&attn, &vh.narrow(1, first, n)?)?);
    }
    Tensor::cat(&outs, 1)?.transpose(1, 2)?.reshape((b, tq, d))
}

/// One `(B, T, D)` operand of [`FusedAttention`] as it lies in its storage: rows of D contiguous
/// floats, any row and batch strides (views of one side-by-side projection).
struct Rows<'a> {
    data: &'a [f32],
    batch: usize,
    row: usize,
}

impl<'a> Rows<'a> {
    fn of(storage: &'a CpuStorage, layout: &Layout) -> Result<Self> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("fused attention takes f32") };
        let &[batch, row, 1] = layout.stride() else { candle_core::bail!("fused attention takes (B, T, D) rows of contiguous features") };
        Ok(Self { data: &data[layout.start_offset()..], batch, row })
    }

    /// Where head `h`'s slice of row `i` in batch `b` starts.
    fn at(&self, b: usize, i: usize, h: usize, hd: usize) -> usize {
        b * self.batch + i * self.row + h * hd
    }
}

struct FusedAttention {
    heads: usize,
    scale: f32,
    mask: Option<Vec<f32>>,
    /// Keys and values packed for [`PackedMatrix::product`] (where [`packed::available`]).
    pack: bool,
}

impl candle_core::CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (Rows::of(s1, l1)?, Rows::of(s2, l2)?, Rows::of(s3, l3)?);
        let (&[b, tq, d], &[kb, tk, kd]) = (l1.dims(), l2.dims()) else { candle_core::bail!("fused attention takes (B, T, D)") };
        if (kb, kd) != (b, d) || l3.dims() != l2.dims() || self.heads == 0 || d % self.heads != 0 {
            candle_core::bail!("fused attention: queries {:?}, keys {:?}, values {:?} in {} heads", l1.dims(), l2.dims(), l3.dims(), self.heads);
        }
        let heads = self.heads;
        let hd = d / heads;
        // Per (batch, head), where packing runs: keys as the "weight" of the first product, values
        // transposed as the second's.
        let packs: Option<Vec<(PackedMatrix, PackedMatrix)>> = self.pack.then(|| {
            (0..b * heads)
                .into_par_iter()
                .map(|bh| {
                    let (bi, h) = (bh / heads, bh % heads);
                    (
                        PackedMatrix::pack_strided(&k.data[k.at(bi, 0, h, hd)..], tk, hd, k.row, 1),
                        PackedMatrix::pack_strided(&v.data[v.at(bi, 0, h, hd)..], hd, tk, 1, v.row),
                    )
                })
                .collect()
        });
        // The strided products pack both operands on every call: taller blocks pay that less often.
        let block_rows = if packs.is_some() { ATTENTION_ROWS } else { STRIDED_ATTENTION_ROWS };
        let mut out: Vec<f32> = Vec::with_capacity(b * tq * d);
        let dst = OutPtr(out.spare_capacity_mut().as_mut_ptr().cast());
        let blocks = tq.div_ceil(block_rows);
        packed::for_each_task(b * heads * blocks, |t| {
            let (bh, blk) = (t / blocks, t % blocks);
            let (bi, h) = (bh / heads, bh % heads);
            let (r0, r1) = (blk * block_rows, (blk * block_rows + block_rows).min(tq));
            let packed = packs.as_ref().map(|p| &p[bh]);
            SCORES.with_borrow_mut(|scores| {
                let rows = r1 - r0;
                scores.clear();
                scores.reserve(rows * tk);
                let queries = q.data[q.at(bi, r0, h, hd)..].as_ptr();
                // SAFETY: `q.data` holds rows r0..r1 of this head (hd floats each) at stride q.row,
                // `k.data` its tk keys at stride k.row; `scores` has room for rows × tk, all written
                // by the product (hd > 0).
                unsafe {
                    match packed {
                        Some((keys, _)) => keys.product(queries, q.row, rows, scores.as_mut_ptr(), tk),
                        None => {
                            let keys = k.data[k.at(bi, 0, h, hd)..].as_ptr();
                            gemm_f32(rows, tk, hd, scores.as_mut_ptr(), tk, queries, (q.row as isize, 1), keys, (1, k.row as isize))
                        }
                    }
                    scores.set_len(rows * tk);
                }
                // Unnormalised: each row's sum divides its hd outputs below instead of its tk scores.
                let mut sums = [0f32; MOST_ATTENTION_ROWS];
                for (i, row) in scores.chunks_exact_mut(tk).enumerate() {
                    let mask_row = self.mask.as_ref().map(|m| &m[(r0 + i) * tk..][..tk]);
                    sums[i] = scaled_exp_row(row, self.scale, mask_row);
                }
                let at = (bi * tq + r0) * d + h * hd;
                // SAFETY: this task alone writes rows r0..r1, columns h·hd..(h + 1)·hd of batch bi;
                // `v.data` holds this head's tk values at stride v.row.
                unsafe {
                    match packed {
                        Some((_, values)) => values.product(scores.as_ptr(), tk, rows, dst.at(at), d),
                        None => {
                            let values = v.data[v.at(bi, 0, h, hd)..].as_ptr();
                            gemm_f32(rows, hd, tk, dst.at(at), d, scores.as_ptr(), (tk as isize, 1), values, (v.row as isize, 1))
                        }
                    }
                    for (i, &sum) in sums[..rows].iter().enumerate() {
                        let inv = 1.0 / sum;
                        std::slice::from_raw_parts_mut(dst.at(at + i * d), hd).iter_mut().for_each(|v| *v *= inv);
                    }
                }
            });
        });
        // SAFETY: the tasks covered every batch, head and row block (hd, tk > 0).
        unsafe { out.set_len(b * tq * d) };
        Ok((CpuStorage::F32(out), Shape::from((b, tq, d))))
    }
}

thread_local! {
    /// Each pool thread's block of attention scores, kept between tasks (a fresh 160 KB buffer
    /// per task was a page-faulting allocation).
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`scaled_exp`] on the best SIMD this CPU has: an unmasked row (every vision row) on the wide
/// path where there is one.
fn scaled_exp_row(row: &mut [f32], scale: f32, mask: Option<&[f32]>) -> f32 {
    if mask.is_none() {
        if let Some(sum) = arch::scaled_exp_wide(row, scale) {
            return sum;
        }
    }
    with_best_simd!(scaled_exp(row, scale, mask))
}

struct SoftmaxLastDimInPlace;

impl InplaceOp1 for SoftmaxLastDimInPlace {
    fn name(&self) -> &'static str {
        "softmax-last-dim-in-place"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("{} takes f32", self.name()) };
        let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("{} takes contiguous input", self.name()) };
        let row = layout.dims().last().copied().unwrap_or(1).max(1);
        par_rows_mut(&mut data[start..end], row, |rows| with_best_simd!(softmax_rows(rows, row)));
        Ok(())
    }
}

/// Softmax over the last dimension of attention scores, overwriting them (f32 on the CPU; a new
/// tensor elsewhere). The scores are 6 × 848² floats per layer at 448 pixels: working in place
/// saves a 17 MB allocation and half the memory traffic. `scores` must own its storage (fresh
/// from a matmul), since every view of that storage changes.
pub(crate) fn softmax_last_dim_in_place(scores: Tensor) -> Result<Tensor> {
    if ours_contiguous(&[&scores]) {
        scores.inplace_op1(&SoftmaxLastDimInPlace)?;
        Ok(scores)
    } else {
        candle_nn::ops::softmax_last_dim(&scores)
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Attention by plain candle ops: the heads split, scores, mask, softmax, merged again.
    fn attention_reference(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f64, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, tq, d) = q.dims3()?;
        let split = |t: &Tensor| -> Result<Tensor> { t.reshape((b, t.dim(1)?, heads, d / heads))?.transpose(1, 2)?.contiguous() };
        let scores = (split(q)?.matmul(&split(k)?.t()?)? * scale)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        candle_nn::ops::softmax_last_dim(&scores)?.matmul(&split(v)?)?.transpose(1, 2)?.reshape((b, tq, d))
    }

    /// Self-attention longer than one block of query rows, cross-attention to a context of
    /// another length, and a causal mask (the text tower's).
    #[test]
    fn attention_matches_plain_ops() -> Result<()> {
        let dev = Device::Cpu;
        let causal: Vec<f32> = (0..53 * 53).map(|i| if i % 53 > i / 53 { f32::NEG_INFINITY } else { 0.0 }).collect();
        let causal = Tensor::from_vec(causal, (53, 53), &dev)?;
        for (b, tq, tk, heads, hd, mask) in [(1, 130, 130, 6, 16, None), (2, 9, 71, 3, 8, None), (1, 53, 53, 4, 16, Some(&causal))] {
            let d = heads * hd;
            let q = Tensor::randn(0f32, 1.0, (b, tq, d), &dev)?;
            let k = Tensor::randn(0f32, 1.0, (b, tk, d), &dev)?;
            let v = Tensor::randn(0f32, 1.0, (b, tk, d), &dev)?;
            let scale = (hd as f64).powf(-0.5);
            let want = attention_reference(&q, &k, &v, heads, scale, mask)?;
            // Keys and values packed where this CPU can, and read through their strides (WebAssembly's).
            for pack in [packed::available(), false] {
                let got = fused_attention(&q, &k, &v, heads, scale, mask, pack)?;
                assert_eq!(got.dims(), &[b, tq, d]);
                let diff = (got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-5, "{b}×{tq}×{tk}, {heads} heads, packed {pack}: max |diff| {diff:e}");
            }
            // The unfused path (other devices and dtypes), all heads at once, one at a time, and in
            // uneven groups.
            for at_once in [heads, 1, 2] {
                let got = attention_by_heads(&q, &k, &v, heads, scale, mask, at_once)?;
                let diff = (got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-5, "{heads} heads {at_once} at a time: max |diff| {diff:e}");
            }
            // The same operands as column views of one side-by-side tensor, read in place.
            if tq == tk {
                let qkv = Tensor::cat(&[&q, &k, &v], 2)?;
                for pack in [packed::available(), false] {
                    let (q, k, v) = (qkv.narrow(2, 0, d)?, qkv.narrow(2, d, d)?, qkv.narrow(2, 2 * d, d)?);
                    let views = fused_attention(&q, &k, &v, heads, scale, mask, pack)?;
                    let diff = (views - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
                    assert!(diff < 1e-5, "views, packed {pack}: max |diff| {diff:e}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn fast_softmax_matches_candle() {
        for shape in [(3, 7, 5), (2, 6, 300)] {
            let xs = (Tensor::randn(0f32, 4.0, shape, &Device::Cpu).unwrap() - 50.0).unwrap();
            let want = candle_nn::ops::softmax_last_dim(&xs).unwrap();
            let got = softmax_last_dim_in_place(xs.copy().unwrap()).unwrap();
            let d = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-6, "{shape:?}: max |diff| {d:e}");
        }
    }
}
