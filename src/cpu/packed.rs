//! A weight matrix packed once at load for the CPU's matrix product (x86-64 with AVX2 and FMA, and
//! AVX-512 where the CPU has it; WebAssembly SIMD).
//!
//! A general matmul (gemm, the crate candle calls) repacks both operands on every call; for
//! `x · Wᵀ` with a fixed weight that repacking was 14 % of a 224-pixel image forward, and the
//! weights are the larger operand there. Here `W (n × k)` is stored once as panels of `nr` output
//! columns, each panel k rows of `nr` contiguous floats, which is the order the register tile
//! reads them in: two weight vectors and one broadcast per step, into 6 × 16 accumulators with
//! AVX2 (BLIS' Haswell kernel shape) or 12 × 32 with AVX-512 (onnxruntime's MLAS shape; on a Zen 5,
//! whose AVX-512 units are full width, it made the image encoder 1.8× faster than the AVX2 tile).
//! The packed matrix replaces the tensor, so the weights are not held twice.

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

use super::arch::{self, Tile};

/// Depth per pass: a 256-deep panel block (16 or 32 KB) stays in L1 while a block of rows runs over it.
const KC: usize = 256;
/// Rows per task: a multiple of both tiles' rows, whose 256-deep slice (96 KB) stays in L2 across panels.
const MC: usize = 96;
/// Output columns per task.
const TASK_COLS: usize = 64;

/// Whether this CPU runs the packed kernels; elsewhere weights stay tensors for gemm. In
/// WebAssembly (built with SIMD) f32 weights were otherwise repacked by every product: a pass over
/// each weight per product, much of a 224-pixel forward, where a product has only 260 rows.
pub fn available() -> bool {
    Tile::best().is_some()
}

/// The tile weights are packed for: this CPU's best, else the 4-lane one (whose products
/// [`available`] refuses here; only tests pack for it off WebAssembly).
fn best_tile() -> Tile {
    Tile::best().unwrap_or(Tile::Simd128)
}

/// `W (rows × cols)` as panels of `nr` rows of W, each stored column by column (`cols × nr`),
/// rows past the last zero.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    data: Vec<f32>,
    rows: usize,
    cols: usize,
    tile: Tile,
}

impl PackedMatrix {
    /// Packs row-major `w` of `rows × cols`.
    pub fn pack(w: &[f32], rows: usize, cols: usize) -> Self {
        Self::pack_strided(w, rows, cols, cols, 1)
    }

