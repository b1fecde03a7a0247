//! The CPU forward's own kernels where candle's are slow for GroupViT: elementwise work candle does
//! one scalar libm call at a time (the bias and activation after each matmul, the attention
//! softmax), LayerNorm and the residual adds on rayon's pool, the fused attention, and the linear
//! layers over weights packed at load ([`super::packed`]).
//! Here erf is a rational approximation (the one XLA and Eigen use for f32, error ~1e-7) and exp is
//! Cephes' range-reduced polynomial, both branch-free so the loops compile to SIMD, and the work is
//! split across rayon's pool (in WebAssembly: the threaded module's Web Workers, or one thread).
//! Other matmuls go through [`matmul`], split by that pool's size.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, InplaceOp1, InplaceOp2, Layout, Module, Result, Shape, Tensor};
use candle_nn::LayerNorm;
use rayon::prelude::*;

use super::activation::Activation;
use super::matrix::{Int8Matrix, Matrix};
use super::packed::{self, OutPtr, PackedMatrix};
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use super::sgemm;

/// erf(x) for f32 as a ratio of polynomials in x² (inputs beyond ±4 give ±1 in f32 anyway).
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_600_1e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329_3e-3;
    q = q * x2 - 1.426_473_9e-2;
    x * p / q
}

/// Cephes' `expf`, shared by [`exp_f32`] and the AVX-512 and AVX2 rows: the input range kept finite, ln 2 in
/// two parts for the range reduction, and the polynomial's coefficients, highest power first.
const EXP_RANGE: (f32, f32) = (-87.0, 88.0);
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_POLY: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1];

/// e^x for f32 without branches or calls (Cephes' `expf`: 2^n · polynomial, ~1 ulp), so loops over
/// it compile to SIMD. Inputs are clamped to the finite range.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(EXP_RANGE.0, EXP_RANGE.1);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = EXP_POLY[0] * r + EXP_POLY[1];
    for c in &EXP_POLY[2..] {
        p = p * r + c;
    }
    let p = p * r * r + r + 1.0;
    // 2^n from t's bits, which hold 1.5·2^23 + n: integer lane arithmetic (a float-to-int `as`
    // saturates and checks for NaN one lane at a time, which kept this loop scalar).
    p * f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23)
}

/// Runs `f` on one of rayon's pool threads while the caller waits (a forward pass, from the CLI,
/// the page's worker or a benchmark). The kernels' parallel loops inside then share work with the
/// other pool threads directly, and the stretches between them run on a pool thread's core,
/// instead of each loop being handed over from a third thread that sleeps until it ends: that
/// hand-over and wake-up cost 7 % of a 224-pixel forward on our 2-core machine. Meanwhile the other
/// pool threads [`keep_busy`] rather than sleep between the loops.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let done = AtomicBool::new(false);
    let mut out = None;
    rayon::scope(|s| {
        let (forward, done) = (rayon::current_thread_index(), &done);
        for _ in 1..rayon::current_num_threads() {
            s.spawn(move |_| keep_busy(done, forward));
        }
        // Set on the way out even if `f` panics, so the scope can end and pass the panic on.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _done = Done(done);
        out = Some(f());
    });
    out.expect("rayon::scope runs its closure before returning")
}

thread_local! {
    /// Whether this thread is inside [`keep_busy`].
    static KEEPING_BUSY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Until `done`, runs the pool's pending work as it appears, spinning in between. An idle rayon
/// thread soon sleeps, and a parallel loop then waits ~40 µs for it to wake (measured here: a loop
/// of two 100 µs halves after a 50 µs single-threaded stretch took 141 µs), and a forward pass has
/// a hundred such loops. Returns at once on the forward pass's own thread (which may take this job
/// itself while it waits, and would then never finish to set `done`) and on a thread already
/// keeping busy.
fn keep_busy(done: &AtomicBool, forward: Option<usize>) {
    if rayon::current_thread_index() == forward || KEEPING_BUSY.get() {
        return;
    }
    KEEPING_BUSY.set(true);
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            for _ in 0..32 {
                std::hint::spin_loop();
            }
        }
    }
    KEEPING_BUSY.set(false);
}

