//! GroupViT's own view of a photo, with no labels: the groups each grouping block formed, with hard
//! boundaries (NVlabs' `first_group`, `final_group` and `all_groups` visualisations). Each stage's
//! soft assignments, chained from the patches up to it, are resized to the window bilinearly and
//! every pixel takes its argmax group, as `GroupViTSegInference.get_attn_maps(return_onehot=True)`
//! does. Overlapping windows each group their own pixels; a pixel of the photo shows the groups of
//! the window whose centre lies nearest.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::resample;
use crate::segment::WindowLayout;

/// One grouping block's groups over the photo.
#[derive(Debug, Clone, PartialEq)]
pub struct StageGroups {
    /// Groups each window has at this stage.
    pub groups_per_window: usize,
    /// Per pixel of the photo (row-major): `window × groups_per_window + group`.
    pub map: Vec<u32>,
}

impl StageGroups {
    /// How many distinct groups the photo shows.
    pub fn distinct(&self) -> usize {
        let mut seen: Vec<u32> = self.map.clone();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }
}

/// Every grouping block's groups, first to last, at the photo's size.
#[derive(Debug, Clone, PartialEq)]
pub struct Groups {
    pub width: u32,
    pub height: u32,
    pub stages: Vec<StageGroups>,
}

/// The groups of an encoded photo from each stage's chained soft maps `(windows, groups, patches)`
/// (see `crate::model::chain_assignments`, stage by stage) over the `grid` of patches.
pub fn hard_groups(stage_maps: &[Tensor], grid: (usize, usize), layout: &WindowLayout) -> Result<Groups> {
    let (gh, gw) = grid;
    let (ch, cw) = layout.window;
    let (h, w) = layout.resized;
    let owner = nearest_window(layout);
    let (oh, ow) = layout.photo;
    let stages = stage_maps
        .iter()
        .map(|maps| {
            let (b, g, patches) = maps.dims3()?;
            if b != layout.origins.len() || patches != gh * gw {
                return Err(Error::InvalidInput(format!(
                    "grouping maps {:?} do not fit {} windows of {gh}×{gw} patches",
                    maps.dims(),
                    layout.origins.len()
                )));
            }
            let data = maps.flatten_all()?.to_vec1::<f32>()?;
            let mut resized_map = vec![0u32; h * w];
            for (i, &(y0, x0)) in layout.origins.iter().enumerate() {
                resample::bilinear_argmax(&data[i * g * patches..(i + 1) * g * patches], g, grid, (ch, cw), |p, best| {
                    let at = (y0 + p / cw) * w + x0 + p % cw;
                    if owner[at] as usize == i {
                        resized_map[at] = (i * g + best) as u32;
                    }
                });
            }
            // Nearest neighbour to the photo's size: a group is a hard region, never blended.
            let map = (0..oh * ow)
                .map(|p| {
                    let (y, x) = (p / ow, p % ow);
                    let ry = ((y as f64 + 0.5) * h as f64 / oh as f64) as usize;
                    let rx = ((x as f64 + 0.5) * w as f64 / ow as f64) as usize;
                    resized_map[ry.min(h - 1) * w + rx.min(w - 1)]
                })
                .collect();
            Ok(StageGroups { groups_per_window: g, map })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Groups { width: ow as u32, height: oh as u32, stages })
}

/// For each pixel of the resized photo, the window whose centre is nearest (the first on ties).
fn nearest_window(layout: &WindowLayout) -> Vec<u32> {
    let (ch, cw) = layout.window;
    let (h, w) = layout.resized;
    let mut best = vec![(u32::MAX, f64::INFINITY); h * w];
    for (i, &(y0, x0)) in layout.origins.iter().enumerate() {
        let (cy, cx) = (y0 as f64 + ch as f64 / 2.0, x0 as f64 + cw as f64 / 2.0);
        for y in y0..y0 + ch {
            for x in x0..x0 + cw {
                let d = (y as f64 + 0.5 - cy).powi(2) + (x as f64 + 0.5 - cx).powi(2);
                let b = &mut best[y * w + x];
                if d < b.1 {
                    *b = (i as u32, d);
                }
            }
        }
    }
    best.into_iter().map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::SegmentationSize;
    use crate::segment::Geometry;
    use candle_core::Device;

    #[test]
    fn two_windows_each_show_their_own_half() {
        // A 4 × 8 photo, windows of 4 at stride 4: two windows, two groups each on a 1 × 2 grid; in
        // both windows group 0 holds the left patch, group 1 the right.
        let geometry = Geometry { size: SegmentationSize { short_side: 4, ..Default::default() }, window_side: 4, stride: 4 };
        let guide = crate::refine::Guide { size: (4, 8), scale: 1.0, pixels: vec![0.0; 3 * 4 * 8] };
        let layout = WindowLayout::new((4, 8), (4, 8), geometry, guide).unwrap();
        assert_eq!(layout.origins, [(0, 0), (0, 4)]);
        let maps = Tensor::new(&[[[1f32, 0.], [0., 1.]], [[1., 0.], [0., 1.]]], &Device::Cpu).unwrap();
        let groups = hard_groups(&[maps], (1, 2), &layout).unwrap();
        assert_eq!(&groups.stages[0].map[..8], &[0, 0, 1, 1, 2, 2, 3, 3]);
        assert_eq!(groups.stages[0].distinct(), 4);
    }
}