    /// Packs `W (rows × cols)` with `W[r][c] = src[r·rs + c·cs]`: a weight as stored, or an
    /// attention head's keys (`rs` the token stride) or values transposed (`cs` the token stride).
    pub fn pack_strided(src: &[f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        Self::pack_for(best_tile(), src, rows, cols, rs, cs)
    }

    /// Packs `W (rows × cols)` from its rows: `row(r, out)` writes row r's `cols` values into
    /// `out` (an int8 weight's rows widened through one row of scratch straight into the panels).
    pub fn from_rows(rows: usize, cols: usize, mut row: impl FnMut(usize, &mut [f32])) -> Self {
        let tile = best_tile();
        let nr = tile.nr();
        let mut data = vec![0f32; rows.div_ceil(nr) * nr * cols];
        let mut scratch = vec![0f32; cols];
        for r in 0..rows {
            row(r, &mut scratch);
            let panel = &mut data[(r / nr) * nr * cols..][..nr * cols];
            for (kk, &v) in scratch.iter().enumerate() {
                panel[kk * nr + r % nr] = v;
            }
        }
        Self { data, rows, cols, tile }
    }

    /// As [`pack_strided`](Self::pack_strided), for `tile`.
    fn pack_for(tile: Tile, src: &[f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        let nr = tile.nr();
        let panels = rows.div_ceil(nr);
        let mut data = vec![0f32; panels * nr * cols];
        // Reads run along whichever of W's dimensions is contiguous in `src`.
        let fill = |(p, panel): (usize, &mut [f32])| {
            let width = nr.min(rows - p * nr);
            if cs == 1 {
                for j in 0..width {
                    let row = &src[(p * nr + j) * rs..][..cols];
                    for (kk, &v) in row.iter().enumerate() {
                        panel[kk * nr + j] = v;
                    }
                }
            } else {
                for kk in 0..cols {
                    for j in 0..width {
                        panel[kk * nr + j] = src[(p * nr + j) * rs + kk * cs];
                    }
                }
            }
        };
        // Weights are packed across the pool; an attention head's keys inside a task.
        if rows * cols >= 1 << 16 {
            data.par_chunks_mut(nr * cols.max(1)).enumerate().for_each(fill);
        } else {
            data.chunks_mut(nr * cols.max(1)).enumerate().for_each(fill);
        }
        Self { data, rows, cols, tile }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element `(r, c)` of W.
    #[inline]
    fn at(&self, r: usize, c: usize) -> f32 {
        let nr = self.tile.nr();
        self.data[(r / nr) * nr * self.cols + c * nr + r % nr]
    }

    /// Row `r` of W into `out` (`cols` floats).
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        for (c, o) in out.iter_mut().enumerate() {
            *o = self.at(r, c);
        }
    }

    /// W unpacked, as a `(rows, cols)` tensor.
    pub fn to_tensor(&self) -> Result<Tensor> {
        let mut out = vec![0f32; self.rows * self.cols];
        out.par_chunks_mut(self.cols.max(1)).enumerate().for_each(|(r, row)| self.row_into(r, row));
        Tensor::from_vec(out, (self.rows, self.cols), &Device::Cpu)
    }

    /// Row `r` times `factor[r]`.
    pub fn scale_rows(&mut self, factor: &[f32]) {
        let (rows, cols, nr) = (self.rows, self.cols, self.tile.nr());
        for (p, panel) in self.data.chunks_mut(nr * cols.max(1)).enumerate() {
            for (kk, v) in panel.iter_mut().enumerate() {
                let r = p * nr + kk % nr;
                if r < rows {
                    *v *= factor[r];
                }
            }
        }
    }

    /// `x (m × cols) · Wᵀ` as an `m × rows` matrix: [`side_by_side`] with one matrix.
    pub fn matmul(&self, x: &[f32], m: usize, epilogue: impl Fn(&mut [f32], usize) + Sync) -> Vec<f32> {
        side_by_side(&[self], x, m, epilogue)
    }

    /// `c (m × rows, row stride ldc) = a (m × cols, row stride lda) · Wᵀ` on this thread.
    ///
    /// # Safety
    /// `a` must address m rows of `cols` floats at stride `lda`, `c` m rows of `rows` at `ldc`.
    pub unsafe fn product(&self, a: *const f32, lda: usize, m: usize, c: *mut f32, ldc: usize) {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            assert!(available(), "packed products need AVX2 and FMA, or WebAssembly SIMD");
            let panels = self.rows.div_ceil(self.tile.nr());
            let mut r0 = 0;
            while r0 < m {
                let rows = MC.min(m - r0);
                self.block(a.add(r0 * lda), lda, rows, 0, panels, c.add(r0 * ldc), ldc);
                r0 += rows;
            }
        }
    }

    /// `m` rows (from `a`, stride `lda`) × panels `p0..p1` of the product, into `c` (stride `ldc`).
    ///
    /// # Safety
    /// `a` must address `m` rows of the matrix's `cols` floats at stride `lda`, and `c` `m` rows of its `rows` floats at stride `ldc`, writable, columns `p0 · nr..` of which no other thread writes meanwhile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(&self, a: *const f32, lda: usize, m: usize, p0: usize, p1: usize, c: *mut f32, ldc: usize) {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            let (n, k, nr, mr) = (self.rows, self.cols, self.tile.nr(), self.tile.mr());
            for p in p0..p1 {
                let cols = nr.min(n - p * nr);
                let mut k0 = 0;
                while k0 < k {
                    let kc = KC.min(k - k0);
                    let b = self.data.as_ptr().add(p * nr * k + k0 * nr);
                    let mut i = 0;
                    while i < m {
                        let rows = mr.min(m - i);
                        arch::tile(self.tile, rows, cols, kc, a.add(i * lda + k0), lda, b, c.add(i * ldc + p * nr), ldc, k0 > 0);
                        i += rows;
                    }
                    k0 += kc;
                }
            }
        }
    }
}

