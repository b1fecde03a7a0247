//! Grounding a caption (GLIP's task): each of its phrases (see `crate::phrases`) segmented as a
//! label, and its best region taken as where it is in the photo — box and score, or none.

use crate::detect::{self, BoundingBox, DetectOptions};
use crate::phrases::Phrase;
use crate::segment::Segmentation;

/// Where one phrase of the caption is.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Grounding {
    pub phrase: String,
    /// Offsets of the phrase in the caption (bytes here; the faces give them in their strings' units).
    pub start: usize,
    pub end: usize,
    /// The region's mean score (0–1); 0 where the phrase is found nowhere.
    pub score: f32,
    /// `None` where no region of the photo took the phrase.
    #[serde(rename = "box")]
    pub bounds: Option<BoundingBox>,
    /// Its class in the segmentation.
    #[serde(skip)]
    pub class: usize,
}

impl Grounding {
    /// The same with `start` and `end` mapped by `offset(caption, byte offset)`, e.g.
    /// `crate::phrases::char_offset`.
    pub fn with_offsets(&self, caption: &str, offset: fn(&str, usize) -> usize) -> Self {
        Self { start: offset(caption, self.start), end: offset(caption, self.end), ..self.clone() }
    }
}

/// The labels to segment a caption's phrases by: each phrase's [`Phrase::label`], once (ignoring
/// ASCII case), in order.
pub fn labels(phrases: &[Phrase]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    phrases.iter().map(Phrase::label).filter(|l| seen.insert(l.to_ascii_lowercase())).collect()
}

/// Grounds `phrases` in `seg`, a segmentation by [`labels`]`(phrases)`: each phrase gets its label's
/// best region (highest score, then largest) that passes `opts`' threshold and minimum area; no
/// suppression across labels, since each phrase has its own.
pub fn ground(phrases: &[Phrase], seg: &Segmentation, opts: &DetectOptions) -> Vec<Grounding> {
    let found = detect::detect(seg, &DetectOptions { top_k: None, nms_iou: 1.0, ..*opts });
    phrases
        .iter()
        .map(|p| {
            let label = p.label();
            let class = seg.classes.iter().skip(1).position(|c| c.eq_ignore_ascii_case(&label)).map_or(0, |i| i + 1);
            // `detect` ranks best first.
            let best = found.iter().find(|d| class > 0 && d.class == class);
            Grounding {
                phrase: p.text.clone(),
                start: p.start,
                end: p.end,
                score: best.map_or(0.0, |d| d.score),
                bounds: best.map(|d| d.bounds),
                class,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phrases::{char_offset, chunk};
    use crate::segment::summarize;

    #[test]
    fn each_phrase_gets_its_best_region_or_none() {
        let caption = "a man riding a brown horse next to a red car";
        let phrases = chunk(caption);
        let labels = labels(&phrases);
        assert_eq!(labels, ["man", "brown horse", "red car"]);
        // A hand-made label map: the man (1) above the horse (2), two horse fragments far apart (the
        // larger wins on equal scores); no car.
        let rows = [
            "0110000000000000000000000000000000000000",
            "0110000000000000000000000000000000000000",
            "2222200000000000000000000000000000000022",
            "2222200000000000000000000000000000000000",
        ];
        let map: Vec<u16> = rows.iter().flat_map(|r| r.bytes().map(|b| (b - b'0') as u16)).collect();
        let classes = std::iter::once("background".to_string()).chain(labels.iter().cloned()).collect();
        let seg = summarize(map, vec![0.9; 160], classes, (4, 40));
        let g = ground(&phrases, &seg, &DetectOptions::default());
        assert_eq!(g[0].bounds, Some(BoundingBox { xmin: 1, ymin: 0, xmax: 3, ymax: 2 }));
        assert_eq!(g[1].bounds, Some(BoundingBox { xmin: 0, ymin: 2, xmax: 5, ymax: 4 }));
        assert_eq!((g[2].phrase.as_str(), g[2].bounds, g[2].score), ("a red car", None, 0.0));
        assert_eq!(&caption[g[1].start..g[1].end], "a brown horse");
        let json = serde_json::to_value(&g[2]).unwrap();
        assert_eq!(json, serde_json::json!({"phrase": "a red car", "start": 35, "end": 44, "score": 0.0, "box": null}));
        assert_eq!(g[1].with_offsets(caption, char_offset).start, 13);
    }
}
