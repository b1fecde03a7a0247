//! Open-vocabulary boxes (ViLD's task) from GroupViT's segmentation: each label's connected
//! regions, its fragments merged where they lie close enough to be one object, a score from the
//! region's confidence, then small regions dropped, non-maximum suppression across labels, a score
//! threshold and the top k. Boxes are in the photo's pixels.

use crate::error::{Error, Result};
use crate::segment::Segmentation;

/// A box in photo pixels, transformers.js's `{xmin, ymin, xmax, ymax}`: pixel edges, so a region
/// covering columns 3 to 5 has `xmin` 3 and `xmax` 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BoundingBox {
    pub xmin: u32,
    pub ymin: u32,
    pub xmax: u32,
    pub ymax: u32,
}

impl BoundingBox {
    fn pixel(x: u32, y: u32) -> Self {
        Self { xmin: x, ymin: y, xmax: x + 1, ymax: y + 1 }
    }

    fn union(&self, o: &Self) -> Self {
        Self { xmin: self.xmin.min(o.xmin), ymin: self.ymin.min(o.ymin), xmax: self.xmax.max(o.xmax), ymax: self.ymax.max(o.ymax) }
    }

    pub fn area(&self) -> u64 {
        (self.xmax - self.xmin) as u64 * (self.ymax - self.ymin) as u64
    }

    /// Intersection over union.
    pub fn iou(&self, o: &Self) -> f32 {
        let w = self.xmax.min(o.xmax).saturating_sub(self.xmin.max(o.xmin)) as u64;
        let h = self.ymax.min(o.ymax).saturating_sub(self.ymin.max(o.ymin)) as u64;
        let inter = w * h;
        let union = self.area() + o.area() - inter;
        if union == 0 {
            0.0
        } else {
            inter as f32 / union as f32
        }
    }

    /// Whether the boxes come within `gap` pixels of each other.
    fn near(&self, o: &Self, gap: u32) -> bool {
        self.xmin <= o.xmax + gap && o.xmin <= self.xmax + gap && self.ymin <= o.ymax + gap && o.ymin <= self.ymax + gap
    }
}

/// One object found: transformers.js's zero-shot detection item.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Detection {
    pub label: String,
    /// The region's mean score (0–1).
    pub score: f32,
    #[serde(rename = "box")]
    pub bounds: BoundingBox,
    /// The label's class in the segmentation (1 for the first label).
    #[serde(skip)]
    pub class: usize,
    /// Pixels of the region.
    #[serde(skip)]
    pub area: u64,
    /// The region's pixel nearest its centroid: where a name written on it lands inside it.
    #[serde(skip)]
    pub anchor: (u32, u32),
    /// Which region of its segmentation's [`RegionMap`] it is.
    #[serde(skip)]
    pub region: u32,
}

/// Which region each pixel of a segmentation belongs to: the detections' masks.
#[derive(Debug, Clone)]
pub struct RegionMap {
    pub width: u32,
    pub height: u32,
    /// Row-major region per pixel; `u32::MAX` for background.
    region_of: Vec<u32>,
}

impl RegionMap {
    /// Whether pixel `index` (row-major) belongs to `detection`'s region.
    pub fn contains(&self, detection: &Detection, index: usize) -> bool {
        self.region_of[index] == detection.region
    }
}

/// How regions become detections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectOptions {
    /// Detections scoring under this (0–1) are dropped.
    pub threshold: f32,
    /// At most this many, best first (all when `None`).
    pub top_k: Option<usize>,
    /// Regions smaller than this share of the photo (0–1) are dropped.
    pub min_area: f32,
    /// A box overlapping a better one (any label) by more than this IoU is dropped; 1 keeps all.
    pub nms_iou: f32,
    /// Fragments of a label this close (share of the photo's longer side, at least 2 pixels) are
    /// one object.
    pub merge_gap: f32,
    /// A region smaller than this share of its label's largest region is a stray fragment (pixels
    /// around another object taking the label), not an object of its own.
    pub fragment_share: f32,
}

