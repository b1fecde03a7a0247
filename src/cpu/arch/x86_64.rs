//! x86-64's vector kernels, AVX2 with FMA and AVX-512, each run only where the CPU has its
//! features (detected at run time by [`super`]'s dispatch): the packed product's register tiles, the
//! integer product's (with AVX-VNNI or AVX-512 VNNI where the CPU has them) and the unmasked
//! attention row's exponentials.

use crate::cpu::math::{exp_f32, EXP_POLY, EXP_RANGE, LN2_HI, LN2_LO};

pub mod avx2 {
    use std::arch::x86_64::*;

    use super::{exp_f32, EXP_POLY, EXP_RANGE, LN2_HI, LN2_LO};

    const NR: usize = 16;

    /// Bytes of codes per depth step of a 16-column integer panel.
    const DOT_STEP: usize = 16 * 4;

    /// Four activation bytes of one row, in every lane.
    ///
    /// # Safety
    /// `p` must address four readable bytes.
    #[inline(always)]
    unsafe fn splat4(p: *const u8) -> __m256i {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe { _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32)) }
    }

    /// The body of both 16-column integer tiles: per depth step two vectors of codes, R broadcasts
    /// of four activation bytes, `$dot(acc, x, w)` for each pair. A macro rather than a shared
    /// function: each tile is compiled with its own target features, so that the AVX2 one holds no
    /// VNNI instruction.
    macro_rules! dot_tile_16 {
        ($r:ident, $steps:ident, $a:ident, $lda:ident, $b:ident, $c:ident, $ldc:ident, $dot:expr) => {{
            let mut acc = [[_mm256_setzero_si256(); 2]; $r];
            for s in 0..$steps {
                let w = $b.add(s * DOT_STEP) as *const __m256i;
                let (w0, w1) = (_mm256_loadu_si256(w), _mm256_loadu_si256(w.add(1)));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let x = splat4($a.add(i * $lda + s * 4));
                    acc[0] = $dot(acc[0], x, w0);
                    acc[1] = $dot(acc[1], x, w1);
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                let ci = $c.add(i * $ldc) as *mut __m256i;
                _mm256_storeu_si256(ci, acc[0]);
                _mm256_storeu_si256(ci.add(1), acc[1]);
            }
        }};
    }

    /// `R × 16` integer tile with AVX2: per pair `vpmaddubsw` (exact: the activations are under
    /// 128), `vpmaddwd` against ones and an add.
    ///
    /// # Safety
    /// As [`crate::cpu::arch::dot::dot_tile`]'s, for a full tile of `R` rows, where the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_kernel<const R: usize>(steps: usize, a: *const u8, lda: usize, b: *const i8, c: *mut i32, ldc: usize) {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            let ones = _mm256_set1_epi16(1);
            dot_tile_16!(R, steps, a, lda, b, c, ldc, |acc, x, w| _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), ones)))
        }
    }

    /// [`dot_kernel`] with AVX-VNNI's `vpdpbusd`: one instruction per pair.
    ///
    /// # Safety
    /// As [`crate::cpu::arch::dot::dot_tile`]'s, for a full tile of `R` rows, where the CPU has AVX-VNNI.
    #[target_feature(enable = "avx2,avxvnni")]
    pub unsafe fn vnni_kernel<const R: usize>(steps: usize, a: *const u8, lda: usize, b: *const i8, c: *mut i32, ldc: usize) {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe { dot_tile_16!(R, steps, a, lda, b, c, ldc, |acc, x, w| _mm256_dpbusd_avx_epi32(acc, x, w)) }
    }

    /// `R × 16` tile: per depth step two weight vectors, R broadcasts, 2R fused multiply-adds.
    ///
    /// # Safety
    /// `a` must address `R` rows of `kc` floats at stride `lda`, `b` `kc` rows of this tile's width in floats, one after another, and `c` `R` rows of that width, writable, at stride `ldc`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn kernel<const R: usize>(kc: usize, a: *const f32, lda: usize, b: *const f32, c: *mut f32, ldc: usize, accumulate: bool) {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for p in 0..kc {
                let b0 = _mm256_loadu_ps(b.add(p * NR));
                let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let ai = _mm256_broadcast_ss(&*a.add(i * lda + p));
                    acc[0] = _mm256_fmadd_ps(ai, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(ai, b1, acc[1]);
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                let ci = c.add(i * ldc);
                let (mut v0, mut v1) = (acc[0], acc[1]);
                if accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(ci));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(ci.add(8)));
                }
                _mm256_storeu_ps(ci, v0);
                _mm256_storeu_ps(ci.add(8), v1);
            }
        }
    }

    /// The unmasked [`scaled_exp`](crate::cpu::math::scaled_exp) in 8 lanes with fused multiply-adds; the row's last
    /// (under 8) values through [`exp_f32`].
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
                *v = exp_f32(*v * scale - shift);
                total += *v;
            }
            total
        }
    }

    /// e^x in 8 lanes: Cephes' range reduction and polynomial, as [`exp_f32`]; 2ⁿ built in
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

