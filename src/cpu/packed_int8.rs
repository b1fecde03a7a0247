//! An int8 weight matrix packed once at load for the integer product, and that product: each input
//! row is quantized as it comes (7 bits, with its own scale and zero point), multiplied by the codes
//! in integers (the dot-product tiles of [`super::arch::dot`]) and scaled back to f32 by the row's
//! scale times the weight row's. onnxruntime's dynamic quantization (what transformers.js runs as
//! `q8`) works the same way, at 8 bits; ours are 7 so that every engine's dot product sums them
//! exactly (see the tiles).
//!
//! With `x ≈ sx · (qx − zx)` and `w ≈ sw · qw`: `x · w ≈ sx · sw · (Σ qx·qw − zx · Σ qw)`, the last
//! sum fixed per weight row and kept here.

use rayon::prelude::*;

use super::arch::dot::{dot_tile, DotTile, DOT_DEPTH, MAX_DOT_TILE};
use super::arch::with_best_simd;
use super::math::lane_range;
use super::packed::{for_each_task, OutPtr};

/// Rows per task (a multiple of every tile's rows).
const MC: usize = 96;
/// Output columns per task.
const TASK_COLS: usize = 64;
/// The largest depth whose sums stay exact in i32 (127 · 128 per product, with the zero point's).
pub const MAX_DEPTH: usize = (i32::MAX as usize) / (2 * 127 * 128);
/// The top code of a quantized activation (7 bits).
const TOP: f32 = 127.0;

/// `W (rows × cols)` as int8 codes in panels of `nr` rows of W: per depth step of four columns,
/// each panel row's four codes (rows past the last, and columns past the last step, zero).
#[derive(Debug, Clone)]
pub struct PackedInt8 {
    data: Vec<i8>,
    /// Σ of each row's codes, for the activations' zero points.
    sums: Vec<i32>,
    scales: Vec<f32>,
    rows: usize,
    cols: usize,
    tile: DotTile,
}

impl PackedInt8 {
    /// Packs the `u8` codes as stored (row-major, offset by 128) with one scale per row, for this
    /// CPU's tile. `None` where no integer tile runs, or the depth is past [`MAX_DEPTH`].
    pub fn pack(codes: &[u8], scales: Vec<f32>, rows: usize, cols: usize) -> Option<Self> {
        let tile = DotTile::best()?;
        (cols <= MAX_DEPTH).then(|| Self::pack_for(tile, codes, scales, rows, cols))
    }

    fn pack_for(tile: DotTile, codes: &[u8], scales: Vec<f32>, rows: usize, cols: usize) -> Self {
        assert!(codes.len() == rows * cols && scales.len() == rows, "{} codes and {} scales for {rows} × {cols}", codes.len(), scales.len());
        let (nr, steps) = (tile.nr(), cols.div_ceil(DOT_DEPTH));
        let panel = steps * nr * DOT_DEPTH;
        let mut data = vec![0i8; rows.div_ceil(nr) * panel];
        data.par_chunks_mut(panel.max(1)).enumerate().for_each(|(p, panel)| {
            for j in 0..nr.min(rows - p * nr) {
                let row = &codes[(p * nr + j) * cols..][..cols];
                for (c, &q) in row.iter().enumerate() {
                    panel[(c / DOT_DEPTH * nr + j) * DOT_DEPTH + c % DOT_DEPTH] = (q as i32 - 128) as i8;
                }
            }
        });
        let sums = codes.chunks_exact(cols.max(1)).take(rows).map(|row| row.iter().map(|&q| q as i32 - 128).sum()).collect();
        Self { data, sums, scales, rows, cols, tile }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// One scale per row.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Code `(r, c)`, signed.
    #[inline]
    fn code(&self, r: usize, c: usize) -> i8 {
        let (nr, steps) = (self.tile.nr(), self.cols.div_ceil(DOT_DEPTH));
        self.data[(r / nr) * steps * nr * DOT_DEPTH + (c / DOT_DEPTH * nr + r % nr) * DOT_DEPTH + c % DOT_DEPTH]
    }

    /// Row `r` widened to f32 into `out` (`cols` floats).
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        for (c, o) in out.iter_mut().enumerate() {
            *o = self.code(r, c) as f32 * self.scales[r];
        }
    }

