//! f32 matrix products for WebAssembly SIMD (simd128), where the gemm crate's kernel is slow: it keeps
//! 12 accumulators and 4 operand vectors live, which with the one register V8 reserves for itself is
//! more than x86's 16 vector registers, so it spills (a Chromium profile of a 448-pixel forward: 82 %
//! of the time in that kernel). This one computes 4 rows × 8 columns per step (8 accumulators, two
//! B vectors, one broadcast A value; 5 or 6 rows spilled and ran 1.5× slower) over A and B packed in
//! 4-row strips and 8-column panels, 512 of k and 64 rows of A at a time (a panel then stays in L1,
//! a block of A in L2), and splits the columns across rayon's pool.
//! Written over a 4-lane vector type: simd128 in wasm, plain arrays elsewhere, so that native unit
//! tests check the same packing, blocking and edges.

use rayon::prelude::*;

const MR: usize = 4;
const NR: usize = 8;
const KC: usize = 512;
/// Rows of A packed at a time (a multiple of MR): 64 × 512 floats, 128 KB, instead of all of A
/// (a 448-pixel window's 848 tokens: 1.3 MB per product, held in WebAssembly's heap for good).
const MC: usize = 64;

use super::arch::lanes::{self, V};

/// A matrix operand read through its strides (in elements).
#[derive(Clone, Copy)]
pub struct Strided {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

// SAFETY: operands are only read, and outlive the call that shares them across the pool.
unsafe impl Send for Strided {}
unsafe impl Sync for Strided {}

impl Strided {
    /// # Safety
    /// `(row, col)` must address an element of the operand (as `pointer::offset`).
    #[inline(always)]
    unsafe fn at(&self, row: usize, col: usize) -> *const f32 {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            self.ptr.offset(row as isize * self.rs + col as isize * self.cs)
        }
    }
}

#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: each task writes its own columns of the output.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// `c (m × n, rows ldc apart) = a (m × k) · b (k × n)`, on up to `threads` of rayon's pool.
///
/// # Safety
/// Every element `a` and `b` address through their strides for these sizes must be readable, and
/// `c` must hold `m × n` writable floats that nothing else reads or writes meanwhile.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(m: usize, n: usize, k: usize, c: *mut f32, ldc: usize, a: Strided, b: Strided, threads: usize) {
    // SAFETY: the caller keeps this function's contract (its `# Safety`).
    unsafe {
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            for i in 0..m {
                std::ptr::write_bytes(c.add(i * ldc), 0, n);
            }
            return;
        }
        let panels = n.div_ceil(NR);
        let tasks = threads.clamp(1, panels);
        let per = panels.div_ceil(tasks);
        let out = Out(c);
        let task = move |t: usize| {
            let (p0, p1) = (t * per, ((t + 1) * per).min(panels));
            if p0 < p1 {
                columns(m, ldc, k, out, a, b, p0 * NR, (p1 * NR).min(n));
            }
        };
        if tasks > 1 {
            (0..tasks).into_par_iter().for_each(task);
        } else {
            task(0);
        }
    }
}

/// Columns `j0..j1` of the product (`c`'s rows `ldc` apart).
///
/// # Safety
/// As [`sgemm`]'s, for columns `j0..j1` of `c`, which no other thread writes meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn columns(m: usize, ldc: usize, k: usize, c: Out, a: Strided, b: Strided, j0: usize, j1: usize) {
    // SAFETY: the caller keeps this function's contract (its `# Safety`).
    unsafe {
        let panels = (j1 - j0).div_ceil(NR);
        let mut packed_b = vec![0f32; KC.min(k) * NR * panels];
        let mut packed_a = vec![0f32; KC.min(k) * MC.min(m.next_multiple_of(MR))];
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            // B's rows k0.. as 8-column panels, each kc × 8 contiguous (zeros past column j1).
            for p in 0..panels {
                let panel = &mut packed_b[p * kc * NR..(p + 1) * kc * NR];
                for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
                    for (cc, v) in row.iter_mut().enumerate() {
                        let j = j0 + p * NR + cc;
                        *v = if j < j1 { *b.at(k0 + kk, j) } else { 0.0 };
                    }
                }
            }
            let b_block = packed_b.as_ptr();
            for i0 in (0..m).step_by(MC) {
                let mb = MC.min(m - i0);
                let strips = mb.div_ceil(MR);
                // A's rows i0.., columns k0.. as 4-row strips, each kc × 4 contiguous (zeros past row m).
                for s in 0..strips {
                    let strip = &mut packed_a[s * kc * MR..(s + 1) * kc * MR];
                    for (kk, col) in strip.chunks_exact_mut(MR).enumerate() {
                        for (r, v) in col.iter_mut().enumerate() {
                            let i = s * MR + r;
                            *v = if i < mb { *a.at(i0 + i, k0 + kk) } else { 0.0 };
                        }
                    }
                }
                for p in 0..panels {
                    let cols = NR.min(j1 - j0 - p * NR);
                    let bp = b_block.add(p * kc * NR);
                    let cp = c.0.add(i0 * ldc + j0 + p * NR);
                    for s in 0..strips {
                        let rows = MR.min(mb - s * MR);
                        kernel(kc, packed_a.as_ptr().add(s * kc * MR), bp, cp.add(s * MR * ldc), ldc, rows, cols, k0 == 0);
                    }
                }
            }
        }
    }
}

