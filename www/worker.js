// The model runs here, off the page's thread, so the page never freezes (not even on the CPU path).
// Messages in: {type: 'load', id, modelUrl | files, backend}, {type: 'run', id, mode, key, photo,
// labels, caption, options} (mode: segment, detect, ground, classify, groups), {type: 'frame', id,
// bitmap, labels, options} (a camera frame, transferred), {type: 'clear-cache', id}. Out: {type: 'progress' | 'done' | 'error', id, …}.
// Each photo (by `key`) goes through the image encoder once; new labels only re-run the composition.
// Only the last few encodings are kept (a phone tab cannot hold a dozen); older photos are encoded
// again when their labels change.
import { Segmenter, phrasesOf, phraseLabels } from './pkg/index.js';

const KEEP_ENCODINGS = 4;

let segmenter = null;
const encoded = new Map(); // photo key → EncodedImage, least recently used first

function forgetPhotos() {
  for (const e of encoded.values()) e.dispose();
  encoded.clear();
}

const handlers = {
  async load({ id, modelUrl, files, backend }) {
    forgetPhotos();
    segmenter?.dispose();
    segmenter = null;
    const onProgress = (p) => postMessage({ type: 'progress', id, ...p });
    segmenter = await Segmenter.load({ modelUrl, files, backend, onProgress });
    return { backend: segmenter.backend, notes: segmenter.notes };
  },
  async run({ mode, key, photo, labels, caption, options }) {
    if (!segmenter) throw new Error('Load a model first.');
    const started = performance.now();
    if (mode === 'classify') {
      // Classification sees the whole photo at the model's input size, not the encoded windows.
      const ranked = await segmenter.classify(photo, labels, options);
      return { ranked, ms: performance.now() - started, reused: false };
    }
    let image = encoded.get(key);
    const reused = Boolean(image);
    if (image) {
      encoded.delete(key); // re-inserted below as the most recently used
    } else {
      image = await segmenter.encode(photo, options);
    }
    encoded.set(key, image);
    for (const [old, e] of encoded) {
      if (encoded.size <= KEEP_ENCODINGS) break;
      e.dispose();
      encoded.delete(old);
    }
    if (mode === 'groups') {
      const groups = await segmenter.groups(image);
      return { groups, ms: performance.now() - started, reused, transfer: groups.stages.map((s) => s.map.buffer) };
    }
    let phrases = null;
    if (mode === 'ground') {
      phrases = phrasesOf(caption);
      labels = phraseLabels(caption);
      if (!labels.length) throw new Error(`No phrase to ground in "${caption}": name something, e.g. "a red circle next to a blue star".`);
    }
    const r = await segmenter.segment(image, labels, options);
    const extra = {};
    if (mode === 'detect') extra.detections = r.detect(options);
    // Where the segment view writes label names: every region, however it scores.
    if (mode === 'segment') extra.regions = r.detect({ threshold: 0, nmsIou: 1 });
    if (mode === 'ground') Object.assign(extra, { phrases, grounding: r.ground(caption, options) });
    const ms = performance.now() - started;
    const result = {
      width: r.width, height: r.height, labels: r.labels, summary: r.summary,
      labelMap: r.labelMap, scores: r.scores, colours: r.colours,
    };
    return { result, ...extra, ms, reused, transfer: [r.labelMap.buffer, r.scores.buffer] };
  },
  // A camera frame: segmented whole (nothing kept, the next frame differs), the frame closed after.
  async frame({ bitmap, labels, options }) {
    if (!segmenter) throw new Error('Load a model first.');
    try {
      const started = performance.now();
      const r = await segmenter.segment(bitmap, labels, options);
      const result = { width: r.width, height: r.height, labels: r.labels, summary: r.summary, labelMap: r.labelMap, scores: r.scores, colours: r.colours };
      return { result, ms: performance.now() - started, transfer: [r.labelMap.buffer, r.scores.buffer] };
    } finally {
      bitmap.close();
    }
  },
  async 'clear-cache'() {
    await Segmenter.clearCache();
    return {};
  },
};

onmessage = async ({ data }) => {
  try {
    const { transfer = [], ...reply } = await handlers[data.type](data);
    postMessage({ type: 'done', id: data.id, ...reply }, transfer);
  } catch (e) {
    postMessage({ type: 'error', id: data.id, message: e?.message ?? String(e) });
  }
};
