//! The integer products' register tiles: 7-bit unsigned activations (0..=127) times int8 weights,
//! summed exactly in i32. Every tile reads the weights in one layout — panels of `nr` output
//! columns, each depth step four codes of each column (`nr × 4` bytes) — and four activation bytes
//! broadcast per row, which is what each target's dot-product instruction takes: AVX-512 VNNI's and
//! AVX-VNNI's `vpdpbusd`, AVX2's `vpmaddubsw` + `vpmaddwd`, WebAssembly relaxed SIMD's
//! `i32x4.relaxed_dot_i8x16_i7x16_add_s`, plain SIMD's `i32x4.dot_i16x8_s` over widened codes.
//!
//! Why 7 bits: relaxed SIMD defines its dot product only for a second operand under 128, and
//! `vpmaddubsw` saturates a pair of products at 32767, which 127 × 127 × 2 stays under (255 × 127 × 2
//! does not). With the sums exact, every tile gives the same integers, so a label map does not
//! depend on the engine or the CPU it was made on.

/// An integer register tile: output columns per panel and rows per tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub enum DotTile {
    /// 12 × 32 with AVX-512 VNNI: 24 accumulators of 16 lanes.
    Avx512Vnni,
    /// 6 × 16 with AVX-VNNI (256-bit `vpdpbusd`).
    AvxVnni,
    /// 6 × 16 with AVX2: `vpmaddubsw` pairs, `vpmaddwd` against ones, an add.
    Avx2,
    /// 4 × 8 with relaxed SIMD's dot product (WebAssembly built with relaxed SIMD); natively over
    /// plain arrays, for tests.
    Relaxed,
    /// 2 × 8 with plain SIMD128: codes widened to i16, `i32x4.dot_i16x8_s` (WebAssembly); natively
    /// over plain arrays, for tests.
    Simd128,
    /// 4 × 8 over plain integers: the reference the others are tested against.
    #[cfg_attr(not(test), allow(dead_code))]
    Portable,
}

#[cfg(target_arch = "x86_64")]
use super::x86_64::{avx2, avx512};

/// The widest integer tile: partial tiles go through one of these on the stack.
pub const MAX_DOT_TILE: usize = 12 * 32;

/// Bytes of one weight column per depth step (the codes one i32 lane sums).
pub const DOT_DEPTH: usize = 4;

impl DotTile {
    /// The tile this CPU runs integer products with, if any: natively x86-64 with AVX2 at least,
    /// WebAssembly built with SIMD. Elsewhere int8 weights are widened to f32 for the float product.
    pub fn best() -> Option<Self> {
        if cfg!(all(target_arch = "wasm32", target_feature = "simd128", target_feature = "relaxed-simd")) {
            return Some(DotTile::Relaxed);
        }
        if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
            return Some(DotTile::Simd128);
        }
        static BEST: std::sync::OnceLock<Option<DotTile>> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512bw") {
                    return Some(DotTile::Avx512Vnni);
                }
                if is_x86_feature_detected!("avxvnni") && is_x86_feature_detected!("avx2") {
                    return Some(DotTile::AvxVnni);
                }
                if is_x86_feature_detected!("avx2") {
                    return Some(DotTile::Avx2);
                }
            }
            None
        })
    }

    /// Output columns per panel.
    pub fn nr(self) -> usize {
        match self {
            DotTile::Avx512Vnni => 32,
            DotTile::AvxVnni | DotTile::Avx2 => 16,
            DotTile::Relaxed | DotTile::Simd128 | DotTile::Portable => 8,
        }
    }

    /// Input rows per tile.
    pub fn mr(self) -> usize {
        match self {
            DotTile::Avx512Vnni => 12,
            DotTile::AvxVnni | DotTile::Avx2 => 6,
            DotTile::Relaxed | DotTile::Portable => 4,
            DotTile::Simd128 => 2,
        }
    }

    /// Whether this CPU runs the tile (tests run every tile that does).
    #[cfg(test)]
    pub fn runs_here(self) -> bool {
        match self {
            DotTile::Portable => true,
            #[cfg(target_arch = "x86_64")]
            DotTile::Avx512Vnni => is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512bw"),
            #[cfg(target_arch = "x86_64")]
            DotTile::AvxVnni => is_x86_feature_detected!("avxvnni") && is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            DotTile::Avx2 => is_x86_feature_detected!("avx2"),
            // Natively over plain arrays.
            DotTile::Relaxed | DotTile::Simd128 if cfg!(not(target_arch = "wasm32")) => true,
            other => Self::best() == Some(other),
        }
    }
}