    /// The codes as stored, row-major and offset by 128 (for the GPU upload).
    pub fn codes(&self) -> Vec<u8> {
        (0..self.rows).flat_map(|r| (0..self.cols).map(move |c| (self.code(r, c) as i32 + 128) as u8)).collect()
    }

    /// Row `r` times `factor[r]`: only the scales change.
    pub fn scale_rows(&mut self, factor: &[f32]) {
        self.scales.iter_mut().zip(factor).for_each(|(s, f)| *s *= f);
    }

    /// `x (m × cols) · Wᵀ` as an `m × rows` f32 matrix, split across rayon's pool; `epilogue(part,
    /// c0)` then runs on each finished part of an output row (its columns `c0..c0 + part.len()`).
    pub fn matmul(&self, x: &[f32], m: usize, epilogue: impl Fn(&mut [f32], usize) + Sync) -> Vec<f32> {
        let (n, k, tile) = (self.rows, self.cols, self.tile);
        assert!(x.len() >= m * k, "int8 matmul: {} inputs for {m} rows of {k}", x.len());
        let (nr, mr) = (tile.nr(), tile.mr());
        let steps = k.div_ceil(DOT_DEPTH);
        let q = QuantizedRows::new(x, m, k);
        let panels = n.div_ceil(nr);
        let per_task = (TASK_COLS / nr).max(1);
        let (col_blocks, row_blocks) = (panels.div_ceil(per_task), m.div_ceil(MC));
        let mut dst: Vec<f32> = Vec::with_capacity(m * n);
        let out = OutPtr(dst.spare_capacity_mut().as_mut_ptr().cast());
        // Consecutive tasks share a block of panels, as in the f32 product (`super::packed`).
        let task = |t: usize| {
            let (p0, rb) = (t / row_blocks * per_task, t % row_blocks);
            let p1 = (p0 + per_task).min(panels);
            let (r0, r1) = (rb * MC, (rb * MC + MC).min(m));
            let mut sums = [0i32; MAX_DOT_TILE];
            for p in p0..p1 {
                let (c0, cols) = (p * nr, nr.min(n - p * nr));
                let b = self.data[p * steps * nr * DOT_DEPTH..].as_ptr();
                let mut i = r0;
                while i < r1 {
                    let rows = mr.min(r1 - i);
                    // SAFETY: the tile is this CPU's (`pack`); `q` holds m rows of `steps · 4` codes
                    // under 128 at that stride, the panel `steps · nr · 4` codes, `sums` rows × nr.
                    unsafe { dot_tile(tile, rows, nr, steps, q.codes[i * q.stride..].as_ptr(), q.stride, b, sums.as_mut_ptr(), nr) };
                    for r in 0..rows {
                        let (scale, zero) = (q.scales[i + r], q.zeros[i + r]);
                        // SAFETY: row i + r, columns c0..c0 + cols of the m × n output: this task's alone.
                        let row = unsafe { std::slice::from_raw_parts_mut(out.at((i + r) * n + c0), cols) };
                        let acc = &sums[r * nr..][..cols];
                        for (((y, &a), &s), &w) in row.iter_mut().zip(acc).zip(&self.sums[c0..]).zip(&self.scales[c0..]) {
                            *y = (a - zero * s) as f32 * (scale * w);
                        }
                    }
                    i += rows;
                }
            }
            let (c0, c1) = (p0 * nr, (p1 * nr).min(n));
            for i in r0..r1 {
                // SAFETY: as above; this row part is this task's alone and was just written.
                epilogue(unsafe { std::slice::from_raw_parts_mut(out.at(i * n + c0), c1 - c0) }, c0);
            }
        };
        if n > 0 {
            for_each_task(col_blocks * row_blocks, task);
        }
        // SAFETY: the tasks wrote every column of every row (none when n is 0).
        unsafe { dst.set_len(m * n) };
        dst
    }
}

