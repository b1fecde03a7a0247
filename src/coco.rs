//! Results as COCO annotations, the format dataset tools import (CVAT, Label Studio, FiftyOne,
//! Roboflow) and COCO's evaluation reads: masks in COCO's run-length encoding (column by column,
//! compressed to a string as pycocotools writes it), boxes as `[x, y, width, height]`.
//!
//! A segmentation gives one annotation per label it paints (all of the label's pixels: COCO's
//! semantic "stuff" style); detections give one per box, with the mask of the region it bounds.
//!
//! The encoding is written here rather than taken from a COCO crate: the one maintained Rust port
//! of pycocotools (hotcoco) is a whole evaluation engine the WebAssembly module would carry, for the
//! sixty lines used; the tests check these against pycocotools itself.

use serde::{Deserialize, Serialize};

use crate::detect::{Detection, RegionMap};
use crate::error::{Error, Result};
use crate::segment::Segmentation;

/// A mask in COCO's run-length encoding: `size` is `[height, width]`; `counts` the lengths of
/// alternating runs of outside and inside pixels, column by column, starting outside, compressed
/// as pycocotools' `rleToString` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rle {
    pub size: [u32; 2],
    pub counts: String,
}

impl Rle {
    /// The mask of the pixels for which `inside(index)` holds (`index` row-major, as label maps
    /// are).
    pub fn encode(width: u32, height: u32, inside: impl Fn(usize) -> bool) -> Self {
        let (w, h) = (width as usize, height as usize);
        let mut runs = Vec::new();
        let (mut current, mut run) = (false, 0u32);
        for x in 0..w {
            for y in 0..h {
                let v = inside(y * w + x);
                if v != current {
                    runs.push(run);
                    current = v;
                    run = 0;
                }
                run += 1;
            }
        }
        runs.push(run);
        Self { size: [height, width], counts: compress(&runs) }
    }

    /// The mask, row-major.
    pub fn decode(&self) -> Result<Vec<bool>> {
        let [h, w] = self.size;
        let (h, w) = (h as usize, w as usize);
        let runs = decompress(&self.counts)?;
        let pixels = h * w;
        if runs.iter().map(|&r| r as u64).sum::<u64>() != pixels as u64 {
            return Err(Error::Annotations(format!("a mask's runs do not add up to its {w}×{h} pixels")));
        }
        let mut mask = vec![false; pixels];
        let mut i = 0;
        for (k, &run) in runs.iter().enumerate() {
            for j in i..i + run as usize {
                // Column-major position j is pixel (x, y) = (j / h, j % h).
                mask[(j % h) * w + j / h] = k % 2 == 1;
            }
            i += run as usize;
        }
        Ok(mask)
    }
}

/// pycocotools' `rleToString`: each count (from the third on, its difference from the count two
/// before) in 5-bit groups, low first, with a continuation bit, as characters from '0'.
fn compress(runs: &[u32]) -> String {
    let mut s = String::new();
    for (i, &run) in runs.iter().enumerate() {
        let mut x = run as i64;
        if i > 2 {
            x -= runs[i - 2] as i64;
        }
        loop {
            let mut c = (x & 0x1f) as u8;
            x >>= 5;
            let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
            if more {
                c |= 0x20;
            }
            s.push((c + 48) as char);
            if !more {
                break;
            }
        }
    }
    s
}

/// pycocotools' `rleFrString`.
fn decompress(s: &str) -> Result<Vec<u32>> {
    let bad = || Error::Annotations(format!("{s:?} is not a compressed COCO mask"));
    let bytes = s.as_bytes();
    let mut runs: Vec<u32> = Vec::new();
    let mut p = 0;
    while p < bytes.len() {
        let (mut x, mut k) = (0i64, 0u32);
        loop {
            let c = bytes[p].checked_sub(48).filter(|&c| c < 64).ok_or_else(bad)? as i64;
            if k >= 12 {
                return Err(bad());
            }
            x |= (c & 0x1f) << (5 * k);
            p += 1;
            k += 1;
            if c & 0x20 == 0 {
                if c & 0x10 != 0 {
                    x |= -1i64 << (5 * k);
                }
                break;
            }
            if p == bytes.len() {
                return Err(bad());
            }
        }
        if runs.len() > 2 {
            x += runs[runs.len() - 2] as i64;
        }
        runs.push(u32::try_from(x).map_err(|_| bad())?);
    }
    Ok(runs)
}

/// One photo of a COCO file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: u64,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

/// A label, with its id in the annotations (the labels' order from 1; 0 is no category in COCO).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub id: u32,
    pub name: String,
}