/// One integer tile: `c (rows × cols, row stride ldc) = a (rows × 4·steps bytes, row stride lda) ·
/// b`, `b` a panel (`steps` depth steps of `nr × 4` codes), summed in i32. A partial tile goes
/// through a full one on the stack.
///
/// # Safety
/// `shape` must run on this CPU ([`DotTile::best`], or natively the tiles over plain arrays); `a` must address
/// `rows` rows of `4 · steps` bytes, each at most 127, at stride `lda`; `b` `steps · nr · 4` codes;
/// `c` `rows × cols` writable i32 at stride `ldc` (`rows ≤ mr`, `cols ≤ nr` of `shape`).
#[allow(clippy::too_many_arguments)]
#[inline]
pub unsafe fn dot_tile(shape: DotTile, rows: usize, cols: usize, steps: usize, a: *const u8, lda: usize, b: *const i8, c: *mut i32, ldc: usize) {
    // SAFETY: the caller keeps this function's contract (its `# Safety`).
    unsafe {
        let nr = shape.nr();
        if cols == nr {
            macro_rules! by_rows {
                ($m:ident::$f:ident, $($r:literal)+) => {
                    match rows {
                        $($r => return $m::$f::<$r>(steps, a, lda, b, c, ldc),)+
                        _ => unreachable!("at most {} rows a tile", shape.mr()),
                    }
                };
            }
            match shape {
                #[cfg(target_arch = "x86_64")]
                DotTile::Avx512Vnni => by_rows!(avx512::dot_kernel, 1 2 3 4 5 6 7 8 9 10 11 12),
                #[cfg(target_arch = "x86_64")]
                DotTile::AvxVnni => by_rows!(avx2::vnni_kernel, 1 2 3 4 5 6),
                #[cfg(target_arch = "x86_64")]
                DotTile::Avx2 => by_rows!(avx2::dot_kernel, 1 2 3 4 5 6),
                #[cfg(any(not(target_arch = "wasm32"), target_feature = "relaxed-simd"))]
                DotTile::Relaxed => by_rows!(wasm::relaxed_kernel, 1 2 3 4),
                DotTile::Simd128 => by_rows!(wasm::dot16_kernel, 1 2),
                DotTile::Portable => by_rows!(portable::kernel, 1 2 3 4),
                #[allow(unreachable_patterns)]
                _ => unreachable!("{shape:?} does not run on this CPU"),
            }
        }
        let mut t = [0i32; MAX_DOT_TILE];
        dot_tile(shape, rows, nr, steps, a, lda, b, t.as_mut_ptr(), nr);
        for r in 0..rows {
            for j in 0..cols {
                *c.add(r * ldc + j) = t[r * nr + j];
            }
        }
    }
}

