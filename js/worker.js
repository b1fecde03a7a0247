// groupseg/worker: the same Segmenter API, run in a Web Worker the package starts itself, so a page
// never blocks on the model (not even on WebAssembly). Images go to the worker (bitmaps transferred),
// results come back transferred; a Segmentation here has the main-thread helpers (mask, cutout,
// toImageData, labelAt), and its detect and ground run in the worker (so they return promises).
import { Segmentation as BaseSegmentation, paintLabels, paintGroups, CACHE_NAME, DEMO_MODEL, isCached } from './index.js';

export { paintLabels, paintGroups, CACHE_NAME, DEMO_MODEL, isCached };

/** A segmentation computed in the worker; `detect` and `ground` ask the worker, so they are async. */
export class Segmentation extends BaseSegmentation {
  #call;

  constructor(fields, call) {
    super(fields);
    this.#call = call;
  }

  /** As the main-thread `Segmentation.detect`, run in the worker: a promise. */
  detect(options = {}) {
    return this.#call('detectIn', [this.#fields(), options]);
  }

  /** As the main-thread `Segmentation.ground`, run in the worker: a promise. */
  ground(caption, options = {}) {
    return this.#call('groundIn', [this.#fields(), caption, options]);
  }

  /** As the main-thread `Segmentation.toCoco`, run in the worker: a promise. */
  toCoco(options = {}) {
    return this.#call('cocoIn', [this.#fields(), options]);
  }

  #fields() {
    return fieldsOf(this);
  }
}

/** A segmentation's fields as the worker rebuilds it. */
function fieldsOf(s) {
  return { width: s.width, height: s.height, classes: s.labels, labelMap: s.labelMap, scores: s.scores, colours: s.colours, summary: s.summary };
}

/** A photo encoded in the worker; pass it to `segment`, `detect`, `ground`, `groups`. */
export class EncodedImage {
  #dispose;

  constructor({ encodedId, width, height, geometry }, dispose) {
    this.encodedId = encodedId;
    this.width = width;
    this.height = height;
    this.geometry = geometry;
    this.#dispose = dispose;
  }

  /** Frees what it holds in the worker (GPU buffers on WebGPU). */
  dispose() {
    this.#dispose?.();
    this.#dispose = null;
  }
}

/** An image as the worker can take it: encoded bytes and ImageData are copied, drawables become a
 * bitmap that is transferred (the caller's own image stays usable). */
async function forWorker(image) {
  if (image instanceof EncodedImage) return [{ encodedId: image.encodedId }, []];
  if ((typeof Blob !== 'undefined' && image instanceof Blob) || image instanceof ArrayBuffer || image instanceof Uint8Array
    || (typeof ImageData !== 'undefined' && image instanceof ImageData)) {
    return [image, []];
  }
  if (typeof HTMLImageElement !== 'undefined' && image instanceof HTMLImageElement && !image.complete) await image.decode();
  const bitmap = await createImageBitmap(image);
  return [bitmap, [bitmap]];
}

export class Segmenter {
  #worker;
  #pending = new Map();
  #nextId = 0;

  constructor(worker) {
    this.#worker = worker;
    worker.onmessage = ({ data }) => {
      const p = this.#pending.get(data.id);
      if (!p) return;
      if ('progress' in data) return p.onProgress?.(data.progress);
      this.#pending.delete(data.id);
      if (data.ok) p.resolve(data.value);
      else p.reject(new Error(data.message));
    };
    worker.onerror = (e) => {
      for (const p of this.#pending.values()) p.reject(new Error(`The groupseg worker failed: ${e.message}`));
      this.#pending.clear();
    };
  }

  #call(op, args, transfer = [], onProgress) {
    if (!this.#worker) return Promise.reject(new Error('This Segmenter was disposed'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      this.#worker.postMessage({ id, op, args }, transfer);
    });
  }

  /**
   * As `Segmenter.load` of the main-thread API (same options, same progress signal), in a Web Worker
   * this package starts (a module worker: bundlers that know `new Worker(new URL(…, import.meta.url))`,
   * Vite and webpack 5 among them, copy it). `onProgress` is called on this thread.
   */
  static async load({ onProgress, ...options } = {}) {
    const worker = new Worker(new URL('./worker-entry.js', import.meta.url), { type: 'module', name: 'groupseg' });
    const segmenter = new Segmenter(worker);
    try {
      const { backend, notes, threads, relaxedSimd, capabilities } = await segmenter.#call('load', [options], [], onProgress);
      segmenter.capabilities = capabilities;
      segmenter.backend = backend;
      segmenter.notes = notes;
      segmenter.threads = threads;
      segmenter.relaxedSimd = relaxedSimd;
    } catch (e) {
      worker.terminate();
      throw e;
    }
    return segmenter;
  }

  static async clearCache() {
    if (typeof caches !== 'undefined') await caches.delete(CACHE_NAME);
  }

  async segment(image, labels, options = {}) {
    const [img, transfer] = await forWorker(image);
    const fields = await this.#call('segment', [img, labels, options], transfer);
    return new Segmentation(fields, (op, args) => this.#call(op, args));
  }

  async encode(image, options = {}) {
    const [img, transfer] = await forWorker(image);
    const info = await this.#call('encode', [img, options], transfer);
    return new EncodedImage(info, () => this.#worker && this.#call('disposeEncoded', [info.encodedId]));
  }

  async memory() {
    return this.#call('memory', []);
  }

  async classify(image, labels, options = {}) {
    const [img, transfer] = await forWorker(image);
    return this.#call('classify', [img, labels, options], transfer);
  }

  async detect(image, labels, options = {}) {
    const [img, transfer] = await forWorker(image);
    return this.#call('detect', [img, labels, options], transfer);
  }

  async ground(image, caption, options = {}) {
    const [img, transfer] = await forWorker(image);
    return this.#call('ground', [img, caption, options], transfer);
  }

  async groups(image, options = {}) {
    const [img, transfer] = await forWorker(image);
    return this.#call('groups', [img, options], transfer);
  }

  /** A caption's phrases as `phrasesOf` finds them (`[{text, label, start, end}]`), from the worker. */
  async toCoco(items) {
    return this.#call('toCoco', [items.map(({ segmentation, fileName }) => ({ fields: fieldsOf(segmentation), fileName }))]);
  }

  async phrases(caption) {
    return this.#call('phrases', [caption]);
  }

  /** The labels a caption is segmented by, as `phraseLabels` gives them, from the worker. */
  async phraseLabels(caption) {
    return this.#call('phraseLabels', [caption]);
  }

  /** Frees the model and stops the worker. */
  dispose() {
    this.#worker?.terminate();
    this.#worker = null;
    for (const p of this.#pending.values()) p.reject(new Error('This Segmenter was disposed'));
    this.#pending.clear();
  }
}
