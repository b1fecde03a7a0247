//! `lhs @ rhs` split across the rayon pool this code runs on, and one product on this thread:
//! natively through gemm (the crate candle's own CPU matmul calls), in WebAssembly through
//! [`super::sgemm`] ([`super::arch::SGEMM`] says which).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{arch, ours, sgemm};

/// `lhs @ rhs`, split across the rayon pool this code runs on: natively through gemm (the crate
/// candle's own CPU matmul calls), in WebAssembly through [`super::sgemm`]. candle sizes its split
/// from the OS's core count, which WebAssembly reports as one even when the threaded module has
/// started a pool of Web Workers; here the pool decides. Operands share their batch dimensions (any
/// strides); f32 on the CPU, else candle's matmul.
pub fn matmul(lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    let fits = ours(&[lhs, rhs])
        && lhs.rank() >= 2
        && lhs.rank() == rhs.rank()
        && lhs.dims()[..lhs.rank() - 2] == rhs.dims()[..rhs.rank() - 2];
    if fits {
        lhs.apply_op2_no_bwd(rhs, &PoolMatMul)
    } else {
        lhs.matmul(rhs)
    }
}

struct PoolMatMul;

impl CustomOp2 for PoolMatMul {
    fn name(&self) -> &'static str {
        "pool-matmul"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(a), CpuStorage::F32(b)) = (s1, s2) else { candle_core::bail!("{} takes f32", self.name()) };
        let (ad, bd) = (l1.dims(), l2.dims());
        let r = ad.len();
        if r < 2 || bd.len() != r || ad[..r - 2] != bd[..r - 2] || bd[r - 2] != ad[r - 1] {
            candle_core::bail!("{}: shapes {ad:?} and {bd:?} do not multiply", self.name());
        }
        let (m, k, n) = (ad[r - 2], ad[r - 1], bd[r - 1]);
        let batch = &ad[..r - 2];
        let batches: usize = batch.iter().product();
        let mut dims = ad.to_vec();
        dims[r - 1] = n;
        let len = batches * m * n;
        if len == 0 || k == 0 {
            return Ok((CpuStorage::F32(vec![0f32; len]), Shape::from(dims)));
        }
        // Every element is written by the kernels below, so the output is not zeroed first (a pass
        // over each matmul's output on the calling thread).
        let mut dst: Vec<f32> = Vec::with_capacity(len);
        let threads = rayon::current_num_threads();
        let (sa, sb) = (l1.stride(), l2.stride());
        // Attention heads are many small products: one per thread at a time beats splitting each.
        let by_batch = threads > 1 && batches >= threads;
        let one = |(i, out): (usize, &mut [std::mem::MaybeUninit<f32>])| {
            // Batch i's first element in each operand, from its strides (views stay views).
            let (mut oa, mut ob, mut rest) = (l1.start_offset(), l2.start_offset(), i);
            for d in (0..r - 2).rev() {
                let at = rest % batch[d];
                rest /= batch[d];
                oa += at * sa[d];
                ob += at * sb[d];
            }
            let (a, b) = (&a[oa..], &b[ob..]);
            if arch::SGEMM {
                // SAFETY: as for gemm below.
                unsafe {
                    let threads = if by_batch { 1 } else { threads };
                    let a = sgemm::Strided { ptr: a.as_ptr(), rs: sa[r - 2] as isize, cs: sa[r - 1] as isize };
                    let b = sgemm::Strided { ptr: b.as_ptr(), rs: sb[r - 2] as isize, cs: sb[r - 1] as isize };
                    sgemm::sgemm(m, n, k, out.as_mut_ptr().cast(), n, a, b, threads);
                }
                return;
            }
            // SAFETY: the layouts were checked by candle against their storages, so every
            // element gemm reads through these strides lies inside `a` and `b`; `out` is m × n.
            unsafe {
                gemm::gemm(
                    m, n, k,
                    out.as_mut_ptr().cast(), 1, n as isize, false,
                    a.as_ptr(), sa[r - 1] as isize, sa[r - 2] as isize,
                    b.as_ptr(), sb[r - 1] as isize, sb[r - 2] as isize,
                    0.0, 1.0, false, false, false,
                    if threads > 1 && !by_batch { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None },
                )
            }
        };
        let spare = &mut dst.spare_capacity_mut()[..len];
        if by_batch {
            spare.par_chunks_exact_mut(m * n).enumerate().for_each(one);
        } else {
            spare.chunks_exact_mut(m * n).enumerate().for_each(one);
        }
        // SAFETY: each of the `len` elements was written by sgemm or gemm (`read_dst` false, k > 0).
        unsafe { dst.set_len(len) };
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }
}

/// `c (m × n, row stride ldc) = a (m × k) · b (k × n)` on this thread, operands given by their
/// (row, column) strides: gemm natively, [`super::sgemm`] in WebAssembly.
///
/// # Safety
/// Every element the strides address must be readable, and `c`'s m × n block writable.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_f32(m: usize, n: usize, k: usize, c: *mut f32, ldc: usize, a: *const f32, (ars, acs): (isize, isize), b: *const f32, (brs, bcs): (isize, isize)) {
    // SAFETY: the caller keeps this function's contract (its `# Safety`).
    unsafe {
        if arch::SGEMM {
            sgemm::sgemm(m, n, k, c, ldc, sgemm::Strided { ptr: a, rs: ars, cs: acs }, sgemm::Strided { ptr: b, rs: brs, cs: bcs }, 1);
            return;
        }
        gemm::gemm(m, n, k, c, 1, ldc as isize, false, a, acs, ars, b, bcs, brs, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn pool_matmul_matches_candle_on_strided_views() -> Result<()> {
        let dev = Device::Cpu;
        // Heads as a transposed view, keys transposed again: the attention's layouts.
        let q = Tensor::randn(0f32, 1.0, (2, 37, 3, 16), &dev)?.transpose(1, 2)?;
        let k = Tensor::randn(0f32, 1.0, (2, 29, 3, 16), &dev)?.transpose(1, 2)?;
        let ours = matmul(&q, &k.t()?)?;
        let theirs = q.contiguous()?.matmul(&k.t()?.contiguous()?)?;
        assert_eq!(ours.dims(), &[2, 3, 37, 29]);
        let diff = (ours - theirs)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "max |diff| {diff}");
        // Plain 2-D, and an offset view (a narrowed batch).
        let a = Tensor::randn(0f32, 1.0, (4, 5, 7), &dev)?.narrow(0, 1, 2)?;
        let b = Tensor::randn(0f32, 1.0, (4, 7, 3), &dev)?.narrow(0, 2, 2)?;
        let diff = (matmul(&a, &b)? - a.contiguous()?.matmul(&b.contiguous()?)?)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "max |diff| {diff}");
        assert!(matmul(&a, &Tensor::zeros((2, 6, 3), DType::F32, &dev)?).is_err());
        Ok(())
    }
}
