// groupseg: open-vocabulary segmentation with GroupViT in the browser, on WebGPU or WebAssembly.
// A thin layer over the wasm module: fetching and caching checkpoints, turning any image into the
// module's Photo, and results into plain typed arrays and ImageData. Labels and options are read by
// the module itself.
import { live, startWasm, hasRelaxedSimd } from './module.js';
import { CACHE_NAME, DEMO_MODEL, isCached, hasCaches, filesFromUrl, filesFromBlobs, lowMemory } from './models.js';
import { LoadProgress } from './progress.js';
import { withPhoto } from './photos.js';
import { optionsFor, partFor, GEOMETRY } from './options.js';
import { Segmentation, EncodedImage, paintLabels, paintGroups, parseLabels, phrasesOf, phraseLabels } from './results.js';

export { CACHE_NAME, DEMO_MODEL, isCached, Segmentation, EncodedImage, paintLabels, paintGroups, parseLabels, phrasesOf, phraseLabels };

export class Segmenter {
  #inner;

  constructor(inner) {
    this.#inner = inner;
  }

  /**
   * Loads a GroupViT checkpoint from `modelUrl` (a folder URL, e.g. a Hugging Face hub
   * `…/resolve/main/`, or a file name → URL map), from `files`, or, with neither, the built-in
   * shapes demo (`DEMO_MODEL`), onto `backend`: 'auto' (a hardware GPU through WebGPU, else
   * WebAssembly), 'webgpu' (any WebGPU adapter) or 'cpu'. Downloads go to Cache Storage unless
   * `cache: false`. `onProgress({stage, loaded, total, progress, file, cached})` is one signal for the
   * whole load: stage 'compile' (the wasm module), 'download' (bytes across every file), 'prepare'
   * (the model built); `progress` rises from 0 to 1 and never goes back. `keepAs: 'int8'` (or 'f16')
   * keeps the weights converted, in memory and in Cache Storage (a quarter or half of the bytes,
   * converted as they download), so later visits load the smaller copy; `null` keeps them as they
   * are; `'auto'` (the default) as they are, but as int8 where the device reports 4 GB of memory
   * or less (`navigator.deviceMemory`) or the module cannot make room for them as they are, which
   * `notes` then says. `threads` (default: the machine's
   * cores) is how many threads the WebAssembly path uses: more than one needs a cross-origin
   * isolated page and a worker (`groupseg/worker`); otherwise it runs on one and `notes` says why.
   * The first load in a page (or worker) fixes the module and its threads. The weights are streamed
   * into the module as they download (or as a file or Cache Storage reads), never held whole in
   * JavaScript; a file over `maxWeightsBytes` (default and most: 2 GiB) is refused before it is read
   * when its size is known, else as it passes the cap.
   */
  static async load({ modelUrl, files, backend = 'auto', onProgress, cache = true, keepAs = 'auto', wasmUrl, threads, relaxedSimd, maxWeightsBytes } = {}) {
    if (!['auto', null, 'f16', 'int8'].includes(keepAs)) throw new Error(`keepAs must be 'auto', 'f16', 'int8' or null, not ${JSON.stringify(keepAs)}`);
    if (modelUrl && files) throw new Error('Segmenter.load takes modelUrl or files, not both');
    if (!modelUrl && !files) {
      modelUrl = DEMO_MODEL;
      cache = false; // it ships with the page: nothing to keep
    }
    if (!['auto', 'webgpu', 'cpu'].includes(backend)) {
      throw new Error(`backend must be 'auto', 'webgpu' or 'cpu', not ${JSON.stringify(backend)}`);
    }
    if (threads !== undefined && (!Number.isInteger(threads) || threads < 1)) {
      throw new Error(`threads must be a whole number from 1, not ${JSON.stringify(threads)}`);
    }
    if (relaxedSimd !== undefined && typeof relaxedSimd !== 'boolean') {
      throw new Error(`relaxedSimd must be true or false, not ${JSON.stringify(relaxedSimd)}`);
    }
    if (maxWeightsBytes !== undefined && !(Number.isFinite(maxWeightsBytes) && maxWeightsBytes >= 1)) {
      throw new Error(`maxWeightsBytes must be a positive number of bytes, not ${JSON.stringify(maxWeightsBytes)}`);
    }
    const progress = new LoadProgress(onProgress);
    progress.stage('compile', 0);
    const started = await startWasm(wasmUrl, threads, relaxedSimd);
    progress.stage('compile', 1);
    const notes = [];
    if (started.why) notes.push(`${started.threads === 1 ? 'one thread' : `${started.threads} threads`}: ${started.why}`);
    else if (threads !== undefined && threads !== started.threads) {
      notes.push(`${started.threads} thread(s), not ${threads}: an earlier load here started the module`);
    }
    if (relaxedSimd !== undefined && relaxedSimd !== started.relaxedSimd) {
      const why = relaxedSimd && !hasRelaxedSimd() ? 'this browser does not have it' : 'an earlier load here started the module';
      notes.push(`${started.relaxedSimd ? 'relaxed SIMD' : 'no relaxed SIMD'}: ${wasmUrl ? 'wasmUrl names the module' : why}`);
    }
    const short = keepAs === 'auto' && lowMemory();
    if (short) notes.push(`The model is kept as int8: ${short}.`);
    const keep = short ? 'int8' : keepAs;
    const f = modelUrl
      ? await filesFromUrl(modelUrl, { cache, onProgress: (p) => progress.file(p), notes, onExpect: (urls) => progress.expect(urls), keepAs: keep, cap: maxWeightsBytes })
      : await filesFromBlobs(files, { cap: maxWeightsBytes, keep, notes });
    progress.stage('download', 1);
    progress.stage('prepare', 0);
    // The token table stays in the weights file where it is on disk (Cache Storage, a File): the
    // module reads the rows each label needs (a 12.6 MB table of which a few hundred rows are read).
    const readRange = f.weightsBlob && (async (start, end) => new Uint8Array(await f.weightsBlob.slice(start, end).arrayBuffer()));
    const segmenter = new Segmenter(await live().LoadedModel.load(f.config, f.weights, f.tokenizer, f.preprocessor, backend, readRange));
    progress.stage('prepare', 1);
    /** What the load could not do but did without (e.g. keep the files in Cache Storage). */
    segmenter.notes = notes;
    /** Threads the WebAssembly path runs on (the module's pool). */
    segmenter.threads = started.threads;
    /** Whether the WebAssembly module runs with relaxed SIMD (fused multiply-adds). */
    segmenter.relaxedSimd = started.relaxedSimd;
    /** What runs where, as a typed object (see `Capabilities`). */
    segmenter.capabilities = { ...segmenter.#live().backendInfo, threads: started.threads, whyOneThread: started.threads === 1 ? started.why : null, relaxedSimd: started.relaxedSimd, module: started.module };
    return segmenter;
  }

  /** Empties the checkpoint cache. */
  static async clearCache() {
    if (hasCaches()) await caches.delete(CACHE_NAME);
  }

  /** Where it runs, in words: "GPU: …" or "CPU (why not the GPU)". */
  get backend() {
    return this.#live().backend;
  }

  /**
   * Bytes held, `{heap, live, peakLive, weights: {cpu, gpu, inFile}}`: the WebAssembly memory (it
   * never shrinks, so this is also the most the module has needed, loading included), the bytes
   * allocated in it now and the most ever at once, the model's weights in it and on the GPU, and
   * those left in the weights file on disk (the token table, when the file came from Cache Storage
   * or a File: its rows are read as labels need them).
   */
  async memory() {
    return this.#live().memory();
  }

  /** A caption's phrases, as `phrasesOf` finds them (a promise, as in `groupseg/worker`). */
  async phrases(caption) {
    this.#live();
    return phrasesOf(caption);
  }

  /** The labels a caption is segmented by, as `phraseLabels` gives them. */
  async phraseLabels(caption) {
    this.#live();
    return phraseLabels(caption);
  }

  /**
   * One COCO file for several photos' segmentations (of the same labels): `items` are
   * `{segmentation, fileName}`; photos and annotations are numbered from 1 in their order.
   */
  async toCoco(items) {
    this.#live();
    return live().mergeCoco(await Promise.all(items.map(({ segmentation, fileName }) => segmentation.toCoco({ fileName }))));
  }

  /**
   * Segments `image` (Blob/File, ImageBitmap, ImageData, <img>, <canvas>, encoded bytes) into
   * `labels` (an array or a comma-separated string), or an `EncodedImage` from `encode`. Options:
   * `backgroundThreshold` (the model's: 0.95 for the published checkpoints; null for none),
   * `refine` (the model's, else true: masks follow the photo's edges), `refineIterations` (10),
   * `shortSide`, `window` (twice the model's training size: 448 for the published checkpoints),
   * `stride` (the training size: 224), `templates` (["a photo of a {}."]).
   */
  async segment(image, labels, options = {}) {
    const inner = this.#live();
    const o = optionsFor('segment', options);
    let r;
    if (image instanceof EncodedImage) {
      // Its size options were fixed by `encode`; others would need another encoding.
      for (const k of GEOMETRY) {
        if (k in o && o[k] !== image.geometry[k]) {
          throw new Error(`${k} ${o[k]} differs from the ${image.geometry[k] ?? 'default'} the photo was encoded with: encode it again`);
        }
        delete o[k];
      }
      r = await inner.segmentEncoded(image._live(), labels, o);
    } else {
      r = await withPhoto(image, (photo) => inner.segment(photo, labels, o));
    }
    try {
      return new Segmentation(r);
    } finally {
      r.free();
    }
  }

  /**
   * Runs the image encoder over `image` once; pass the result to `segment` as often as the labels
   * or the threshold change, and only the composition runs again (milliseconds instead of the
   * encoder's time). Size options (`shortSide`, `window`, `stride`) are fixed here. `dispose()` it
   * when done (it holds GPU buffers on WebGPU).
   */
  async encode(image, options = {}) {
    const inner = this.#live();
    const o = optionsFor('encode', options);
    const e = await withPhoto(image, (photo) => inner.encode(photo, o));
    return new EncodedImage(e, Object.fromEntries(GEOMETRY.filter((k) => k in o).map((k) => [k, o[k]])));
  }

  /**
   * Zero-shot classification (CLIP's): `[{label, score}]`, most probable first, scores summing to
   * 1 over all the labels. Options: `templates` (an array with `{}` for the label, or a preset:
   * 'single', 'nvlabs' (NVlabs' 7), 'imagenet' (CLIP's 80)), `topK` (all). A label that is already
   * a sentence ("a cat on a sofa") is its own prompt.
   */
  async classify(image, labels, options = {}) {
    const inner = this.#live();
    return withPhoto(image, (photo) => inner.classify(photo, labels, optionsFor('classify', options)));
  }

  /**
   * The objects of `labels` in `image` (or an `EncodedImage`): `segment`, then
   * `Segmentation.detect`. Options: both methods' (`threshold`, `topK`, `minArea`, `nmsIou`).
   */
  async detect(image, labels, options = {}) {
    const o = optionsFor('detect', options);
    return (await this.segment(image, labels, partFor('segment', o))).detect(partFor('Segmentation.detect', o));
  }

  /**
   * Grounds each phrase of `caption` ("a man riding a brown horse next to a red car", or GLIP's
   * "horse. red car.") in `image` (or an `EncodedImage`): `[{phrase, start, end, score, box}]`,
   * `box` null where a phrase is found nowhere. Options: `segment`'s, `threshold`, `minArea`.
   */
  async ground(image, caption, options = {}) {
    this.#live();
    const o = optionsFor('ground', options);
    const labels = phraseLabels(caption);
    if (!labels.length) throw new Error(`No phrase to ground in the caption ${JSON.stringify(caption)}: name something, e.g. "a dog on a sofa"`);
    // The phrases compete with the empty prompt: one phrase alone would else take the whole photo.
    return (await this.segment(image, labels, { ...partFor('segment', o), nothingPrompt: true })).ground(caption, partFor('Segmentation.ground', o));
  }

  /**
   * GroupViT's own groups, no labels needed (NVlabs' first_group … final_group views):
   * `{width, height, stages: [{map: Uint32Array, groupsPerWindow, count}]}`, one stage per grouping
   * block; `map` gives each pixel its group (`window × groupsPerWindow + group`). From an
   * `EncodedImage` the encoder does not run again. Paint a stage with `paintGroups`.
   */
  async groups(image, options = {}) {
    const inner = this.#live();
    const o = optionsFor('groups', options);
    const encoded = image instanceof EncodedImage ? image : await this.encode(image, o);
    try {
      const stages = await inner.groups(encoded._live());
      return {
        width: encoded.width,
        height: encoded.height,
        stages: stages.map((s) => {
          const stage = { map: new Uint32Array(s.map), groupsPerWindow: s.groupsPerWindow, count: s.count, colours: new Uint8Array(s.colours) };
          s.free();
          return stage;
        }),
      };
    } finally {
      if (encoded !== image) encoded.dispose();
    }
  }

  /** Frees the model (its GPU buffers too). */
  dispose() {
    this.#inner?.free();
    this.#inner = null;
  }

  #live() {
    if (!this.#inner) throw new Error('This Segmenter was disposed');
    return this.#inner;
  }
}