/// Rows per parallel task: below ~16k elements a task costs more than it saves.
fn chunk_len(len: usize, row: usize) -> usize {
    let row = row.max(1);
    let rows = (len / row).max(1);
    let tasks = rayon::current_num_threads().max(1);
    (rows.div_ceil(tasks) * row).max((1 << 14) / row * row).max(row)
}

/// Runs `f` over chunks of `data` (whole rows of `row` elements) on rayon's pool.
fn par_rows_mut(data: &mut [f32], row: usize, f: impl Fn(&mut [f32]) + Sync) {
    let chunk = chunk_len(data.len(), row);
    data.par_chunks_mut(chunk).for_each(|d| f(d));
}

fn contiguous_f32<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("{op} takes f32") };
    let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("{op} takes contiguous input") };
    Ok(&data[start..end])
}

/// Lane-wise accumulators let the compiler keep reductions in SIMD registers (float addition is
/// not associative, so a single running sum would force one element at a time).
const LANES: usize = 8;

/// `Σ f(v)` over `row` in [`LANES`] running sums.
#[inline(always)]
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in lanes.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

/// The largest value of `row` (−∞ when empty), in [`LANES`] running maxima. A comparison rather
/// than `f32::max`, whose NaN rule costs a compare and a blend per vector.
#[inline(always)]
fn lane_max(row: &[f32]) -> f32 {
    let bigger = |a: f32, b: f32| if b > a { b } else { a };
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = bigger(*m, v);
        }
    }
    chunks.remainder().iter().fold(lanes.iter().copied().fold(f32::NEG_INFINITY, bigger), |a, &b| bigger(a, b))
}

/// Softmax of each `row`-long row of `data`, in place.
#[inline(always)]
fn softmax_rows(data: &mut [f32], row: usize) {
    for d in data.chunks_exact_mut(row) {
        let max = lane_max(d);
        for v in d.iter_mut() {
            *v = exp_f32(*v - max);
        }
        let mut lanes = [0f32; LANES];
        let mut chunks = d.chunks_exact(LANES);
        for c in &mut chunks {
            for (a, &v) in lanes.iter_mut().zip(c) {
                *a += v;
            }
        }
        let inv = 1.0 / (lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>());
        for v in d.iter_mut() {
            *v *= inv;
        }
    }
}

