//! Resampling of feature planes with PyTorch's `interpolate(..., align_corners=False)` semantics,
//! so position embeddings and attention maps land on exactly the reference's values.

/// Source coordinate of output index `dst` for PyTorch's half-pixel convention.
fn source_index(scale: f32, dst: usize) -> f32 {
    scale * (dst as f32 + 0.5) - 0.5
}

/// Taps and weights of one output coordinate for bilinear interpolation (negative sources clamp to 0).
#[derive(Clone, Copy, Debug)]
pub struct LinearTap {
    pub i0: usize,
    pub i1: usize,
    pub w0: f32,
    pub w1: f32,
}

/// Bilinear taps for resizing `in_len` samples to `out_len`.
pub fn linear_taps(in_len: usize, out_len: usize) -> Vec<LinearTap> {
    let scale = in_len as f32 / out_len as f32;
    (0..out_len)
        .map(|d| {
            let src = source_index(scale, d).max(0.0);
            let i0 = (src as usize).min(in_len - 1);
            let i1 = (i0 + 1).min(in_len - 1);
            let l1 = src - i0 as f32;
            LinearTap { i0, i1, w0: 1.0 - l1, w1: l1 }
        })
        .collect()
}

/// Bilinearly resizes `planes` planes of `h × w` (row-major, plane after plane) to `oh × ow`.
pub fn bilinear(data: &[f32], planes: usize, h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let ty = linear_taps(h, oh);
    let tx = linear_taps(w, ow);
    let mut out = vec![0f32; planes * oh * ow];
    for p in 0..planes {
        let src = &data[p * h * w..(p + 1) * h * w];
        let dst = &mut out[p * oh * ow..(p + 1) * oh * ow];
        for (y, t) in ty.iter().enumerate() {
            let r0 = &src[t.i0 * w..(t.i0 + 1) * w];
            let r1 = &src[t.i1 * w..(t.i1 + 1) * w];
            for (x, s) in tx.iter().enumerate() {
                let top = s.w0 * r0[s.i0] + s.w1 * r0[s.i1];
                let bot = s.w0 * r1[s.i0] + s.w1 * r1[s.i1];
                dst[y * ow + x] = t.w0 * top + t.w1 * bot;
            }
        }
    }
    out
}

/// For each pixel of `planes` planes of `h × w` resized bilinearly to `oh × ow`, the plane whose
/// resized value is highest there (the first on ties, like torch.argmax), handed to `f(pixel,
/// plane)` row by row: the values [`bilinear`] would give, without holding the resized planes
/// (8 groups over a 448-pixel window are 6.4 MB).
pub fn bilinear_argmax(data: &[f32], planes: usize, (h, w): (usize, usize), (oh, ow): (usize, usize), mut f: impl FnMut(usize, usize)) {
    let ty = linear_taps(h, oh);
    let tx = linear_taps(w, ow);
    for (y, t) in ty.iter().enumerate() {
        for (x, s) in tx.iter().enumerate() {
            let mut best = (0, f32::NEG_INFINITY);
            for p in 0..planes {
                let src = &data[p * h * w..(p + 1) * h * w];
                let (r0, r1) = (&src[t.i0 * w..], &src[t.i1 * w..]);
                // As `bilinear` computes it, operation for operation, so the two agree exactly.
                let top = s.w0 * r0[s.i0] + s.w1 * r0[s.i1];
                let bot = s.w0 * r1[s.i0] + s.w1 * r1[s.i1];
                let v = t.w0 * top + t.w1 * bot;
                if p == 0 || v > best.1 {
                    best = (p, v);
                }
            }
            f(y * ow + x, best.0);
        }
    }
}

/// Keys' cubic convolution weights with A = -0.75, as PyTorch's bicubic.
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

fn cubic_taps(in_len: usize, out_len: usize) -> Vec<([usize; 4], [f32; 4])> {
    let scale = in_len as f32 / out_len as f32;
    (0..out_len)
        .map(|d| {
            // Bicubic does not clamp the source coordinate; the taps are clamped instead.
            let src = source_index(scale, d);
            let base = src.floor();
            let t = src - base;
            let clamp = |k: isize| (base as isize + k).clamp(0, in_len as isize - 1) as usize;
            ([clamp(-1), clamp(0), clamp(1), clamp(2)], cubic_weights(t))
        })
        .collect()
}

/// Bicubically resizes a channels-last grid `h × w × c` to `oh × ow × c`.
pub fn bicubic_channels_last(data: &[f32], h: usize, w: usize, c: usize, oh: usize, ow: usize) -> Vec<f32> {
    let ty = cubic_taps(h, oh);
    let tx = cubic_taps(w, ow);
    let mut out = vec![0f32; oh * ow * c];
    for (y, (iy, wy)) in ty.iter().enumerate() {
        for (x, (ix, wx)) in tx.iter().enumerate() {
            let dst = &mut out[(y * ow + x) * c..(y * ow + x + 1) * c];
            for (a, &ya) in iy.iter().enumerate() {
                // PyTorch interpolates along x first, then along y.
                for (b, &xb) in ix.iter().enumerate() {
                    let wgt = wy[a] * wx[b];
                    let src = &data[(ya * w + xb) * c..(ya * w + xb + 1) * c];
                    for (o, s) in dst.iter_mut().zip(src) {
                        *o += wgt * s;
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_sizes_are_exact() {
        let data: Vec<f32> = (0..12).map(|v| v as f32 * 0.37).collect();
        assert_eq!(bilinear(&data, 1, 3, 4, 3, 4), data);
        assert_eq!(bicubic_channels_last(&data, 3, 4, 1, 3, 4), data);
    }

    #[test]
    fn bilinear_upsample_matches_torch() {
        // torch.nn.functional.interpolate(tensor([[[[0., 1.], [2., 3.]]]]), size=(4, 4), mode="bilinear")
        let out = bilinear(&[0.0, 1.0, 2.0, 3.0], 1, 2, 2, 4, 4);
        let want = [
            0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
        ];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn bilinear_argmax_is_the_argmax_of_the_resized_planes() {
        // Three planes of 3 × 5, the third equal to the first (ties go to the first), resized up
        // and down.
        let mut data: Vec<f32> = (0..30).map(|i| ((i * 7919) % 31) as f32 / 31.0).collect();
        data.extend_from_within(..15);
        for out in [(7, 11), (2, 3), (3, 5)] {
            let resized = bilinear(&data, 3, 3, 5, out.0, out.1);
            let plane = out.0 * out.1;
            let mut seen = vec![usize::MAX; plane];
            bilinear_argmax(&data, 3, (3, 5), out, |p, best| seen[p] = best);
            let want: Vec<usize> = (0..plane)
                .map(|p| (1..3).fold(0, |best, k| if resized[k * plane + p] > resized[best * plane + p] { k } else { best }))
                .collect();
            assert_eq!(seen, want, "{out:?}");
            assert!(want.contains(&0) && want.contains(&1), "{out:?}: both planes should win somewhere");
        }
    }

    #[test]
    fn bicubic_upsample_matches_torch() {
        // torch.nn.functional.interpolate(tensor([[[[0., 1.], [2., 3.]]]]), size=(3, 3), mode="bicubic")
        let out = bicubic_channels_last(&[0.0, 1.0, 2.0, 3.0], 2, 2, 1, 3, 3);
        let want = [-0.2604168, 0.32638896, 0.9131944, 0.9131947, 1.5, 2.0868058, 2.0868058, 2.673611, 3.260417];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-5, "{out:?}");
        }
    }
}
