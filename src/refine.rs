//! Pixel-adaptive mask refinement (PAMR; Araslanov & Roth, CVPR 2020), as TCL (Cha et al., CVPR
//! 2023) applies it after GroupViT-style inference: each label's scores are averaged, again and
//! again, over a pixel's neighbours at several dilations, each neighbour weighted by how alike its
//! colour is to the pixel's. Scores that the coarse patch grid spread past an object's outline flow
//! back inside it, since a neighbour across an edge has a different colour.
//!
//! It runs on a grid four times finer than the model's patches (TCL's quarter resolution for
//! 16-pixel patches), never finer than the photo itself, over the photo's colours normalised as the
//! model's input is (the [`Guide`]). TCL's dilations are in pixels of that grid; a guide made
//! smaller for a small photo scales them with it.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Dilations a refinement takes at most.
pub const MAX_DILATIONS: usize = 8;
/// Iterations a refinement takes at most (each is one pass over the grid per label).
pub const MAX_ITERATIONS: u32 = 50;
/// The largest dilation taken, in pixels of the refinement grid.
pub const MAX_DILATION: u32 = 256;

/// How scores are refined: PAMR's iterations and the dilations of its neighbourhoods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refinement {
    iterations: u32,
    dilations: [u16; MAX_DILATIONS],
    count: u8,
}

impl Refinement {
    /// TCL's settings: 10 iterations, neighbours at 1, 2, 4, 8, 12 and 24 pixels.
    pub const TCL: Self = Self { iterations: 10, dilations: [1, 2, 4, 8, 12, 24, 0, 0], count: 6 };

    /// A refinement of `iterations` passes over neighbours at `dilations` pixels, checked.
    pub fn new(iterations: u32, dilations: &[u32]) -> Result<Self> {
        if !(1..=MAX_ITERATIONS).contains(&iterations) {
            return Err(Error::InvalidInput(format!(
                "refinement iterations must be 1 to {MAX_ITERATIONS}, not {iterations}"
            )));
        }
        if dilations.is_empty() || dilations.len() > MAX_DILATIONS {
            return Err(Error::InvalidInput(format!(
                "refinement takes 1 to {MAX_DILATIONS} dilations, not {}",
                dilations.len()
            )));
        }
        let mut out = [0u16; MAX_DILATIONS];
        for (o, &d) in out.iter_mut().zip(dilations) {
            if !(1..=MAX_DILATION).contains(&d) {
                return Err(Error::InvalidInput(format!("refinement dilations must be 1 to {MAX_DILATION} pixels, not {d}")));
            }
            *o = d as u16;
        }
        Ok(Self { iterations, dilations: out, count: dilations.len() as u8 })
    }