/// One mask with its box: a label's pixels in a photo, or a detection's region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub id: u64,
    pub image_id: u64,
    pub category_id: u32,
    pub segmentation: Rle,
    /// Pixels of the mask.
    pub area: u64,
    /// `[x, y, width, height]` in pixels.
    pub bbox: [u32; 4],
    pub iscrowd: u8,
    /// The mask's mean score (0–1): what COCO's evaluation ranks results by.
    pub score: f32,
}

/// An annotation in COCO's results format (what `COCO.loadRes` and COCOeval read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultAnnotation {
    pub image_id: u64,
    pub category_id: u32,
    pub segmentation: Rle,
    pub bbox: [u32; 4],
    pub score: f32,
}

/// Whether photos keep their ids when files are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoIds {
    /// The parts of one run, whose photos are numbered in the run's order.
    Keep,
    /// Files of separate runs (shards), whose ids may collide: numbered after the file's.
    Renumber,
}

/// A COCO file: photos, labels and annotations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Dataset {
    pub images: Vec<Image>,
    pub categories: Vec<Category>,
    pub annotations: Vec<Annotation>,
}

impl Dataset {
    /// A file for `labels` with no photo yet.
    pub fn new(labels: &[String]) -> Self {
        let categories = labels.iter().enumerate().map(|(i, name)| Category { id: i as u32 + 1, name: name.clone() }).collect();
        Self { images: Vec::new(), categories, annotations: Vec::new() }
    }

    /// Adds a photo's segmentation: one annotation per label with pixels, in the labels' order.
    /// The segmentation's labels must be this file's categories.
    pub fn add_segmentation(&mut self, image: Image, seg: &Segmentation) -> Result<()> {
        self.check_labels(&seg.classes[1..])?;
        check_size(&image, seg)?;
        for c in 1..seg.classes.len() {
            let Some([x0, y0, x1, y1]) = seg.summary[c].bbox else { continue };
            let class = c as u16;
            let inside = |p: usize| seg.label_map[p] == class;
            // The summary's share is a float; the area is counted exactly.
            let area = seg.label_map.iter().filter(|&&l| l == class).count() as u64;
            let score = seg.summary[c].mean_score as f64;
            self.push(&image, c, Rle::encode(seg.width, seg.height, inside), area, [x0, y0, x1 - x0, y1 - y0], score);
        }
        self.images.push(image);
        Ok(())
    }

    /// Adds a photo's detections: one annotation per box, with its region's mask, best first.
    pub fn add_detections(&mut self, image: Image, seg: &Segmentation, found: &[Detection], regions: &RegionMap) -> Result<()> {
        self.check_labels(&seg.classes[1..])?;
        check_size(&image, seg)?;
        for d in found {
            let b = d.bounds;
            let mask = Rle::encode(seg.width, seg.height, |p| regions.contains(d, p));
            self.push(&image, d.class, mask, d.area, [b.xmin, b.ymin, b.xmax - b.xmin, b.ymax - b.ymin], d.score as f64);
        }
        self.images.push(image);
        Ok(())
    }

    fn push(&mut self, image: &Image, class: usize, segmentation: Rle, area: u64, bbox: [u32; 4], score: f64) {
        self.annotations.push(Annotation {
            id: self.annotations.len() as u64 + 1,
            image_id: image.id,
            category_id: class as u32,
            segmentation,
            area,
            bbox,
            iscrowd: 0,
            score: score as f32,
        });
    }

    fn check_labels(&self, labels: &[String]) -> Result<()> {
        if self.categories.len() != labels.len() || self.categories.iter().zip(labels).any(|(c, l)| &c.name != l) {
            let names: Vec<&str> = self.categories.iter().map(|c| c.name.as_str()).collect();
            return Err(Error::Annotations(format!(
                "the labels {labels:?} are not this COCO file's categories {names:?}: one file holds one label list"
            )));
        }
        Ok(())
    }