/// Rows of activations as 7-bit codes: `x ≈ scale · (code − zero)`, each row's range stretched over
/// 0..=127 with 0 kept exact (a zero point), rows padded to whole depth steps.
struct QuantizedRows {
    codes: Vec<u8>,
    stride: usize,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

impl QuantizedRows {
    fn new(x: &[f32], m: usize, k: usize) -> Self {
        let stride = k.div_ceil(DOT_DEPTH) * DOT_DEPTH;
        let mut codes = vec![0u8; m * stride];
        let mut params = vec![(0f32, 0i32); m];
        let quantize = |(i, (row, p)): (usize, (&mut [u8], &mut (f32, i32)))| *p = with_best_simd!(quantize_row(&x[i * k..][..k], &mut row[..k]));
        if m * k >= 1 << 15 {
            codes.par_chunks_mut(stride.max(1)).zip(params.par_iter_mut()).enumerate().for_each(quantize);
        } else {
            codes.chunks_mut(stride.max(1)).zip(params.iter_mut()).enumerate().for_each(quantize);
        }
        let (scales, zeros) = params.into_iter().unzip();
        Self { codes, stride, scales, zeros }
    }
}

/// One row's codes, and its `(scale, zero point)`. A row with a NaN or an infinity gets a NaN scale,
/// so its products are NaN as the f32 product's would be, not silently finite.
#[inline(always)]
fn quantize_row(x: &[f32], codes: &mut [u8]) -> (f32, i32) {
    let (lo, hi, finite) = lane_range(x);
    if !finite {
        return (f32::NAN, 0);
    }
    let scale = (hi - lo) / TOP;
    if scale == 0.0 {
        // All zeros: every code 0 at zero point 0.
        return (1.0, 0);
    }
    let inv = 1.0 / scale;
    let zero = round_even(-lo * inv).clamp(0.0, TOP);
    for (q, &v) in codes.iter_mut().zip(x) {
        let c = (round_even(v * inv) + zero).clamp(0.0, TOP);
        // A whole number from 0 to 127 plus 1.5 · 2²³ is that number in its low bits: a cast the
        // compiler vectorizes, unlike `as u8`'s saturating one.
        *q = (c + MAGIC).to_bits() as u8;
    }
    (scale, zero as i32)
}

/// 1.5 · 2²³: added to a float under 2²² in magnitude, it leaves no bits below the unit.
const MAGIC: f32 = 12_582_912.0;

/// `v` rounded half to even, for `|v| < 2²²` (here at most 127): the addition of [`MAGIC`] rounds.
/// `f32::round_ties_even` is a library call on x86-64's baseline (no SSE4.1), which took as long
/// as the products.
#[inline(always)]
fn round_even(v: f32) -> f32 {
    (v + MAGIC) - MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7919 + seed * 104_729) % 255) as u8 + 1).collect()
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 - 900.0) * 1e-3).collect()
    }

    /// The product the tiles must give exactly: the same quantized rows, summed in i64.
    fn integer_reference(x: &[f32], m: usize, k: usize, codes: &[u8], scales: &[f32], n: usize) -> Vec<f32> {
        let q = QuantizedRows::new(x, m, k);
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: i64 = (0..k).map(|c| q.codes[i * q.stride + c] as i64 * (codes[j * k + c] as i64 - 128)).sum();
                let sum: i64 = (0..k).map(|c| codes[j * k + c] as i64 - 128).sum();
                out[i * n + j] = (dot - q.zeros[i] as i64 * sum) as i32 as f32 * (q.scales[i] * scales[j]);
            }
        }
        out
    }

    /// Every tile this CPU runs, and WebAssembly's and the portable one over plain arrays.
    fn tiles() -> Vec<DotTile> {
        let all = [DotTile::Avx512Vnni, DotTile::AvxVnni, DotTile::Avx2, DotTile::Relaxed, DotTile::Simd128, DotTile::Portable];
        let (runs, not): (Vec<_>, Vec<_>) = all.into_iter().partition(|t| t.runs_here());
        if !not.is_empty() {
            eprintln!("not checked on this CPU: {not:?}");
        }
        runs
    }

    /// Partial tiles, depths that are not whole steps, several tasks, one row: every tile gives the
    /// integer reference exactly, and the product stays within quantization's error of f32's.
    #[test]
    fn integer_products_are_exact_on_every_tile() {
        for tile in tiles() {
            for (m, k, n) in [(1, 5, 3), (7, 301, 17), (100, 64, 70), (200, 384, 96), (13, 1538, 33)] {
                let (x, w) = (values(m * k, 1), codes(n * k, 2));
                let scales: Vec<f32> = (0..n).map(|j| 0.01 + 1e-4 * j as f32).collect();
                let packed = PackedInt8::pack_for(tile, &w, scales.clone(), n, k);
                let got = packed.matmul(&x, m, |_, _| {});
                assert_eq!(got, integer_reference(&x, m, k, &w, &scales, n), "{tile:?} {m}×{k}×{n}");
                // The epilogue sees each output row part once, told where it starts.
                let shifted = packed.matmul(&x, m, |part, c0| part.iter_mut().enumerate().for_each(|(j, v)| *v += (c0 + j) as f32));
                for (i, (s, g)) in shifted.iter().zip(&got).enumerate() {
                    assert_eq!(*s, g + (i % n) as f32, "{tile:?} {m}×{k}×{n}, element {i}");
                }
                // Against the f32 product of the widened weights: each activation off by half a step
                // (a whole one where the top code is clamped).
                for i in 0..m {
                    let row = &x[i * k..][..k];
                    let step = row.iter().fold(0f32, |a, &v| a.max(v)) - row.iter().fold(0f32, |a, &v| a.min(v));
                    for j in 0..n {
                        let exact: f32 = (0..k).map(|c| row[c] * (w[j * k + c] as f32 - 128.0) * scales[j]).sum();
                        let bound: f32 = (0..k).map(|c| (w[j * k + c] as f32 - 128.0).abs() * scales[j]).sum::<f32>() * step / TOP * 1.01 + 1e-4;
                        let g = got[i * n + j];
                        assert!((g - exact).abs() <= bound, "{tile:?} {m}×{k}×{n} ({i}, {j}): {g} vs {exact}, bound {bound}");
                    }
                }
            }
        }
    }

    #[test]
    fn packed_codes_unpack_widen_and_scale() {
        let (rows, cols) = (19, 7);
        let w = codes(rows * cols, 5);
        let scales: Vec<f32> = (0..rows).map(|r| 0.5 + r as f32).collect();
        let mut p = PackedInt8::pack_for(DotTile::Portable, &w, scales.clone(), rows, cols);
        assert_eq!(p.codes(), w);
        let mut row = vec![0f32; cols];
        p.row_into(17, &mut row);
        assert_eq!(row, w[17 * cols..18 * cols].iter().map(|&q| (q as f32 - 128.0) * scales[17]).collect::<Vec<_>>());
        p.scale_rows(&vec![2.0; rows]);
        assert_eq!(p.scales()[3], 7.0);
    }

    /// A row with a NaN gives NaN products; a row of zeros gives zeros; a constant row is exact.
    #[test]
    fn rows_of_nan_zeros_and_constants() {
        let (k, n) = (9, 5);
        let w = codes(n * k, 3);
        let p = PackedInt8::pack_for(DotTile::Portable, &w, vec![1.0; n], n, k);
        let mut x = vec![0f32; 3 * k];
        x[k + 4] = f32::NAN;
        x[2 * k..].fill(-2.5);
        let y = p.matmul(&x, 3, |_, _| {});
        assert!(y[..n].iter().all(|&v| v == 0.0), "{:?}", &y[..n]);
        assert!(y[n..2 * n].iter().all(|v| v.is_nan()));
        for j in 0..n {
            let exact: f32 = (0..k).map(|c| -2.5 * (w[j * k + c] as f32 - 128.0)).sum();
            assert!((y[2 * n + j] - exact).abs() < 1e-3 * exact.abs().max(1.0), "{} vs {exact}", y[2 * n + j]);
        }
    }
}