    /// These dilations with another number of iterations, checked.
    pub fn with_iterations(&self, iterations: u32) -> Result<Self> {
        let dilations: Vec<u32> = self.dilations().iter().map(|&d| u32::from(d)).collect();
        Self::new(iterations, &dilations)
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// In pixels of the refinement grid of a photo at least that grid's size.
    pub fn dilations(&self) -> &[u16] {
        &self.dilations[..self.count as usize]
    }

    /// The dilations on a guide `scale` times the full refinement grid: rounded, at least 1 pixel,
    /// each once.
    pub fn dilations_at(&self, scale: f32) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::with_capacity(self.count as usize);
        for &d in self.dilations() {
            let d = ((f32::from(d) * scale).round() as usize).max(1);
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }
}

impl Default for Refinement {
    fn default() -> Self {
        Self::TCL
    }
}

/// The photo's colours on the refinement grid, normalised as the model's input is.
#[derive(Debug, Clone, PartialEq)]
pub struct Guide {
    /// `(h, w)` of the refinement grid.
    pub size: (usize, usize),
    /// How much smaller than the full refinement grid it is (1 unless the photo is smaller).
    pub scale: f32,
    /// Three planes of `h × w`.
    pub pixels: Vec<f32>,
}

/// The refinement grid of a photo segmented at `resized` `(h, w)` with `patch`-pixel patches:
/// four cells a patch side, no finer than the resized photo, no larger than the photo's own
/// `photo` `(h, w)`; and its scale against the grid the photo's size would not have limited.
pub fn grid_size(resized: (usize, usize), photo: (usize, usize), patch: usize) -> ((usize, usize), f32) {
    let f = (4.0 / patch.max(1) as f64).min(1.0);
    let full = |n: usize| ((n as f64 * f).round() as usize).max(1);
    let (fh, fw) = (full(resized.0), full(resized.1));
    let s = (photo.0 as f64 / fh as f64).min(photo.1 as f64 / fw as f64).min(1.0);
    let sized = |n: usize| ((n as f64 * s).round() as usize).max(1);
    ((sized(fh), sized(fw)), s as f32)
}

/// Mean of the `(h, w)` plane over each cell of an `(oh, ow)` grid (PyTorch's
/// `adaptive_avg_pool2d`: cell `y` covers rows `⌊y·h/oh⌋` to `⌈(y+1)·h/oh⌉`), written at
/// `out[cell * stride]`.
pub fn area_mean(plane: &[f32], (h, w): (usize, usize), (oh, ow): (usize, usize), out: &mut [f32], stride: usize) {
    let span = |i: usize, n: usize, on: usize| (i * n / on, ((i + 1) * n).div_ceil(on));
    for y in 0..oh {
        let (y0, y1) = span(y, h, oh);
        for x in 0..ow {
            let (x0, x1) = span(x, w, ow);
            let mut sum = 0f32;
            for row in plane[y0 * w..y1 * w].chunks_exact(w) {
                sum += row[x0..x1].iter().sum::<f32>();
            }
            out[(y * ow + x) * stride] = sum / ((y1 - y0) * (x1 - x0)) as f32;
        }
    }
}

/// Each grid cell's weights over its neighbours: 8 a dilation, clamped at the borders (PAMR's
/// replicate padding), a softmax of minus the mean over channels of the colour difference in units
/// of a tenth of the local standard deviation.
pub struct Affinity {
    size: (usize, usize),
    /// `(dy, dx)` of each neighbour, dilation after dilation.
    offsets: Vec<(isize, isize)>,
    /// Cell-major: `weights[cell * offsets.len() + p]`.
    weights: Vec<f32>,
}

/// The eight neighbours of a 3 × 3 stencil dilated by `d`.
pub(crate) fn ring(d: usize) -> impl Iterator<Item = (isize, isize)> {
    let d = d as isize;
    [(-d, -d), (-d, 0), (-d, d), (0, -d), (0, d), (d, -d), (d, 0), (d, d)].into_iter()
}

impl Affinity {
    pub fn new(guide: &Guide, dilations: &[usize]) -> Self {
        let (h, w) = guide.size;
        let offsets: Vec<(isize, isize)> = dilations.iter().flat_map(|&d| ring(d)).collect();
        let n = offsets.len();
        let plane = h * w;
        let px = &guide.pixels;
        let at = |y: usize, x: usize, (dy, dx): (isize, isize)| {
            let ny = (y as isize + dy).clamp(0, h as isize - 1) as usize;
            let nx = (x as isize + dx).clamp(0, w as isize - 1) as usize;
            ny * w + nx
        };
        let mut weights = vec![0f32; plane * n];
        weights.par_chunks_mut(w * n).enumerate().for_each(|(y, row)| {
            let mut logits = vec![0f32; n];
            let mut near = vec![0usize; n];
            for (x, cell) in row.chunks_exact_mut(n).enumerate() {
                let i = y * w + x;
                logits.fill(0.0);
                for (j, &o) in near.iter_mut().zip(&offsets) {
                    *j = at(y, x, o);
                }
                for c in 0..3 {
                    let v = &px[c * plane..(c + 1) * plane];
                    // The standard deviation over the centre and its neighbours, the centre counted
                    // once per dilation (PAMR's stencils each hold it), unbiased as torch.std.
                    let samples = dilations.len() * 9;
                    let mut sum = v[i] * dilations.len() as f32;
                    for &j in &near {
                        sum += v[j];
                    }
                    let mean = sum / samples as f32;
                    let mut sq = (v[i] - mean).powi(2) * dilations.len() as f32;
                    for &j in &near {
                        sq += (v[j] - mean).powi(2);
                    }
                    let std = (sq / (samples - 1) as f32).sqrt();
                    let unit = 1e-8 + 0.1 * std;
                    for (l, &j) in logits.iter_mut().zip(&near) {
                        *l -= (v[i] - v[j]).abs() / unit / 3.0;
                    }
                }
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut total = 0f32;
                for (c, &l) in cell.iter_mut().zip(&logits) {
                    *c = (l - max).exp();
                    total += *c;
                }
                for c in cell.iter_mut() {
                    *c /= total;
                }
            }
        });
        Self { size: guide.size, offsets, weights }
    }