/// A 4 × 8 block of `c` (its first `rows` × `cols` kept): set (`first` k block) or added to.
///
/// # Safety
/// `ap` must address a packed `4 × kc` block of A and `bp` a packed `kc × 8` block of B, and `c` `rows × cols` writable floats (`rows ≤ 4`, `cols ≤ 8`) at row stride `rs_c`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(kc: usize, ap: *const f32, bp: *const f32, c: *mut f32, rs_c: usize, rows: usize, cols: usize, first: bool) {
    // SAFETY: the caller keeps this function's contract (its `# Safety`).
    unsafe {
        let mut lo = [lanes::zero(); MR];
        let mut hi = [lanes::zero(); MR];
        for kk in 0..kc {
            let b0 = lanes::load(bp.add(kk * NR));
            let b1 = lanes::load(bp.add(kk * NR + 4));
            let a = ap.add(kk * MR);
            for r in 0..MR {
                let av = lanes::splat(a.add(r));
                lo[r] = lanes::mul_add(lo[r], av, b0);
                hi[r] = lanes::mul_add(hi[r], av, b1);
            }
        }
        for r in 0..rows {
            let row = c.add(r * rs_c);
            let (mut x0, mut x1): (V, V) = (lo[r], hi[r]);
            if cols == NR {
                if !first {
                    x0 = lanes::add(x0, lanes::load(row));
                    x1 = lanes::add(x1, lanes::load(row.add(4)));
                }
                lanes::store(row, x0);
                lanes::store(row.add(4), x1);
            } else {
                let mut tmp = [0f32; NR];
                lanes::store(tmp.as_mut_ptr(), x0);
                lanes::store(tmp.as_mut_ptr().add(4), x1);
                for (cc, v) in tmp.iter().take(cols).enumerate() {
                    let out = row.add(cc);
                    *out = if first { *v } else { *out + v };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Products of every edge case (rows not a multiple of 4, columns not of 8, k over one block,
    /// rows over one block of A,
    /// transposed and offset operands, an output with a wider row stride) against the plain triple loop.
    #[test]
    fn matches_the_triple_loop() {
        let mut seed = 1u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(m, n, k) in &[(1, 1, 1), (5, 9, 3), (13, 17, 300), (8, 16, 256), (7, 3, 513), (33, 70, 64), (150, 9, 520)] {
            for threads in [1, 3] {
                // a stored transposed (k × m), b stored row-major (k × n) with a row pitch of n + 2.
                let at: Vec<f32> = (0..k * m).map(|_| rnd()).collect();
                let bs: Vec<f32> = (0..k * (n + 2)).map(|_| rnd()).collect();
                let a = Strided { ptr: at.as_ptr(), rs: 1, cs: m as isize };
                let b = Strided { ptr: bs.as_ptr(), rs: (n + 2) as isize, cs: 1 };
                // c's rows one float apart more than n: that column must stay untouched.
                let ldc = n + 1;
                let mut c = vec![f32::NAN; m * ldc];
                unsafe { sgemm(m, n, k, c.as_mut_ptr(), ldc, a, b, threads) };
                for i in 0..m {
                    assert!(c[i * ldc + n].is_nan(), "{m}x{n}x{k}: wrote past column {n}");
                    for j in 0..n {
                        let want: f32 = (0..k).map(|l| at[l * m + i] * bs[l * (n + 2) + j]).sum();
                        let got = c[i * ldc + j];
                        assert!((got - want).abs() < 1e-4 * (k as f32).sqrt(), "{m}x{n}x{k} [{i},{j}]: {got} vs {want}");
                    }
                }
            }
        }
        let mut c = vec![f32::NAN; 6];
        unsafe { sgemm(2, 3, 0, c.as_mut_ptr(), 3, Strided { ptr: [].as_ptr(), rs: 0, cs: 0 }, Strided { ptr: [].as_ptr(), rs: 0, cs: 0 }, 1) };
        assert_eq!(c, vec![0.0; 6]);
    }
}