impl Default for DetectOptions {
    /// transformers.js's zero-shot detection threshold (0.1), every detection, regions of at least
    /// 0.1 % of the photo, suppression above IoU 0.5.
    fn default() -> Self {
        Self { threshold: 0.1, top_k: None, min_area: 0.001, nms_iou: 0.5, merge_gap: 0.02, fragment_share: 0.1 }
    }
}

impl DetectOptions {
    /// Says which option is out of its range.
    pub fn check(&self) -> Result<()> {
        for (name, v) in [
            ("threshold", self.threshold),
            ("minimum area", self.min_area),
            ("NMS IoU", self.nms_iou),
            ("merge gap", self.merge_gap),
            ("fragment share", self.fragment_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::InvalidInput(format!("the detection {name} must be between 0 and 1, not {v}")));
            }
        }
        if self.top_k == Some(0) {
            return Err(Error::InvalidInput("top-k must be at least 1".into()));
        }
        Ok(())
    }
}

/// A region being gathered.
#[derive(Clone)]
struct Region {
    class: usize,
    area: u64,
    score_sum: f64,
    bounds: BoundingBox,
    sum_x: f64,
    sum_y: f64,
}

impl Region {
    fn absorb(&mut self, o: &Region) {
        self.area += o.area;
        self.score_sum += o.score_sum;
        self.bounds = self.bounds.union(&o.bounds);
        self.sum_x += o.sum_x;
        self.sum_y += o.sum_y;
    }
}

/// How far apart (pixels) two fragments of a label may lie and still be one object: `share` of the
/// photo's longer side, at least 2 pixels.
fn merge_gap(width: u32, height: u32, share: f32) -> u32 {
    ((width.max(height) as f32 * share).round() as u32).max(2)
}

/// Every label's regions (4-connected, fragments within `merge_gap` of the longer side merged),
/// unfiltered, in no particular order.
pub fn regions(seg: &Segmentation, merge_gap_share: f32) -> Vec<Detection> {
    regions_and_map(seg, merge_gap_share).0
}