pub mod avx512 {
    use std::arch::x86_64::*;

    use super::{EXP_POLY, EXP_RANGE, LN2_HI, LN2_LO};

    const NR: usize = 32;

    /// `R × 32` integer tile with AVX-512 VNNI: per depth step two vectors of codes, R broadcasts of
    /// four activation bytes, 2R `vpdpbusd` (24 accumulators of the 32 registers at R = 12).
    ///
    /// # Safety
    /// As [`crate::cpu::arch::dot::dot_tile`]'s, for a full tile of `R` rows, where the CPU has
    /// AVX-512 VNNI and BW.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dot_kernel<const R: usize>(steps: usize, a: *const u8, lda: usize, b: *const i8, c: *mut i32, ldc: usize) {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            let mut acc = [[_mm512_setzero_si512(); 2]; R];
            for s in 0..steps {
                let w = b.add(s * NR * 4) as *const __m512i;
                let (w0, w1) = (_mm512_loadu_si512(w), _mm512_loadu_si512(w.add(1)));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_epi32(std::ptr::read_unaligned(a.add(i * lda + s * 4) as *const i32));
                    acc[0] = _mm512_dpbusd_epi32(acc[0], x, w0);
                    acc[1] = _mm512_dpbusd_epi32(acc[1], x, w1);
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                let ci = c.add(i * ldc) as *mut __m512i;
                _mm512_storeu_si512(ci, acc[0]);
                _mm512_storeu_si512(ci.add(1), acc[1]);
            }
        }
    }

    /// `R × 32` tile: per depth step two weight vectors, R broadcasts, 2R fused multiply-adds
    /// (24 accumulators of the 32 registers at R = 12).
    ///
    /// # Safety
    /// `a` must address `R` rows of `kc` floats at stride `lda`, `b` `kc` rows of this tile's width in floats, one after another, and `c` `R` rows of that width, writable, at stride `ldc`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn kernel<const R: usize>(kc: usize, a: *const f32, lda: usize, b: *const f32, c: *mut f32, ldc: usize, accumulate: bool) {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            for p in 0..kc {
                let b0 = _mm512_loadu_ps(b.add(p * NR));
                let b1 = _mm512_loadu_ps(b.add(p * NR + 16));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a.add(i * lda + p));
                    acc[0] = _mm512_fmadd_ps(ai, b0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(ai, b1, acc[1]);
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                let ci = c.add(i * ldc);
                let (mut v0, mut v1) = (acc[0], acc[1]);
                if accumulate {
                    v0 = _mm512_add_ps(v0, _mm512_loadu_ps(ci));
                    v1 = _mm512_add_ps(v1, _mm512_loadu_ps(ci.add(16)));
                }
                _mm512_storeu_ps(ci, v0);
                _mm512_storeu_ps(ci.add(16), v1);
            }
        }
    }

    /// The unmasked [`scaled_exp`](crate::cpu::math::scaled_exp) in 16 lanes, with [`exp_f32`]'s polynomial in
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

    /// e^x in 16 lanes: Cephes' range reduction and polynomial, as [`exp_f32`].
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::math::scaled_exp;

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
}