/// Compiles `$body` three times on x86-64, for AVX-512 (16 lanes), AVX2+FMA (8 lanes) and baseline
/// SSE2 (the crate's target), picked at run time like gemm's kernels.
macro_rules! with_best_simd {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            /// # Safety
            /// Only where the CPU has AVX2 and FMA (checked with `is_x86_feature_detected!` just before).
            #[target_feature(enable = "avx2,fma")]
            unsafe fn wide<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            /// # Safety
            /// Only where the CPU has AVX-512F, AVX2 and FMA (checked with `is_x86_feature_detected!` just before).
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn widest<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: the features were just detected on this CPU.
                unsafe { widest(|| $body) }
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: the features were just detected on this CPU.
                unsafe { wide(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
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

#[inline(always)]
fn epilogue_rows(dst: &mut [f32], bias: &[f32], act: Option<Activation>) {
    for row in dst.chunks_exact_mut(bias.len()) {
        match act {
            None => row.iter_mut().zip(bias).for_each(|(v, b)| *v += b),
            Some(Activation::Relu) => row.iter_mut().zip(bias).for_each(|(v, b)| *v = (*v + b).max(0.0)),
            Some(Activation::Gelu) => row.iter_mut().zip(bias).for_each(|(v, b)| {
                let x = *v + b;
                *v = 0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2));
            }),
            Some(Activation::QuickGelu) => row.iter_mut().zip(bias).for_each(|(v, b)| {
                let x = *v + b;
                *v = x / (1.0 + exp_f32(-1.702 * x));
            }),
            // Not fused: `linear` applies it after this pass.
            Some(Activation::GeluTanh) => row.iter_mut().zip(bias).for_each(|(v, b)| *v += b),
        }
    }
}

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

/// `lhs @ rhs`, split across the rayon pool this code runs on: natively through gemm (the crate
/// candle's own CPU matmul calls), in WebAssembly through [`super::sgemm`]. candle sizes its split
/// from the OS's core count, which WebAssembly reports as one even when the threaded module has
/// started a pool of Web Workers; here the pool decides. Operands share their batch dimensions (any
/// strides); f32 on the CPU, else candle's matmul.
pub fn matmul(lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    let ours = lhs.dtype() == DType::F32
        && rhs.dtype() == DType::F32
        && matches!(lhs.device(), Device::Cpu)
        && lhs.rank() >= 2
        && lhs.rank() == rhs.rank()
        && lhs.dims()[..lhs.rank() - 2] == rhs.dims()[..rhs.rank() - 2];
    if ours {
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
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            // SAFETY: as for gemm below.
            unsafe {
                let threads = if by_batch { 1 } else { threads };
                let a = sgemm::Strided { ptr: a.as_ptr(), rs: sa[r - 2] as isize, cs: sa[r - 1] as isize };
                let b = sgemm::Strided { ptr: b.as_ptr(), rs: sb[r - 2] as isize, cs: sb[r - 1] as isize };
                sgemm::sgemm(m, n, k, out.as_mut_ptr().cast(), n, a, b, threads);
            }
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
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
        Matrix::Int8(q) => x2.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.apply_op1_no_bwd(&Int8MatMul(Arc::clone(q)))?,
    };
    let fused = y.dtype() == DType::F32 && matches!(y.device(), Device::Cpu) && y.is_contiguous();
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
    let mut dims = xs.dims().to_vec();
    let in_dim = dims.pop().unwrap_or(1);
    let x2 = xs.contiguous()?.reshape(((), in_dim))?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    let biases = biases.iter().map(|b| b.to_dtype(DType::F32)?.to_device(&Device::Cpu)).collect::<Result<Vec<_>>>()?;
    let bias = if biases.len() == 1 { biases[0].clone() } else { Tensor::cat(&biases, 0)? };
    let y = x2.apply_op2_no_bwd(&bias, &PackedLinear(ws, act))?;
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

/// `c (m × n, row stride ldc) = a (m × k) · b (k × n)` on this thread, operands given by their
/// (row, column) strides: gemm natively, [`super::sgemm`] in WebAssembly.
///
/// # Safety
/// Every element the strides address must be readable, and `c`'s m × n block writable.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_f32(m: usize, n: usize, k: usize, c: *mut f32, ldc: usize, a: *const f32, (ars, acs): (isize, isize), b: *const f32, (brs, bcs): (isize, isize)) {
    // SAFETY: the caller keeps this function's contract (its `# Safety`).
    unsafe {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        sgemm::sgemm(m, n, k, c, ldc, sgemm::Strided { ptr: a, rs: ars, cs: acs }, sgemm::Strided { ptr: b, rs: brs, cs: bcs }, 1);
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        gemm::gemm(m, n, k, c, 1, ldc as isize, false, a, acs, ars, b, bcs, brs, 0.0, 1.0, false, false, false, gemm::Parallelism::None);
    }
}

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
    let ours = [&update, residual].iter().all(|t| t.dtype() == DType::F32 && matches!(t.device(), Device::Cpu) && t.is_contiguous());
    if ours && update.shape() == residual.shape() {
        update.inplace_op2(residual, &AddInPlace)?;
        Ok(update)
    } else {
        update + residual
    }
}

/// `ln(x)` over the last dimension (candle-nn's runs one row per task with scalar sums).
pub fn layer_norm(x: &Tensor, ln: &LayerNorm) -> Result<Tensor> {
    let width = ln.weight().elem_count();
    if x.dtype() != DType::F32 || !matches!(x.device(), Device::Cpu) || ln.bias().is_none() || x.dims().last() != Some(&width) {
        return ln.forward(x);
    }
    x.contiguous()?.apply_op1_no_bwd(&LayerNormOp::of(ln)?)
}

/// `(x + y, ln(x + y))`: a transformer block's residual add and the LayerNorm after it, in one
/// pass, both results views of one buffer.
pub fn add_layer_norm(x: &Tensor, y: &Tensor, ln: &LayerNorm) -> Result<(Tensor, Tensor)> {
    let ours = [x, y].iter().all(|t| t.dtype() == DType::F32 && matches!(t.device(), Device::Cpu)) && x.shape() == y.shape();
    if !ours || ln.bias().is_none() || x.dims().last() != Some(&ln.weight().elem_count()) {
        let sum = (x + y)?;
        let normed = ln.forward(&sum)?;
        return Ok((sum, normed));
    }
    let both = x.contiguous()?.apply_op2_no_bwd(&y.contiguous()?, &LayerNormOp::of(ln)?)?;
    Ok((both.get(0)?, both.get(1)?))
}

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
    fused_attention(q, k, v, heads, scale, mask, cfg!(not(target_arch = "wasm32")) && packed::available())
}