/// `[x · W₁ᵀ | x · W₂ᵀ | …]`, `x (m × cols)` against matrices of the same `cols`, as one
/// `m × Σ rows` matrix (an attention's query, key and value projections in one pass over x and one
/// parallel loop), split across rayon's pool. `epilogue(part, c0)` then runs on each finished part
/// of an output row (its columns `c0..c0 + part.len()`) while the block is still in cache. The
/// output is not zeroed first: every element is written once.
pub fn side_by_side(ws: &[&PackedMatrix], x: &[f32], m: usize, epilogue: impl Fn(&mut [f32], usize) + Sync) -> Vec<f32> {
    // The kernels are AVX2+FMA instructions natively: refuse rather than fault on a CPU without them.
    assert!(available(), "packed products need AVX2 and FMA, or WebAssembly SIMD");
    let k = ws.first().map_or(0, |w| w.cols);
    assert!(ws.iter().all(|w| w.cols == k), "side-by-side products share their depth");
    assert!(x.len() >= m * k, "packed matmul: {} inputs for {m} rows of {k}", x.len());
    let n: usize = ws.iter().map(|w| w.rows).sum();
    if k == 0 {
        let mut out = vec![0f32; m * n];
        out.chunks_exact_mut(n.max(1)).for_each(|row| epilogue(row, 0));
        return out;
    }
    // Blocks of panels, each with its matrix and that matrix's first output column.
    let mut blocks = Vec::new();
    let mut c = 0;
    for w in ws {
        let (nr, panels) = (w.tile.nr(), w.rows.div_ceil(w.tile.nr()));
        let per_task = (TASK_COLS / nr).max(1);
        blocks.extend((0..panels).step_by(per_task).map(|p0| (*w, c, p0, (p0 + per_task).min(panels))));
        c += w.rows;
    }
    let row_blocks = m.div_ceil(MC);
    let mut dst: Vec<f32> = Vec::with_capacity(m * n);
    let out = OutPtr(dst.spare_capacity_mut().as_mut_ptr().cast());
    // Consecutive tasks share a block of panels, and rayon hands each thread a run of consecutive
    // tasks: each weight byte comes from memory once and then stays in one core's L2 across the
    // row blocks (the weights outweigh the activations here).
    let task = |t: usize| {
        let ((w, c, p0, p1), rb) = (blocks[t / row_blocks], t % row_blocks);
        let (r0, r1) = (rb * MC, (rb * MC + MC).min(m));
        // SAFETY: the task writes rows r0..r1 of this matrix's columns p0·nr..min(p1·nr, rows),
        // placed from column c: disjoint from every other task's block, inside the m × n output.
        unsafe { w.block(x.as_ptr().add(r0 * k), k, r1 - r0, p0, p1, out.at(r0 * n + c), n) };
        let nr = w.tile.nr();
        let (c0, c1) = (c + p0 * nr, c + (p1 * nr).min(w.rows));
        for i in r0..r1 {
            // SAFETY: as above; this row part is this task's alone and was just written.
            epilogue(unsafe { std::slice::from_raw_parts_mut(out.at(i * n + c0), c1 - c0) }, c0);
        }
    };
    for_each_task(blocks.len() * row_blocks, task);
    // SAFETY: the tasks wrote every row of every matrix's columns (k > 0).
    unsafe { dst.set_len(m * n) };
    dst
}

