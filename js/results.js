// What the API returns: a Segmentation with its helpers, an encoded photo, and painting of label
// maps and groups; the caption helpers the module answers.
import { live } from './module.js';
import { pixelsAt } from './photos.js';
import { optionsFor } from './options.js';

/** The labels as the library reads them (a comma-separated string or an array): split at commas,
 * trimmed, the first of repeats that differ only in ASCII case. Needs the module: after `load`. */
export function parseLabels(labels) {
  return live().parseLabels(labels);
}

/** A segmentation: one class per pixel (0 is background), with colours and a summary per class. */
export class Segmentation {
  constructor(r) {
    this.width = r.width;
    this.height = r.height;
    /** Class names; `labels[0]` is "background". */
    this.labels = r.classes;
    this.labelMap = new Uint16Array(r.labelMap);
    this.scores = new Float32Array(r.scores);
    /** RGB of each class, 3 bytes a class. */
    this.colours = new Uint8Array(r.colours);
    /** Per class: share of the pixels, mean score, bounding box as `bbox` [x0, y0, x1, y1] and as `box`
     * {xmin, ymin, xmax, ymax} (pixel edges, exclusive ends; null when the class has no pixel). */
    this.summary = r.summary;
  }

  /**
   * The objects in it (ViLD's open-vocabulary boxes from GroupViT's regions): each label's
   * connected regions, fragments merged, best first, transformers.js's shape
   * `[{label, score, box: {xmin, ymin, xmax, ymax}}]` in photo pixels (edges: `xmax` is one past the
   * last column). Options: `threshold` (0.1), `topK`, `minArea` (share of the photo, 0.001),
   * `nmsIou` (0.5).
   */
  async detect(options = {}) {
    return live().detectIn(this.width, this.height, this.labelMap, this.scores, this.labels, optionsFor('Segmentation.detect', options));
  }

  /**
   * Where each phrase of `caption` is, in a segmentation by `phraseLabels(caption)` (what
   * `Segmenter.ground` does): `[{phrase, start, end, score, box}]`, `start`/`end` indices into
   * `caption` (`caption.slice(start, end) === phrase`), `box` null where it is nowhere. Options:
   * `threshold`, `minArea`.
   */
  async ground(caption, options = {}) {
    return live().groundIn(this.width, this.height, this.labelMap, this.scores, this.labels, caption, optionsFor('Segmentation.ground', options));
  }

  /**
   * The segmentation as a COCO file of one photo, for dataset tools (CVAT, Label Studio, FiftyOne)
   * and COCO's evaluation: `{images, categories, annotations}`, the labels as categories (ids from
   * 1), one annotation per label with pixels, its mask in COCO's compressed run-length encoding
   * (`{size: [height, width], counts}`, as pycocotools writes it), `bbox` [x, y, width, height],
   * `area` and mean `score`. `fileName` names the photo. Join several with `Segmenter.toCoco`.
   */
  async toCoco(options = {}) {
    const { fileName = 'photo.png' } = optionsFor('Segmentation.toCoco', options);
    return live().cocoIn(this.width, this.height, this.labelMap, this.scores, this.labels, fileName);
  }

  /** The class at pixel (x, y). */
  labelAt(x, y) {
    return this.labels[this.labelMap[y * this.width + x]];
  }

  /** The class index of `label` (its name, or already an index). */
  classOf(label) {
    const k = typeof label === 'number' ? label : this.labels.indexOf(label);
    if (!(k >= 0 && k < this.labels.length)) {
      throw new Error(`${JSON.stringify(label)} is not one of this segmentation's labels (${this.labels.join(', ')})`);
    }
    return k;
  }

  /**
   * One label's pixels as an ImageData the size of the segmentation: opaque in the label's colour
   * (or `colour`, [r, g, b]) where the label is, transparent elsewhere — ready for a mask layer, a
   * CSS `mask-image` or `globalCompositeOperation`.
   */
  mask(label, { colour } = {}) {
    const k = this.classOf(label);
    const c = colour ?? [...this.colours.subarray(3 * k, 3 * k + 3)];
    const out = new Uint8ClampedArray(this.width * this.height * 4);
    for (let i = 0; i < this.labelMap.length; i++) {
      if (this.labelMap[i] !== k) continue;
      out.set(c, 4 * i);
      out[4 * i + 3] = 255;
    }
    return new ImageData(out, this.width, this.height);
  }