/// [`attention`], keys and values packed for the products or read through their strides.
fn fused_attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f64, mask: Option<&Tensor>, pack: bool) -> Result<Tensor> {
    let (_, tq, d) = q.dims3()?;
    let tk = k.dim(1)?;
    let cpu_f32 = [q, k, v].iter().all(|t| t.dtype() == DType::F32 && matches!(t.device(), Device::Cpu));
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

/// [`scaled_exp`] on the best SIMD this CPU has. Unmasked rows (every vision row) take the AVX-512
/// or AVX2 one where it exists: the compiler keeps the portable loop to 8 lanes with separate
/// multiplies and adds, and it was 9 % of a 448-pixel forward on Zen 5.
fn scaled_exp_row(row: &mut [f32], scale: f32, mask: Option<&[f32]>) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if mask.is_none() {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was just detected on this CPU.
            return unsafe { avx512::scaled_exp(row, scale) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the features were just detected on this CPU.
            return unsafe { avx2::scaled_exp(row, scale) };
        }
    }
    with_best_simd!(scaled_exp(row, scale, mask))
}

/// `row ← exp(row · scale + mask − max)` in place, returning the row's sum: softmax but for the
/// division. Two passes over the row (max, then exponentials and their sum).
#[inline(always)]
fn scaled_exp(row: &mut [f32], scale: f32, mask: Option<&[f32]>) -> f32 {
    let scale = match mask {
        Some(m) => {
            row.iter_mut().zip(m).for_each(|(v, m)| *v = *v * scale + m);
            1.0
        }
        None => scale,
    };
    let max = lane_max(row);
    // A fully masked row (never one of the causal mask's) has no finite maximum: shifting by 0
    // gives it equal, tiny weights rather than NaN.
    let shift = if max == f32::NEG_INFINITY { 0.0 } else { max * scale };
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (s, v) in sums.iter_mut().zip(c) {
            *v = exp_f32(*v * scale - shift);
            *s += *v;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp_f32(*v * scale - shift);
        sum += *v;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{EXP_POLY, EXP_RANGE, LN2_HI, LN2_LO};

    /// The unmasked [`super::scaled_exp`] in 16 lanes, with [`super::exp_f32`]'s polynomial in
    /// fused multiply-adds and 2ⁿ by `scalef`; the row's tail through lane masks.
    ///
    /// # Safety
    /// Only where the CPU has AVX-512F (checked before it is chosen).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scaled_exp(row: &mut [f32], scale: f32) -> f32 {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            let (p, len) = (row.as_mut_ptr(), row.len());
            let full = len / 16 * 16;
            let tail: __mmask16 = ((1u32 << (len - full)) - 1) as __mmask16;
            let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
            for i in (0..full).step_by(16) {
                max = _mm512_max_ps(max, _mm512_loadu_ps(p.add(i)));
            }
            max = _mm512_mask_max_ps(max, tail, max, _mm512_maskz_loadu_ps(tail, p.add(full)));
            let max = _mm512_reduce_max_ps(max);
            // As in the portable one: a row with no finite maximum is shifted by 0, not turned to NaN.
            let shift = _mm512_set1_ps(if max == f32::NEG_INFINITY { 0.0 } else { max * scale });
            let scale = _mm512_set1_ps(scale);
            let mut sum = _mm512_setzero_ps();
            for i in (0..full).step_by(16) {
                let e = exp(_mm512_fmsub_ps(_mm512_loadu_ps(p.add(i)), scale, shift));
                _mm512_storeu_ps(p.add(i), e);
                sum = _mm512_add_ps(sum, e);
            }
            if tail != 0 {
                let e = exp(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(tail, p.add(full)), scale, shift));
                _mm512_mask_storeu_ps(p.add(full), tail, e);
                sum = _mm512_mask_add_ps(sum, tail, sum, e);
            }
            _mm512_reduce_add_ps(sum)
        }
    }

    /// e^x in 16 lanes: Cephes' range reduction and polynomial, as [`super::exp_f32`].
    ///
    /// # Safety
    /// Only where the CPU has AVX-512F (called from functions that enable it).
    #[inline(always)]
    unsafe fn exp(x: __m512) -> __m512 {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            let (lo, hi) = EXP_RANGE;
            let x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(hi)), _mm512_set1_ps(lo));
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)));
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
            let mut q = _mm512_fmadd_ps(r, _mm512_set1_ps(EXP_POLY[0]), _mm512_set1_ps(EXP_POLY[1]));
            for &c in &EXP_POLY[2..] {
                q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(c));
            }
            let q = _mm512_fmadd_ps(_mm512_mul_ps(q, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
            _mm512_scalef_ps(q, n)
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{EXP_POLY, EXP_RANGE, LN2_HI, LN2_LO};

    /// The unmasked [`super::scaled_exp`] in 8 lanes with fused multiply-adds; the row's last
    /// (under 8) values through [`super::exp_f32`].
    ///
    /// # Safety
    /// Only where the CPU has AVX2 and FMA (checked before it is chosen).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn scaled_exp(row: &mut [f32], scale: f32) -> f32 {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            let (p, full) = (row.as_mut_ptr(), row.len() / 8 * 8);
            let mut lanes = [0f32; 8];
            let mut max = _mm256_set1_ps(f32::NEG_INFINITY);
            for i in (0..full).step_by(8) {
                max = _mm256_max_ps(max, _mm256_loadu_ps(p.add(i)));
            }
            _mm256_storeu_ps(lanes.as_mut_ptr(), max);
            let max = lanes.iter().chain(&row[full..]).fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
            // As in the portable one: a row with no finite maximum is shifted by 0, not turned to NaN.
            let shift = if max == f32::NEG_INFINITY { 0.0 } else { max * scale };
            let (vshift, vscale) = (_mm256_set1_ps(shift), _mm256_set1_ps(scale));
            let mut sum = _mm256_setzero_ps();
            for i in (0..full).step_by(8) {
                let e = exp(_mm256_fmsub_ps(_mm256_loadu_ps(p.add(i)), vscale, vshift));
                _mm256_storeu_ps(p.add(i), e);
                sum = _mm256_add_ps(sum, e);
            }
            _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
            let mut total: f32 = lanes.iter().sum();
            for v in &mut row[full..] {
                *v = super::exp_f32(*v * scale - shift);
                total += *v;
            }
            total
        }
    }

    /// e^x in 8 lanes: Cephes' range reduction and polynomial, as [`super::exp_f32`]; 2ⁿ built in
    /// the exponent bits (n stays within −126..127 on the clamped range).
    ///
    /// # Safety
    /// Only where the CPU has AVX2 and FMA (called from functions that enable them).
    #[inline(always)]
    unsafe fn exp(x: __m256) -> __m256 {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            let (lo, hi) = EXP_RANGE;
            let x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(hi)), _mm256_set1_ps(lo));
            let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)));
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
            let mut q = _mm256_fmadd_ps(r, _mm256_set1_ps(EXP_POLY[0]), _mm256_set1_ps(EXP_POLY[1]));
            for &c in &EXP_POLY[2..] {
                q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(c));
            }
            let q = _mm256_fmadd_ps(_mm256_mul_ps(q, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
            let pow2n = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
            _mm256_mul_ps(q, _mm256_castsi256_ps(pow2n))
        }
    }
}