/// Runs `task(0..tasks)` on rayon's pool, one task per rayon job: otherwise rayon leaves each
/// thread a quarter of the tasks as one job that cannot be stolen, and a thread that finishes first
/// waits out the other's last quarter (a tenth of a 2-thread forward's time, measured with perf).
/// Consecutive tasks still go to one thread until another steals (see [`side_by_side`]).
pub(crate) fn for_each_task(tasks: usize, task: impl Fn(usize) + Sync + Send) {
    if rayon::current_num_threads() > 1 && tasks > 1 {
        (0..tasks).into_par_iter().with_max_len(1).for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
}

/// An output buffer that parallel tasks write in disjoint parts (here and in `super::linear` and `super::attention`).
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: every user has its tasks write disjoint parts of the output.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Element `i` (a method, so closures capture the `Sync` wrapper rather than the pointer).
    ///
    /// # Safety
    /// `i` must lie within the output the pointer addresses (as `pointer::add`).
    pub(crate) unsafe fn at(self, i: usize) -> *mut f32 {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            self.0.add(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 - 1000.0) * 1e-3).collect()
    }

    /// `x · Wᵀ` in f64, the order-independent reference.
    fn naive(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|c| x[i * k + c] as f64 * w[j * k + c] as f64).sum::<f64>() as f32;
            }
        }
        out
    }

    /// Every tile this CPU runs (the AVX2 one wherever the packed kernels run at all), and
    /// WebAssembly's, whose kernel runs here over plain arrays.
    fn tiles() -> Vec<Tile> {
        let mut t = vec![Tile::Avx2, Tile::Simd128];
        if Tile::best() == Some(Tile::Avx512) {
            t.push(Tile::Avx512);
        } else {
            eprintln!("no AVX-512: its tile is not checked on this CPU");
        }
        t
    }

    /// Partial register tiles (rows not a multiple of 6 or 12, columns not of 16 or 32), depths
    /// past one 256-deep pass, several tasks per product, and one row, with each tile.
    #[test]
    fn packed_products_match_the_plain_product() {
        if !available() {
            eprintln!("no AVX2 and FMA: the packed kernels are not used on this CPU");
            return;
        }
        for tile in tiles() {
            for (m, k, n) in [(1, 5, 3), (7, 300, 17), (100, 64, 70), (260, 384, 96), (13, 600, 33), (25, 40, 100)] {
                let (x, w) = (values(m * k, 1), values(n * k, 2));
                let want = naive(&x, &w, m, k, n);
                let packed = PackedMatrix::pack_for(tile, &w, n, k, k, 1);
                let got = packed.matmul(&x, m, |part, c0| part.iter_mut().enumerate().for_each(|(j, v)| *v += (c0 + j) as f32));
                let worst = got.iter().zip(&want).enumerate().map(|(i, (g, w))| (g - w - (i % n) as f32).abs()).fold(0f32, f32::max);
                assert!(worst < 1e-4, "{tile:?} {m}×{k}×{n}: max |diff| {worst:e}");
                assert_eq!(packed.to_tensor().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), w, "{tile:?} unpacks");
            }
        }
        // Three matrices side by side (widths not multiples of a panel), as one product.
        let (m, k) = (29, 70);
        let x = values(m * k, 6);
        let ws: Vec<Vec<f32>> = [20, 5, 33].iter().enumerate().map(|(i, &n)| values(n * k, 7 + i)).collect();
        let packed: Vec<PackedMatrix> = ws.iter().zip([20, 5, 33]).map(|(w, n)| PackedMatrix::pack(w, n, k)).collect();
        let got = side_by_side(&packed.iter().collect::<Vec<_>>(), &x, m, |_, _| {});
        let parts: Vec<Vec<f32>> = ws.iter().zip([20, 5, 33]).map(|(w, n)| naive(&x, w, m, k, n)).collect();
        for i in 0..m {
            let want: Vec<f32> = parts.iter().zip([20, 5, 33]).flat_map(|(p, n)| p[i * n..(i + 1) * n].to_vec()).collect();
            let worst = got[i * 58..(i + 1) * 58].iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "row {i}: max |diff| {worst:e}");
        }
        // Keys given with a row stride, values transposed, products written at an output stride.
        let (t, hd, d) = (37, 16, 48);
        let src = values(t * d, 3);
        let keys = PackedMatrix::pack_strided(&src[16..], t, hd, d, 1);
        let values_t = PackedMatrix::pack_strided(&src[16..], hd, t, 1, d);
        let key_rows: Vec<f32> = (0..t).flat_map(|r| src[r * d + 16..r * d + 32].to_vec()).collect();
        assert_eq!(keys.to_tensor().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), key_rows);
        let vt: Vec<f32> = (0..hd).flat_map(|c| (0..t).map(|r| key_rows[r * hd + c]).collect::<Vec<_>>()).collect();
        assert_eq!(values_t.to_tensor().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), vt);
        let q = values(5 * d, 4);
        let mut out = vec![f32::NAN; 5 * 50];
        // SAFETY: 5 rows of 16 at stride 48 in `q`; 5 rows of 37 at stride 50 in `out`.
        unsafe { keys.product(q.as_ptr(), d, 5, out.as_mut_ptr(), 50) };
        let q_rows: Vec<f32> = (0..5).flat_map(|r| q[r * d..r * d + hd].to_vec()).collect();
        let want = naive(&q_rows, &key_rows, 5, hd, t);
        for r in 0..5 {
            for c in 0..t {
                assert!((out[r * 50 + c] - want[r * t + c]).abs() < 1e-5);
            }
            assert!(out[r * 50 + t..(r + 1) * 50].iter().all(|v| v.is_nan()), "wrote past the block");
        }
    }

    #[test]
    fn packed_rows_unpack_and_scale() {
        let (rows, cols) = (19, 5);
        let w = values(rows * cols, 5);
        let mut p = PackedMatrix::pack(&w, rows, cols);
        let mut row = vec![0f32; cols];
        p.row_into(17, &mut row);
        assert_eq!(row, w[17 * cols..18 * cols]);
        let factor: Vec<f32> = (0..rows).map(|r| r as f32 - 3.0).collect();
        p.scale_rows(&factor);
        let scaled: Vec<f32> = w.iter().enumerate().map(|(i, v)| v * factor[i / cols]).collect();
        assert_eq!(p.to_tensor().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), scaled);
    }
}