/// [`regions`], and which of them each pixel belongs to.
fn regions_and_map(seg: &Segmentation, merge_gap_share: f32) -> (Vec<Detection>, RegionMap) {
    let (w, h) = (seg.width as usize, seg.height as usize);
    let map = &seg.label_map;
    const NONE: u32 = u32::MAX;
    let mut component = vec![NONE; w * h];
    let mut found: Vec<Region> = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        let class = map[start] as usize;
        if class == 0 || class >= seg.classes.len() || component[start] != NONE {
            continue;
        }
        let id = found.len() as u32;
        let (x0, y0) = ((start % w) as u32, (start / w) as u32);
        let mut r = Region { class, area: 0, score_sum: 0.0, bounds: BoundingBox::pixel(x0, y0), sum_x: 0.0, sum_y: 0.0 };
        component[start] = id;
        stack.push(start);
        while let Some(p) = stack.pop() {
            let (x, y) = (p % w, p / w);
            r.area += 1;
            r.score_sum += seg.scores[p] as f64;
            r.bounds = r.bounds.union(&BoundingBox::pixel(x as u32, y as u32));
            r.sum_x += x as f64;
            r.sum_y += y as f64;
            let mut visit = |q: usize| {
                if component[q] == NONE && map[q] as usize == class {
                    component[q] = id;
                    stack.push(q);
                }
            };
            if x > 0 {
                visit(p - 1);
            }
            if x + 1 < w {
                visit(p + 1);
            }
            if y > 0 {
                visit(p - w);
            }
            if y + 1 < h {
                visit(p + w);
            }
        }
        found.push(r);
    }

    // Fragments of one label close to each other are one object: merge until nothing changes.
    let gap = merge_gap(seg.width, seg.height, merge_gap_share);
    // `merged_into[j]`: the region fragment j was merged into (itself while it stands alone).
    let mut merged_into: Vec<usize> = (0..found.len()).collect();
    let mut merged: Vec<Option<Region>> = found.into_iter().map(Some).collect();
    loop {
        let mut changed = false;
        for i in 0..merged.len() {
            for j in i + 1..merged.len() {
                let near = match (&merged[i], &merged[j]) {
                    (Some(a), Some(b)) => a.class == b.class && a.bounds.near(&b.bounds, gap),
                    _ => false,
                };
                if near {
                    let b = merged[j].take().expect("checked above");
                    merged[i].as_mut().expect("checked above").absorb(&b);
                    merged_into[j] = i;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }

    // Each fragment's final region: follow the merges (each points to an earlier region).
    let owner: Vec<usize> = (0..merged_into.len())
        .map(|mut k| {
            while merged_into[k] != k {
                k = merged_into[k];
            }
            k
        })
        .collect();

    // Each region's pixel nearest its centroid.
    let centroid: Vec<Option<(f64, f64)>> =
        merged.iter().map(|r| r.as_ref().map(|r| (r.sum_x / r.area as f64, r.sum_y / r.area as f64))).collect();
    let mut anchor: Vec<((u32, u32), f64)> = vec![((0, 0), f64::INFINITY); merged.len()];
    for (p, &c) in component.iter().enumerate() {
        if c == NONE {
            continue;
        }
        let r = owner[c as usize];
        if let Some((cx, cy)) = centroid[r] {
            let (x, y) = ((p % w) as f64, (p / w) as f64);
            let d = (x - cx).powi(2) + (y - cy).powi(2);
            if d < anchor[r].1 {
                anchor[r] = (((p % w) as u32, (p / w) as u32), d);
            }
        }
    }
    let found = merged
        .into_iter()
        .zip(anchor)
        .enumerate()
        .filter_map(|(i, (r, (a, _)))| {
            r.map(|r| Detection {
                label: seg.classes[r.class].clone(),
                score: (r.score_sum / r.area as f64) as f32,
                bounds: r.bounds,
                class: r.class,
                area: r.area,
                anchor: a,
                region: i as u32,
            })
        })
        .collect();
    // Pixels name their final region, as the detections do.
    for c in component.iter_mut().filter(|c| **c != NONE) {
        *c = owner[*c as usize] as u32;
    }
    (found, RegionMap { width: seg.width, height: seg.height, region_of: component })
}

/// The objects of a segmentation, best first.
pub fn detect(seg: &Segmentation, opts: &DetectOptions) -> Vec<Detection> {
    detect_with_masks(seg, opts).0
}

/// [`detect`], and the map of the regions the detections are (their masks).
pub fn detect_with_masks(seg: &Segmentation, opts: &DetectOptions) -> (Vec<Detection>, RegionMap) {
    let min_pixels = opts.min_area as f64 * seg.width as f64 * seg.height as f64;
    let (all, map) = regions_and_map(seg, opts.merge_gap);
    let mut largest = vec![0u64; seg.classes.len()];
    for d in &all {
        largest[d.class] = largest[d.class].max(d.area);
    }
    let mut candidates: Vec<Detection> = all
        .into_iter()
        .filter(|d| d.area as f64 >= min_pixels.max(opts.fragment_share as f64 * largest[d.class] as f64) && d.score >= opts.threshold)
        .collect();
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.area.cmp(&a.area)).then(a.class.cmp(&b.class)));
    let mut kept: Vec<Detection> = Vec::new();
    for d in candidates {
        if opts.top_k.is_some_and(|k| kept.len() >= k) {
            break;
        }
        if opts.nms_iou < 1.0 && kept.iter().any(|k| k.bounds.iou(&d.bounds) > opts.nms_iou) {
            continue;
        }
        kept.push(d);
    }
    (kept, map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::summarize;

    /// A segmentation from rows of digits (class per pixel), with `score` everywhere but where
    /// `scores` says otherwise.
    fn seg(rows: &[&str], classes: &[&str], score: f32) -> Segmentation {
        let h = rows.len();
        let w = rows[0].len();
        let map: Vec<u16> = rows.iter().flat_map(|r| r.bytes().map(|b| (b - b'0') as u16)).collect();
        summarize(map, vec![score; w * h], classes.iter().map(|c| c.to_string()).collect(), (h, w))
    }

    #[test]
    fn regions_become_boxes_in_pixel_edges() {
        let s = seg(&["0000000000", "0110000220", "0110000220", "0000000000"], &["background", "cat", "dog"], 0.8);
        let d = detect(&s, &DetectOptions::default());
        assert_eq!(d.len(), 2);
        let cat = d.iter().find(|d| d.label == "cat").unwrap();
        assert_eq!(cat.bounds, BoundingBox { xmin: 1, ymin: 1, xmax: 3, ymax: 3 });
        assert_eq!((cat.area, cat.score), (4, 0.8));
        let json = serde_json::to_value(cat).unwrap();
        assert_eq!(json, serde_json::json!({"label": "cat", "score": 0.800000011920929, "box": {"xmin": 1, "ymin": 1, "xmax": 3, "ymax": 3}}));
    }

    #[test]
    fn close_fragments_merge_and_far_ones_stay_apart() {
        // Two cat fragments 1 pixel apart (one object), and a third far away (another cat).
        let rows = ["11011000000000000000000000000000000000000000000000000011", "11011000000000000000000000000000000000000000000000000011"];
        let s = seg(&rows, &["background", "cat"], 0.9);
        let mut d = detect(&s, &DetectOptions { min_area: 0.0, ..Default::default() });
        d.sort_by_key(|d| d.bounds.xmin);
        assert_eq!(d.iter().map(|d| (d.bounds.xmin, d.bounds.xmax, d.area)).collect::<Vec<_>>(), [(0, 5, 8), (54, 56, 4)]);
    }

    #[test]
    fn small_regions_low_scores_overlaps_and_top_k() {
        let rows = ["1111111100", "1111111100", "1122221100", "1122221100", "1111111103"];
        let s = seg(&rows, &["background", "table", "cup", "speck"], 0.5);
        // The speck is 1 pixel of 50: under a 5 % minimum area.
        let d = detect(&s, &DetectOptions { min_area: 0.05, ..Default::default() });
        assert_eq!(d.iter().map(|d| d.label.as_str()).collect::<Vec<_>>(), ["table", "cup"]);
        // The cup lies inside the table's box (IoU 8/40): kept at 0.5, suppressed at 0.1.
        let d = detect(&s, &DetectOptions { min_area: 0.05, nms_iou: 0.1, ..Default::default() });
        assert_eq!(d.iter().map(|d| d.label.as_str()).collect::<Vec<_>>(), ["table"]);
        assert!(detect(&s, &DetectOptions { threshold: 0.6, ..Default::default() }).is_empty());
        assert_eq!(detect(&s, &DetectOptions { min_area: 0.0, top_k: Some(2), ..Default::default() }).len(), 2);
        assert!(DetectOptions { threshold: 1.5, ..Default::default() }.check().is_err());
        assert!(DetectOptions { top_k: Some(0), ..Default::default() }.check().is_err());
    }

    #[test]
    fn a_stray_fragment_of_a_label_is_not_an_object() {
        // A 4 × 12 cat and a 1-pixel cat far from it (1/48 of the big one).
        let rows = ["1111111111110000000000000000000000001", "1111111111110000000000000000000000000"];
        let rows = [rows[0], rows[1], rows[1], rows[1]];
        let d = detect(&seg(&rows, &["background", "cat"], 0.9), &DetectOptions { min_area: 0.0, ..Default::default() });
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].area, 48);
    }

    #[test]
    fn the_anchor_lies_inside_a_ring_shaped_region() {
        let rows = ["11111", "10001", "10001", "10001", "11111"];
        let d = regions(&seg(&rows, &["background", "ring"], 1.0), DetectOptions::default().merge_gap);
        let (x, y) = d[0].anchor;
        assert_eq!(rows[y as usize].as_bytes()[x as usize], b'1');
    }
}