mod portable {
use super::DOT_DEPTH;

/// `R × 8` over plain integers.
///
/// # Safety
/// As [`super::dot_tile`]'s, for a full tile of `R` rows.
pub unsafe fn kernel<const R: usize>(steps: usize, a: *const u8, lda: usize, b: *const i8, c: *mut i32, ldc: usize) {
    const NR: usize = 8;
    // SAFETY: the caller keeps this function's contract (its `# Safety`).
    unsafe {
        let mut acc = [[0i32; NR]; R];
        for s in 0..steps {
            let w = b.add(s * NR * DOT_DEPTH);
            for (i, acc) in acc.iter_mut().enumerate() {
                let x = a.add(i * lda + s * DOT_DEPTH);
                for (j, acc) in acc.iter_mut().enumerate() {
                    for t in 0..DOT_DEPTH {
                        *acc += *x.add(t) as i32 * *w.add(j * DOT_DEPTH + t) as i32;
                    }
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            for (j, &v) in acc.iter().enumerate() {
                *c.add(i * ldc + j) = v;
            }
        }
    }
}

}

/// WebAssembly's integer tiles over [`lanes::int`] (simd128 there, plain arrays natively, so that
/// native tests check them), two vectors of four columns' codes per depth step.
mod wasm {
    use super::super::lanes::int as lanes;
    use super::DOT_DEPTH;

    const NR: usize = 8;

    /// `R × 8` with relaxed SIMD: one dot-and-add per four columns per row per depth step (V8
    /// lowers it to `vpdpbusd` with AVX-VNNI, else `pmaddubsw` + `pmaddwd`).
    ///
    /// # Safety
    /// As [`super::dot_tile`]'s, for a full tile of `R` rows.
    #[cfg(any(not(target_arch = "wasm32"), target_feature = "relaxed-simd"))]
    #[inline(always)]
    pub unsafe fn relaxed_kernel<const R: usize>(steps: usize, a: *const u8, lda: usize, b: *const i8, c: *mut i32, ldc: usize) {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            let mut lo = [lanes::zero(); R];
            let mut hi = [lanes::zero(); R];
            for s in 0..steps {
                let w = b.add(s * NR * DOT_DEPTH);
                let (w0, w1) = (lanes::load(w), lanes::load(w.add(16)));
                for i in 0..R {
                    // The activations are the 7-bit operand: under 128, so every engine sums the same.
                    let x = lanes::splat4(a.add(i * lda + s * DOT_DEPTH));
                    lo[i] = lanes::dot_add(w0, x, lo[i]);
                    hi[i] = lanes::dot_add(w1, x, hi[i]);
                }
            }
            for i in 0..R {
                lanes::store(c.add(i * ldc), lo[i]);
                lanes::store(c.add(i * ldc + 4), hi[i]);
            }
        }
    }

    /// `R × 8` with plain SIMD128: each vector of codes (four columns × four steps) widened to two
    /// i16 vectors, each dotted with the row's four bytes twice over; a lane then holds half a
    /// column's sum, and the halves are added at the end.
    ///
    /// # Safety
    /// As [`super::dot_tile`]'s, for a full tile of `R` rows.
    #[inline(always)]
    pub unsafe fn dot16_kernel<const R: usize>(steps: usize, a: *const u8, lda: usize, b: *const i8, c: *mut i32, ldc: usize) {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            // acc[i][v]: the v-th widened vector's columns (2v and 2v + 1), a half-sum a lane.
            let mut acc = [[lanes::zero(); 4]; R];
            for s in 0..steps {
                let w = b.add(s * NR * DOT_DEPTH);
                let ([w0, w1], [w2, w3]) = (lanes::widen(lanes::load(w)), lanes::widen(lanes::load(w.add(16))));
                let wide = [w0, w1, w2, w3];
                for (i, acc) in acc.iter_mut().enumerate() {
                    let x = lanes::widen_low_unsigned(lanes::splat4(a.add(i * lda + s * DOT_DEPTH)));
                    for (acc, &w) in acc.iter_mut().zip(&wide) {
                        *acc = lanes::dot16_add(w, x, *acc);
                    }
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                lanes::store(c.add(i * ldc), lanes::pair_sums(acc[0], acc[1]));
                lanes::store(c.add(i * ldc + 4), lanes::pair_sums(acc[2], acc[3]));
            }
        }
    }
}