  /**
   * The photo's pixels of one label on transparency (a cut-out). `photo`: an ImageData of the
   * segmentation's size, or anything drawable (ImageBitmap, canvas, loaded <img>), drawn at that size.
   */
  cutout(label, photo) {
    const k = this.classOf(label);
    const pixels = pixelsAt(photo, this.width, this.height);
    const out = new Uint8ClampedArray(this.width * this.height * 4);
    for (let i = 0; i < this.labelMap.length; i++) {
      if (this.labelMap[i] === k) out.set(pixels.subarray(4 * i, 4 * i + 4), 4 * i);
    }
    return new ImageData(out, this.width, this.height);
  }

  /**
   * The label map painted as an ImageData: each class in its colour at `opacity` (background
   * transparent), over `photo` (an ImageData of the same size) when given.
   */
  toImageData(options) {
    return paintLabels(this, options);
  }
}

/**
 * Paints a label map (`{width, height, labelMap, colours}`, as a `Segmentation` has them) into an
 * ImageData: each class in its colour at `opacity`, background left out unless `background`; over
 * `photo` (an ImageData of the same size) when given, else on transparency.
 */
export function paintLabels({ width, height, labelMap, colours }, { photo = null, opacity = 1, background = false } = {}) {
  const out = new Uint8ClampedArray(width * height * 4);
  if (photo) {
    if (photo.width !== width || photo.height !== height) {
      throw new Error(`photo is ${photo.width}×${photo.height}, the segmentation ${width}×${height}`);
    }
    out.set(photo.data);
  }
  for (let i = 0; i < labelMap.length; i++) {
    const k = labelMap[i];
    if (k === 0 && !background) continue;
    for (let j = 0; j < 3; j++) {
      const c = colours[3 * k + j];
      out[4 * i + j] = photo ? out[4 * i + j] * (1 - opacity) + c * opacity : c;
    }
    out[4 * i + 3] = photo ? 255 : Math.round(255 * opacity);
  }
  return new ImageData(out, width, height);
}

/**
 * The phrases of a caption as the library finds them (a rule-based noun-phrase chunker; GLIP's
 * "horse. red car." prompts kept whole): `[{text, label, start, end}]`, `label` being what is
 * segmented for it ("a brown horse" → "brown horse"). Needs the module: after `load`.
 */
export function phrasesOf(caption) {
  return live().captionPhrases(caption);
}

/** The labels a caption is segmented by: each phrase's label once. Needs the module: after `load`. */
export function phraseLabels(caption) {
  return live().captionLabels(caption);
}

/**
 * Paints one stage of `Segmenter.groups` into an ImageData: each group in its colour (the stage's
 * `colours`, as the CLI paints groups) over `photo`
 * (an ImageData of the same size) at `opacity`, boundaries between groups white.
 */
export function paintGroups({ width, height, stages }, stage = stages.length - 1, { photo = null, opacity = 0.6 } = {}) {
  const { map, colours } = stages[stage];
  const out = new Uint8ClampedArray(width * height * 4);
  if (photo) out.set(photo.data);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const g = map[i];
      const edge = (x + 1 < width && map[i + 1] !== g) || (y + 1 < height && map[i + width] !== g);
      for (let j = 0; j < 3; j++) {
        const c = edge ? 255 : colours[3 * g + j];
        out[4 * i + j] = photo && !edge ? out[4 * i + j] * (1 - opacity) + c * opacity : c;
      }
      out[4 * i + 3] = 255;
    }
  }
  return new ImageData(out, width, height);
}

/** A photo already through the image encoder (`Segmenter.encode`). */
export class EncodedImage {
  #inner;

  constructor(inner, geometry) {
    this.#inner = inner;
    this.width = inner.width;
    this.height = inner.height;
    /** The size options it was encoded with; segmenting it takes the others. */
    this.geometry = geometry;
  }

  /** Frees what it holds (GPU buffers on WebGPU). */
  dispose() {
    this.#inner?.free();
    this.#inner = null;
  }

  _live() {
    if (!this.#inner) throw new Error('This EncodedImage was disposed');
    return this.#inner;
  }
}
