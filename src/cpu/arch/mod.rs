//! The CPU wing's architecture-specific code, in one place: which vector instructions each target
//! runs and the kernels written in them. x86-64 picks AVX-512 or AVX2 with FMA at run time
//! ([`x86_64`]); WebAssembly has simd128 (and relaxed SIMD's fused multiply-adds where the module is
//! built with it) over a 4-lane vector ([`lanes`]). Integer products have tiles of their own
//! ([`dot`]). The kernels above it ask through [`Tile`], [`dot::DotTile`], [`with_best_simd`],
//! [`scaled_exp_wide`] and the constants here, and name no target.

pub mod dot;
pub mod lanes;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
use x86_64::{avx2, avx512};

/// Whether matrix products go through [`super::sgemm`] (WebAssembly SIMD, where gemm's kernel
/// spills registers) rather than gemm.
pub const SGEMM: bool = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));

/// Whether attention packs each head's keys and values for the packed product (natively), rather
/// than reading them through their strides: in WebAssembly packing every head's would hold another
/// copy of both in a heap that keeps its high-water mark.
pub const PACKED_ATTENTION: bool = cfg!(not(target_arch = "wasm32"));

/// The register tiles of the packed product: output columns per panel (two vectors) and input rows
/// per tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub enum Tile {
    /// 6 × 16: two 8-float vectors (BLIS' Haswell kernel shape).
    Avx2,
    /// 12 × 32: two 16-float vectors (onnxruntime's MLAS shape).
    Avx512,
    /// 4 × 8: two 4-float vectors, WebAssembly SIMD's (sgemm's tile, without packing A); natively
    /// over plain arrays, for tests.
    Simd128,
}

/// The widest tile: partial tiles go through one of these on the stack.
pub const MAX_TILE: usize = 12 * 32;

impl Tile {
    /// The widest tile this CPU runs, if it runs the packed product at all (x86-64 needs AVX2 and
    /// FMA; WebAssembly needs a module built with SIMD).
    pub fn best() -> Option<Self> {
        if SGEMM {
            return Some(Tile::Simd128);
        }
        static BEST: std::sync::OnceLock<Option<Tile>> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx512f") {
                    return Some(Tile::Avx512);
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    return Some(Tile::Avx2);
                }
            }
            None
        })
    }

    /// Output columns per panel.
    pub fn nr(self) -> usize {
        match self {
            Tile::Avx2 => 16,
            Tile::Avx512 => 32,
            Tile::Simd128 => 8,
        }
    }

    /// Input rows per tile.
    pub fn mr(self) -> usize {
        match self {
            Tile::Avx2 => 6,
            Tile::Avx512 => 12,
            Tile::Simd128 => 4,
        }
    }
}

/// One register tile: `c (rows × cols, row stride ldc) (+)= a (rows × kc, row stride lda) · b`,
/// `b` a panel slice (`kc × nr`). A partial tile goes through a full one on the stack.
///
/// # Safety
/// `a` must address `rows` rows of `kc` floats at stride `lda`, `b` a panel slice of `kc × nr` floats, and `c` `rows × cols` writable floats at stride `ldc` (`rows ≤ mr`, `cols ≤ nr` of `shape`).
#[allow(clippy::too_many_arguments)]
#[inline]
pub unsafe fn tile(shape: Tile, rows: usize, cols: usize, kc: usize, a: *const f32, lda: usize, b: *const f32, c: *mut f32, ldc: usize, accumulate: bool) {
    // SAFETY: the caller keeps this function's contract (its `# Safety`).
    unsafe {
        let nr = shape.nr();
        if cols == nr {
            macro_rules! by_rows {
                ($isa:ident, $($r:literal)+) => {
                    match rows {
                        $($r => return $isa::kernel::<$r>(kc, a, lda, b, c, ldc, accumulate),)+
                        _ => unreachable!("at most {} rows a tile", shape.mr()),
                    }
                };
            }
            match shape {
                #[cfg(target_arch = "x86_64")]
                Tile::Avx2 => by_rows!(avx2, 1 2 3 4 5 6),
                #[cfg(target_arch = "x86_64")]
                Tile::Avx512 => by_rows!(avx512, 1 2 3 4 5 6 7 8 9 10 11 12),
                Tile::Simd128 => by_rows!(simd128, 1 2 3 4),
                #[allow(unreachable_patterns)]
                _ => unreachable!("packed weights exist only where `Tile::best` gives a tile"),
            }
        }
        let mut t = [0f32; MAX_TILE];
        for r in 0..rows {
            for j in 0..cols {
                t[r * nr + j] = if accumulate { *c.add(r * ldc + j) } else { 0.0 };
            }
        }
        tile(shape, rows, nr, kc, a, lda, b, t.as_mut_ptr(), nr, true);
        for r in 0..rows {
            for j in 0..cols {
                *c.add(r * ldc + j) = t[r * nr + j];
            }
        }
    }
}

/// `R × 8` tile over [`lanes`] (WebAssembly SIMD there, plain arrays natively, so that native tests
/// check it): per depth step two weight vectors, R broadcasts from A's rows, 2R multiply-adds
/// (fused with relaxed SIMD). A is read in place, not packed.
mod simd128 {
    use super::lanes;

    const NR: usize = 8;

    /// # Safety
    /// `a` must address `R` rows of `kc` floats at stride `lda`, `b` `kc` rows of this tile's width in floats, one after another, and `c` `R` rows of that width, writable, at stride `ldc`.
    #[inline(always)]
    pub unsafe fn kernel<const R: usize>(kc: usize, a: *const f32, lda: usize, b: *const f32, c: *mut f32, ldc: usize, accumulate: bool) {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            let mut lo = [lanes::zero(); R];
            let mut hi = [lanes::zero(); R];
            for p in 0..kc {
                let b0 = lanes::load(b.add(p * NR));
                let b1 = lanes::load(b.add(p * NR + 4));
                for i in 0..R {
                    let ai = lanes::splat(a.add(i * lda + p));
                    lo[i] = lanes::mul_add(lo[i], ai, b0);
                    hi[i] = lanes::mul_add(hi[i], ai, b1);
                }
            }
            for i in 0..R {
                let ci = c.add(i * ldc);
                let (mut v0, mut v1) = (lo[i], hi[i]);
                if accumulate {
                    v0 = lanes::add(v0, lanes::load(ci));
                    v1 = lanes::add(v1, lanes::load(ci.add(4)));
                }
                lanes::store(ci, v0);
                lanes::store(ci.add(4), v1);
            }
        }
    }
}

/// [`scaled_exp`](super::math::scaled_exp) of an unmasked row in AVX-512 or AVX2 where the CPU has
/// them (the compiler keeps the portable loop to 8 lanes with separate multiplies and adds);
/// `None` where there is no such path.
pub fn scaled_exp_wide(row: &mut [f32], scale: f32) -> Option<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was just detected on this CPU.
            return Some(unsafe { avx512::scaled_exp(row, scale) });
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the features were just detected on this CPU.
            return Some(unsafe { avx2::scaled_exp(row, scale) });
        }
    }
    let _ = (row, scale);
    None
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
pub(crate) use with_best_simd;