/// Softmax over the last dimension of attention scores, overwriting them (f32 on the CPU; a new
/// tensor elsewhere). The scores are 6 × 848² floats per layer at 448 pixels: working in place
/// saves a 17 MB allocation and half the memory traffic. `scores` must own its storage (fresh
/// from a matmul), since every view of that storage changes.
pub(crate) fn softmax_last_dim_in_place(scores: Tensor) -> Result<Tensor> {
    if scores.dtype() == DType::F32 && matches!(scores.device(), Device::Cpu) && scores.is_contiguous() {
        scores.inplace_op1(&SoftmaxLastDimInPlace)?;
        Ok(scores)
    } else {
        candle_nn::ops::softmax_last_dim(&scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The other pool threads keep busy inside `on_pool`, yet its loops' work is all done, and a
    /// panic inside reaches the caller rather than leaving them spinning.
    #[test]
    fn on_pool_runs_parallel_loops_and_passes_panics_on() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            for _ in 0..50 {
                let sum: u64 = on_pool(|| (0..10_000u64).into_par_iter().map(|i| i * i).sum());
                assert_eq!(sum, (0..10_000u64).map(|i| i * i).sum::<u64>());
            }
            let caught = std::panic::catch_unwind(|| on_pool(|| -> u32 { panic!("inside the forward") }));
            assert!(caught.is_err());
            assert_eq!(on_pool(|| 7), 7, "the pool works after a panic");
        });
    }

    /// erf in f64 by its Maclaurin series (|x| ≤ 3) or continued fraction, for checking only.
    fn erf_f64(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc continued fraction (Lentz), enough terms for 1e-15.
            let t = x.abs();
            let mut f = t;
            for k in (1..60).rev() {
                f = t + (k as f64 / 2.0) / f;
            }
            let erfc = (-t * t).exp() / (f * std::f64::consts::PI.sqrt());
            return (1.0 - erfc).copysign(x);
        }
        let mut sum = 0.0;
        let mut term = x;
        for n in 0..100 {
            sum += term / (2 * n + 1) as f64;
            term *= -x * x / (n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_approximation_is_accurate_to_float_precision() {
        let mut worst = 0f64;
        for i in -60000..=60000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((erf_f32(x) as f64 - erf_f64(x as f64)).abs());
        }
        assert!(worst < 5e-7, "max |erf error| {worst:e}");
    }

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

    #[test]
    fn exp_approximation_is_within_a_few_ulp() {
        let mut worst = 0f64;
        for i in -870000..=880000 {
            let x = i as f32 * 1e-4;
            let want = (x as f64).exp();
            worst = worst.max(((exp_f32(x) as f64 - want) / want).abs());
        }
        assert!(worst < 4e-7, "max relative error {worst:e}");
    }

    /// The AVX-512 and AVX2 rows against the portable one and against f64: every tail length, the
    /// full input range, and a row with no finite maximum.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_exp_rows_match_the_portable_ones() {
        type Row = unsafe fn(&mut [f32], f32) -> f32;
        let mut rows: Vec<(&str, Row)> = Vec::new();
        if is_x86_feature_detected!("avx512f") {
            rows.push(("AVX-512", avx512::scaled_exp));
        } else {
            eprintln!("no AVX-512: its exponential row is not checked on this CPU");
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            rows.push(("AVX2", avx2::scaled_exp));
        } else {
            eprintln!("no AVX2 and FMA: their exponential row is not checked on this CPU");
        }
        let scale = 0.125f32;
        for (name, simd) in rows {
            for len in 1..=50 {
                let row: Vec<f32> = (0..len).map(|i| ((i * 7919 % 1750) as f32 - 870.0) * 0.8).collect();
                let (mut fast, mut portable) = (row.clone(), row.clone());
                // SAFETY: the features were detected above.
                let fast_sum = unsafe { simd(&mut fast, scale) };
                let portable_sum = scaled_exp(&mut portable, scale, None);
                let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64 * scale as f64;
                for ((f, p), x) in fast.iter().zip(&portable).zip(&row) {
                    let arg = (*x as f64 * scale as f64 - max).max(EXP_RANGE.0 as f64);
                    // exp's own few ulp, plus the f32 rounding of its argument (one ulp of `arg`).
                    let tolerance = 4e-7 + arg.abs() * 1.2e-7;
                    let want = arg.exp();
                    assert!(((*f as f64 - want) / want).abs() < tolerance, "{name}, len {len}: exp {f} vs {want}");
                    assert!((((f - p) / p).abs() as f64) < 2.0 * tolerance, "{name}, len {len}: {f} vs portable {p}");
                }
                assert!(((fast_sum - portable_sum) / portable_sum).abs() < 1e-6, "{name}, len {len}: sum {fast_sum} vs {portable_sum}");
            }
            let mut masked = vec![f32::NEG_INFINITY; 20];
            // SAFETY: as above.
            let sum = unsafe { simd(&mut masked, scale) };
            assert!(sum.is_finite() && masked.iter().all(|&v| v == masked[0]), "{name}: {masked:?}");
        }
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
