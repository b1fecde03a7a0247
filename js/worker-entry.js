// groupseg's Web Worker (started by `groupseg/worker`): the main-thread API of './index.js' run here,
// driven by messages. In: {id, op, args}; out: {id, ok, value} or {id, ok: false, message}, plus
// {id, progress} during a load. Label maps, scores and group maps are transferred, not copied.
import { Segmenter, Segmentation, phrasesOf, phraseLabels } from './index.js';

let segmenter = null;
const encoded = new Map(); // id → EncodedImage
let nextEncoded = 0;

/** An image sent from the main thread, or an encoding it names by id. */
function image(arg) {
  if (arg && typeof arg === 'object' && 'encodedId' in arg) {
    const e = encoded.get(arg.encodedId);
    if (!e) throw new Error('This EncodedImage was disposed');
    return e;
  }
  return arg;
}

/** A Segmentation as plain fields, and the buffers to transfer. */
function plain(r) {
  const value = {
    width: r.width, height: r.height, classes: r.labels, labelMap: r.labelMap, scores: r.scores,
    colours: r.colours, summary: r.summary,
  };
  return [value, [r.labelMap.buffer, r.scores.buffer]];
}

const ops = {
  async load(id, [options]) {
    segmenter?.dispose();
    const onProgress = (p) => postMessage({ id, progress: p });
    segmenter = await Segmenter.load({ ...options, onProgress });
    return [{ backend: segmenter.backend, notes: segmenter.notes, threads: segmenter.threads, relaxedSimd: segmenter.relaxedSimd, capabilities: segmenter.capabilities }];
  },
  async segment(_, [img, labels, options]) {
    return plain(await live().segment(image(img), labels, options));
  },
  async encode(_, [img, options]) {
    const e = await live().encode(img, options);
    const key = nextEncoded++;
    encoded.set(key, e);
    return [{ encodedId: key, width: e.width, height: e.height, geometry: e.geometry }];
  },
  async disposeEncoded(_, [key]) {
    encoded.get(key)?.dispose();
    encoded.delete(key);
    return [null];
  },
  async memory() {
    return [await live().memory()];
  },
  async classify(_, [img, labels, options]) {
    return [await live().classify(img, labels, options)];
  },
  async detect(_, [img, labels, options]) {
    return [await live().detect(image(img), labels, options)];
  },
  async ground(_, [img, caption, options]) {
    return [await live().ground(image(img), caption, options)];
  },
  async groups(_, [img, options]) {
    const g = await live().groups(image(img), options);
    return [g, g.stages.flatMap((s) => [s.map.buffer, s.colours.buffer])];
  },
  async detectIn(_, [seg, options]) {
    return [await segmentationOf(seg).detect(options)];
  },
  async groundIn(_, [seg, caption, options]) {
    return [await segmentationOf(seg).ground(caption, options)];
  },
  async cocoIn(_, [seg, options]) {
    live();
    return [await segmentationOf(seg).toCoco(options)];
  },
  async toCoco(_, [items]) {
    return [await live().toCoco(items.map(({ fields, fileName }) => ({ segmentation: segmentationOf(fields), fileName })))];
  },
  async phrases(_, [caption]) {
    live();
    return [phrasesOf(caption)];
  },
  async phraseLabels(_, [caption]) {
    live();
    return [phraseLabels(caption)];
  },
  async dispose() {
    for (const e of encoded.values()) e.dispose();
    encoded.clear();
    segmenter?.dispose();
    segmenter = null;
    return [null];
  },
};

function live() {
  if (!segmenter) throw new Error('Load a model first');
  return segmenter;
}

/** A Segmentation (with the module's detect and ground) from plain fields sent back. */
function segmentationOf(fields) {
  return new Segmentation(fields);
}

onmessage = async ({ data: { id, op, args } }) => {
  try {
    const [value, transfer = []] = await ops[op](id, args);
    postMessage({ id, ok: true, value }, transfer);
  } catch (e) {
    postMessage({ id, ok: false, message: e?.message ?? String(e) });
  }
};