    /// Appends the photos and annotations of `other` (a file of the same labels), its annotations
    /// renumbered after this file's, and its photos too where `ids` says so.
    pub fn append(&mut self, other: Dataset, ids: PhotoIds) -> Result<()> {
        let labels: Vec<String> = other.categories.iter().map(|c| c.name.clone()).collect();
        self.check_labels(&labels)?;
        if other.categories.iter().enumerate().any(|(i, c)| c.id != i as u32 + 1) {
            return Err(Error::Annotations("its category ids are not 1, 2, 3, … in order: not a file groupseg wrote".into()));
        }
        let first = self.images.iter().map(|i| i.id).max().unwrap_or(0) + 1;
        let mut taken: std::collections::HashSet<u64> = self.images.iter().map(|i| i.id).collect();
        let mut new_id = std::collections::HashMap::new();
        for (k, mut image) in other.images.into_iter().enumerate() {
            let id = match ids {
                PhotoIds::Keep => image.id,
                PhotoIds::Renumber => first + k as u64,
            };
            if new_id.insert(image.id, id).is_some() || !taken.insert(id) {
                return Err(Error::Annotations(format!("photo id {} is used twice", image.id)));
            }
            image.id = id;
            self.images.push(image);
        }
        for mut a in other.annotations {
            a.image_id = *new_id
                .get(&a.image_id)
                .ok_or_else(|| Error::Annotations(format!("an annotation names photo id {}, which the file does not have", a.image_id)))?;
            if a.category_id == 0 || a.category_id as usize > self.categories.len() {
                return Err(Error::Annotations(format!("an annotation names category {}, which the file does not have", a.category_id)));
            }
            a.id = self.annotations.len() as u64 + 1;
            self.annotations.push(a);
        }
        Ok(())
    }

    /// The annotations in COCO's results format.
    pub fn results(&self) -> Vec<ResultAnnotation> {
        self.annotations
            .iter()
            .map(|a| ResultAnnotation {
                image_id: a.image_id,
                category_id: a.category_id,
                segmentation: a.segmentation.clone(),
                bbox: a.bbox,
                score: a.score,
            })
            .collect()
    }
}

/// Files of one label list (shards of a collection, photos of a page) joined into one, photos and
/// annotations numbered from 1 in the files' order. Fails with the index of the file that does
/// not fit.
pub fn merge(parts: impl IntoIterator<Item = Dataset>) -> std::result::Result<Dataset, (usize, Error)> {
    let mut all: Option<Dataset> = None;
    for (k, part) in parts.into_iter().enumerate() {
        let into = all.get_or_insert_with(|| Dataset::new(&part.categories.iter().map(|c| c.name.clone()).collect::<Vec<_>>()));
        into.append(part, PhotoIds::Renumber).map_err(|e| (k, e))?;
    }
    Ok(all.unwrap_or_default())
}

