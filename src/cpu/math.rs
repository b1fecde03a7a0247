//! The wing's scalar and row math, portable and branch-free so that loops over it compile to SIMD:
//! erf as a rational approximation (the one XLA and Eigen use for f32, error ~1e-7), exp as Cephes'
//! range-reduced polynomial, lane-wise reductions, and the row loops (softmax, the bias and
//! activation after a product, attention's exponentials) that [`super::arch`] compiles for each
//! vector width.

use super::activation::Activation;

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
pub(crate) const EXP_RANGE: (f32, f32) = (-87.0, 88.0);
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
pub(crate) const EXP_POLY: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1];

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

/// Lane-wise accumulators let the compiler keep reductions in SIMD registers (float addition is
/// not associative, so a single running sum would force one element at a time).
pub(crate) const LANES: usize = 8;

/// `Σ f(v)` over `row` in [`LANES`] running sums.
#[inline(always)]
pub(crate) fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
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
pub(crate) fn lane_max(row: &[f32]) -> f32 {
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

/// `(min, max)` of `row` and 0 (a zero point keeps 0 exact), and whether every value is finite,
/// in [`LANES`] running lanes, comparisons rather than `f32::min`'s NaN rule (as [`lane_max`]).
#[inline(always)]
pub(crate) fn lane_range(row: &[f32]) -> (f32, f32, bool) {
    let (smaller, bigger) = (|a: f32, b: f32| if b < a { b } else { a }, |a: f32, b: f32| if b > a { b } else { a });
    let (mut lo, mut hi, mut bad) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            lo[i] = smaller(lo[i], c[i]);
            hi[i] = bigger(hi[i], c[i]);
            // NaN from a NaN or an infinity (∞ − ∞), and it stays.
            bad[i] += c[i] - c[i];
        }
    }
    let rest = chunks.remainder();
    let lo = rest.iter().chain(&lo).fold(0f32, |a, &b| smaller(a, b));
    let hi = rest.iter().chain(&hi).fold(0f32, |a, &b| bigger(a, b));
    let finite = !rest.iter().map(|v| v - v).chain(bad).any(f32::is_nan);
    (lo, hi, finite)
}

/// Softmax of each `row`-long row of `data`, in place.
#[inline(always)]
pub(crate) fn softmax_rows(data: &mut [f32], row: usize) {
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

#[inline(always)]
pub(crate) fn epilogue_rows(dst: &mut [f32], bias: &[f32], act: Option<Activation>) {
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

/// `row ← exp(row · scale + mask − max)` in place, returning the row's sum: softmax but for the
/// division. Two passes over the row (max, then exponentials and their sum).
#[inline(always)]
pub(crate) fn scaled_exp(row: &mut [f32], scale: f32, mask: Option<&[f32]>) -> f32 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn exp_approximation_is_within_a_few_ulp() {
        let mut worst = 0f64;
        for i in -870000..=880000 {
            let x = i as f32 * 1e-4;
            let want = (x as f64).exp();
            worst = worst.max(((exp_f32(x) as f64 - want) / want).abs());
        }
        assert!(worst < 4e-7, "max relative error {worst:e}");
    }
}