    /// `iterations` passes of PAMR over `scores`, cell-major with `channels` scores a cell: each
    /// cell's scores become its neighbours' weighted by the affinity.
    pub fn refine(&self, scores: &mut Vec<f32>, channels: usize, iterations: u32) {
        let mut next = vec![0f32; scores.len()];
        for _ in 0..iterations {
            // A label count known at compile time lets the neighbour sums run as whole vectors.
            match channels {
                1 => self.step::<1>(scores, &mut next, channels),
                2 => self.step::<2>(scores, &mut next, channels),
                3 => self.step::<3>(scores, &mut next, channels),
                4 => self.step::<4>(scores, &mut next, channels),
                5 => self.step::<5>(scores, &mut next, channels),
                6 => self.step::<6>(scores, &mut next, channels),
                7 => self.step::<7>(scores, &mut next, channels),
                8 => self.step::<8>(scores, &mut next, channels),
                _ => self.step::<0>(scores, &mut next, channels),
            }
            std::mem::swap(scores, &mut next);
        }
    }

    /// One pass from `src` into `next`: `C` labels a cell, or `channels` of them where `C` is 0.
    fn step<const C: usize>(&self, src: &[f32], next: &mut [f32], channels: usize) {
        let (h, w) = self.size;
        let n = self.offsets.len();
        next.par_chunks_mut(w * channels).enumerate().for_each(|(y, row)| {
            let weights = &self.weights[y * w * n..(y + 1) * w * n];
            // Rows and columns of each neighbour, clamped once a row.
            let rows: Vec<usize> =
                self.offsets.iter().map(|&(dy, _)| (y as isize + dy).clamp(0, h as isize - 1) as usize * w).collect();
            for (x, (out, cell)) in row.chunks_exact_mut(channels).zip(weights.chunks_exact(n)).enumerate() {
                let neighbours = self.offsets.iter().zip(&rows).zip(cell).map(|((&(_, dx), &r), &a)| {
                    let nx = (x as isize + dx).clamp(0, w as isize - 1) as usize;
                    (a, (r + nx) * channels)
                });
                if C > 0 {
                    let mut acc = [0f32; C];
                    for (a, j) in neighbours {
                        let s: &[f32; C] = src[j..j + C].try_into().expect("C labels a cell");
                        for k in 0..C {
                            acc[k] += a * s[k];
                        }
                    }
                    out.copy_from_slice(&acc);
                } else {
                    out.fill(0.0);
                    for (a, j) in neighbours {
                        for (o, &s) in out.iter_mut().zip(&src[j..j + channels]) {
                            *o += a * s;
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain formula, cell by cell: PAMR's neighbourhood sums written out.
    fn reference(guide: &Guide, dilations: &[usize], scores: &[f32], channels: usize, iterations: u32) -> Vec<f32> {
        let (h, w) = guide.size;
        let plane = h * w;
        let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
        let mut m = scores.to_vec();
        let mut weights = vec![];
        for y in 0..h {
            for x in 0..w {
                let mut logits = vec![];
                let mut stds = [0f64; 3];
                for (c, s) in stds.iter_mut().enumerate() {
                    let mut vals = vec![];
                    for &d in dilations {
                        for dy in [-1isize, 0, 1] {
                            for dx in [-1isize, 0, 1] {
                                let (ny, nx) = (clamp(y as isize + dy * d as isize, h), clamp(x as isize + dx * d as isize, w));
                                vals.push(guide.pixels[c * plane + ny * w + nx] as f64);
                            }
                        }
                    }
                    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                    *s = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (vals.len() - 1) as f64).sqrt();
                }
                let mut nbrs = vec![];
                for &d in dilations {
                    for (dy, dx) in ring(d) {
                        let j = clamp(y as isize + dy, h) * w + clamp(x as isize + dx, w);
                        let mut a = 0f64;
                        for c in 0..3 {
                            let diff = (guide.pixels[c * plane + y * w + x] - guide.pixels[c * plane + j]).abs() as f64;
                            a -= diff / (1e-8 + 0.1 * stds[c]);
                        }
                        logits.push(a / 3.0);
                        nbrs.push(j);
                    }
                }
                let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
                weights.push(logits.iter().map(|l| (l - max).exp() / total).zip(nbrs).collect::<Vec<_>>());
            }
        }
        for _ in 0..iterations {
            let mut next = vec![0f32; m.len()];
            for (i, cell) in weights.iter().enumerate() {
                for c in 0..channels {
                    next[i * channels + c] = cell.iter().map(|&(a, j)| a * m[j * channels + c] as f64).sum::<f64>() as f32;
                }
            }
            m = next;
        }
        m
    }

    fn guide(h: usize, w: usize) -> Guide {
        // Left half dark, right half bright, with a little texture.
        let mut pixels = vec![0f32; 3 * h * w];
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let base = if x < w / 2 { -1.0 } else { 1.5 };
                    pixels[c * h * w + y * w + x] = base + 0.05 * (((x * 7 + y * 3 + c) % 5) as f32 - 2.0);
                }
            }
        }
        Guide { size: (h, w), scale: 1.0, pixels }
    }

    #[test]
    fn refinement_is_pamrs_formula() {
        let g = guide(9, 13);
        let dilations = [1, 2, 4];
        // Label counts with a pass of their own (up to 8) and one without.
        for channels in [3, 8, 11] {
            let scores: Vec<f32> = (0..9 * 13 * channels).map(|i| ((i * 37) % 11) as f32 / 10.0).collect();
            let mut ours = scores.clone();
            Affinity::new(&g, &dilations).refine(&mut ours, channels, 4);
            let theirs = reference(&g, &dilations, &scores, channels, 4);
            let gap = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(gap < 1e-5, "{channels} labels: max |diff| {gap}");
        }
    }

    #[test]
    fn scores_spilled_past_an_edge_flow_back() {
        // A label that the coarse grid spread two cells past the edge between the halves.
        let (h, w) = (8, 16);
        let g = guide(h, w);
        let mut scores: Vec<f32> = (0..h * w).map(|i| if i % w < w / 2 + 2 { 1.0 } else { 0.0 }).collect();
        Affinity::new(&g, &[1, 2, 4]).refine(&mut scores, 1, 10);
        for y in 0..h {
            assert!(scores[y * w + w / 2 + 1] < 0.2, "spilled cell keeps {}", scores[y * w + w / 2 + 1]);
            assert!(scores[y * w + w / 2 - 2] > 0.9, "inside cell falls to {}", scores[y * w + w / 2 - 2]);
        }
    }

    #[test]
    fn the_grid_is_four_cells_a_patch_and_never_finer_than_the_photo() {
        // A 4000 × 3000 photo segmented at 448 × 597 with 16-pixel patches: a quarter.
        assert_eq!(grid_size((448, 597), (3000, 4000), 16), ((112, 149), 1.0));
        // The shapes demo: 64-pixel scenes segmented at 128 with 4-pixel patches: the scene's own.
        assert_eq!(grid_size((128, 128), (64, 64), 4), ((64, 64), 0.5));
        assert_eq!(Refinement::TCL.dilations_at(0.5), vec![1, 2, 4, 6, 12]);
    }

    #[test]
    fn area_mean_averages_each_cell() {
        let plane: Vec<f32> = (0..4 * 6).map(|i| i as f32).collect();
        let mut out = vec![0f32; 2 * 3];
        area_mean(&plane, (4, 6), (2, 3), &mut out, 1);
        assert_eq!(out, vec![3.5, 5.5, 7.5, 15.5, 17.5, 19.5]);
    }

    #[test]
    fn options_out_of_range_are_refused() {
        assert!(Refinement::new(0, &[1]).unwrap_err().to_string().contains("iterations"));
        assert!(Refinement::new(10, &[]).unwrap_err().to_string().contains("dilations"));
        assert!(Refinement::new(10, &[0]).unwrap_err().to_string().contains("dilations"));
        assert_eq!(Refinement::new(10, &[1, 2, 4, 8, 12, 24]).unwrap(), Refinement::TCL);
    }
}