fn check_size(image: &Image, seg: &Segmentation) -> Result<()> {
    if (image.width, image.height) != (seg.width, seg.height) {
        return Err(Error::Annotations(format!(
            "{} is {}×{} but its segmentation {}×{}",
            image.file_name, image.width, image.height, seg.width, seg.height
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{detect_with_masks, DetectOptions};
    use crate::segment::summarize;

    fn seg(rows: &[&str], classes: &[&str]) -> Segmentation {
        let (h, w) = (rows.len(), rows[0].len());
        let map: Vec<u16> = rows.iter().flat_map(|r| r.bytes().map(|b| (b - b'0') as u16)).collect();
        summarize(map, vec![0.5; w * h], classes.iter().map(|c| c.to_string()).collect(), (h, w))
    }

    #[test]
    fn masks_encode_as_pycocotools_does() {
        // pycocotools.mask.encode(np.asfortranarray(m)) of these masks (row-major strings here).
        let cases: [(&[&str], &str); 3] = [
            (&["0110", "0110", "0000"], "32103"),
            (&["1111", "1111"], "08"),
            (&["0000000000000000000000000000000001"; 40], "XY1X1"),
        ];
        for (rows, expected) in cases {
            let (h, w) = (rows.len() as u32, rows[0].len() as u32);
            let bits: Vec<bool> = rows.iter().flat_map(|r| r.bytes().map(|b| b == b'1')).collect();
            let rle = Rle::encode(w, h, |p| bits[p]);
            assert_eq!(rle.counts, expected, "{rows:?}");
            assert_eq!(rle.decode().unwrap(), bits);
        }
    }

    #[test]
    fn long_runs_and_signed_differences_round_trip() {
        // Runs that shrink after growing make the differences negative.
        let (w, h) = (300u32, 200u32);
        let inside = |p: usize| {
            let (x, y) = (p % w as usize, p / w as usize);
            (x * 7 + y * 3) % 97 < (x % 11) * 5 || (x > 150 && y < 190)
        };
        let rle = Rle::encode(w, h, inside);
        // pycocotools' encoding of the same mask begins so.
        assert!(rle.counts.starts_with("V72o0O01O01O0131K10O00010O42J00010O00042KO01O01O0131K10O0001"), "{}", &rle.counts[..60]);
        let back = rle.decode().unwrap();
        assert!(back.iter().enumerate().all(|(p, &v)| v == inside(p)));
        assert!(Rle { size: [2, 2], counts: "3".into() }.decode().is_err(), "runs short of the pixels");
        assert!(Rle { size: [2, 2], counts: "0\u{7f}".into() }.decode().is_err(), "a character outside the alphabet");
    }

    #[test]
    fn a_segmentation_gives_one_annotation_per_painted_label() {
        let s = seg(&["1100", "1100", "0022"], &["background", "cat", "dog", "bird"]);
        let mut d = Dataset::new(&s.classes[1..]);
        d.add_segmentation(Image { id: 7, file_name: "a.png".into(), width: 4, height: 3 }, &s).unwrap();
        let cats: Vec<_> = d.annotations.iter().map(|a| (a.id, a.image_id, a.category_id, a.area, a.bbox)).collect();
        assert_eq!(cats, [(1, 7, 1, 4, [0, 0, 2, 2]), (2, 7, 2, 2, [2, 2, 2, 1])]);
        assert_eq!(d.categories.iter().map(|c| (c.id, c.name.as_str())).collect::<Vec<_>>(), [(1, "cat"), (2, "dog"), (3, "bird")]);
        let mask = d.annotations[1].segmentation.decode().unwrap();
        assert_eq!(mask, s.label_map.iter().map(|&l| l == 2).collect::<Vec<_>>());
        let wrong = Image { id: 8, file_name: "b.png".into(), width: 5, height: 3 };
        assert!(d.add_segmentation(wrong, &s).unwrap_err().to_string().contains("b.png is 5×3"));
        let mut other = Dataset::new(&["cat".to_string()]);
        assert!(other.add_segmentation(Image { id: 1, file_name: "a.png".into(), width: 4, height: 3 }, &s).is_err());
    }

    #[test]
    fn detections_carry_their_own_region_not_their_labels_other_objects() {
        // Two cats far apart: two annotations, each with its own pixels only.
        let rows = ["1100000000000000000000000000000011", "1100000000000000000000000000000011"];
        let s = seg(&rows, &["background", "cat"]);
        let (found, regions) = detect_with_masks(&s, &DetectOptions { min_area: 0.0, ..Default::default() });
        let mut d = Dataset::new(&s.classes[1..]);
        d.add_detections(Image { id: 1, file_name: "a.png".into(), width: 34, height: 2 }, &s, &found, &regions).unwrap();
        assert_eq!(d.annotations.len(), 2);
        for (a, f) in d.annotations.iter().zip(&found) {
            let mask = a.segmentation.decode().unwrap();
            let xs: Vec<usize> = (0..mask.len()).filter(|&p| mask[p]).map(|p| p % 34).collect();
            assert_eq!(xs.len(), 4);
            assert!(xs.iter().all(|&x| (f.bounds.xmin as usize..f.bounds.xmax as usize).contains(&x)));
        }
    }

    #[test]
    fn appending_renumbers_photos_and_annotations_and_refuses_other_labels() {
        let s = seg(&["10", "02"], &["background", "cat", "dog"]);
        let part = |id: u64, name: &str| {
            let mut d = Dataset::new(&s.classes[1..]);
            d.add_segmentation(Image { id, file_name: name.into(), width: 2, height: 2 }, &s).unwrap();
            d
        };
        let mut all = merge([part(3, "a.png"), part(1, "b.png")]).unwrap();
        assert!(all.clone().append(part(2, "c.png"), PhotoIds::Keep).unwrap_err().to_string().contains("photo id 2"));
        let mut kept = part(1, "a.png");
        kept.append(part(5, "e.png"), PhotoIds::Keep).unwrap();
        assert_eq!(kept.images.iter().map(|i| i.id).collect::<Vec<_>>(), [1, 5]);
        assert_eq!(all.images.iter().map(|i| (i.id, i.file_name.as_str())).collect::<Vec<_>>(), [(1, "a.png"), (2, "b.png")]);
        assert_eq!(all.annotations.iter().map(|a| (a.id, a.image_id)).collect::<Vec<_>>(), [(1, 1), (2, 1), (3, 2), (4, 2)]);
        let json = serde_json::to_string(&all).unwrap();
        assert_eq!(serde_json::from_str::<Dataset>(&json).unwrap(), all);
        let mut dogs = Dataset::new(&["dog".to_string(), "cat".to_string()]);
        assert!(dogs.append(part(1, "c.png"), PhotoIds::Renumber).unwrap_err().to_string().contains("one label list"));
        let mut broken = part(1, "d.png");
        broken.annotations[0].image_id = 9;
        assert!(all.append(broken, PhotoIds::Renumber).unwrap_err().to_string().contains("photo id 9"));
    }
}
