// groupseg: open-vocabulary segmentation with GroupViT in the browser, on WebGPU or WebAssembly.
// A thin layer over the wasm module: fetching and caching checkpoints, turning any image into the
// module's Photo, and results into plain typed arrays and ImageData. Labels and options are read by
// the module itself.
/** Cache Storage bucket for downloaded checkpoints; bump the version when the format changes. */
export const CACHE_NAME = 'groupseg-models-v1';

// The wasm module's exports once started: the threaded build (rayon's pool on Web Workers) or the
// single-threaded one. One per JS realm (page or worker): the first load picks it.
let wasm = null;
let wasmStart = null;

/** Why this realm cannot run the threaded module, or null if it can. */
function whyNoThreads() {
  if (!globalThis.crossOriginIsolated || typeof SharedArrayBuffer === 'undefined') {
    return 'threads need a cross-origin isolated page (headers Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)';
  }
  if (typeof WorkerGlobalScope === 'undefined') {
    return "threads run only off the page's main thread, which may not wait: use groupseg/worker";
  }
  return null;
}

// The smallest module using f32x4.relaxed_madd: it validates only where the engine has relaxed
// SIMD (Chromium since 114), whose fused multiply-adds make the matrix products faster.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 28, 1, 26, 0,
  67, 0, 0, 0, 0, 253, 19, 67, 0, 0, 0, 0, 253, 19, 67, 0, 0, 0, 0, 253, 19, 253, 133, 2, 11,
]);

function hasRelaxedSimd() {
  try {
    return WebAssembly.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
}

/** Starts the module once: `{threads, why, relaxedSimd}`, `why` saying what kept it to fewer threads
 * than asked. Each of the threaded and single-threaded modules comes built twice, with relaxed SIMD
 * and without (the same bindings over either). Threads past the machine's cores would each start a
 * worker and run no faster: they are clamped to the cores, saying so. */
function startWasm(wasmUrl, threads, relaxedSimd) {
  wasmStart ??= (async () => {
    const cores = globalThis.navigator?.hardwareConcurrency || 1;
    const want = Math.min(threads ?? cores, cores);
    const relaxed = relaxedSimd !== false && hasRelaxedSimd();
    const clamped = threads > cores ? `${threads} threads were asked of ${cores} core${cores === 1 ? '' : 's'}` : null;
    let why = want > 1 ? whyNoThreads() : null;
    if (want > 1 && !why) {
      try {
        const m = await import('./threaded/groupseg_wasm.js');
        await m.default(relaxed ? { module_or_path: new URL('./threaded/groupseg_wasm_relaxed_bg.wasm', import.meta.url) } : undefined);
        await (await import('./threaded/threads.js')).startThreads(m, want);
        wasm = m;
        return { threads: m.threadCount(), why: clamped, relaxedSimd: m.relaxedSimd() };
      } catch (e) {
        // E.g. a Content Security Policy without worker-src for the package: one thread still works.
        why = `the threads could not start (${e?.message ?? e})`;
      }
    }
    const m = await import('./groupseg_wasm.js');
    const url = wasmUrl ?? (relaxed ? new URL('./groupseg_wasm_relaxed_bg.wasm', import.meta.url) : undefined);
    await m.default(url ? { module_or_path: url } : undefined);
    wasm = m;
    return { threads: 1, why: [clamped, why].filter(Boolean).join('; ') || null, relaxedSimd: m.relaxedSimd() };
  })().catch((e) => {
    wasmStart = null; // a later load may try again
    throw e;
  });
  return wasmStart;
}

/** The started module's exports (every caller runs after a load). */
function live() {
  if (!wasm) throw new Error('The groupseg module is not started: call Segmenter.load first');
  return wasm;
}

const hasCaches = () => typeof caches !== 'undefined';

/**
 * The shapes demo model that ships with the package (a small GroupViT trained on generated scenes:
 * it knows only coloured shapes, e.g. "red circle, blue star"), file name → URL. Written out file by
 * file so that bundlers (Vite, webpack) see and copy each one.
 */
export const DEMO_MODEL = {
  'config.json': new URL('./models/shapes-demo/config.json', import.meta.url).href,
  'tokenizer.json': new URL('./models/shapes-demo/tokenizer.json', import.meta.url).href,
  'preprocessor_config.json': new URL('./models/shapes-demo/preprocessor_config.json', import.meta.url).href,
  'model.safetensors': new URL('./models/shapes-demo/model.safetensors', import.meta.url).href,
};

/** The URL of checkpoint file `name` from a folder URL or a file name → URL map (undefined if absent). */
function fileUrl(modelUrl, name) {
  if (typeof modelUrl !== 'string') return modelUrl[name];
  return new URL(name, modelUrl.endsWith('/') ? modelUrl : `${modelUrl}/`).href;
}

/** The Cache Storage key of a weights file kept converted to `as` ('f16' or 'int8'): a query, since
 * Cache Storage ignores fragments when it matches. */
const convertedKey = (url, as) => `${url}${url.includes('?') ? '&' : '?'}groupseg-kept=${as}`;

/** Whether the checkpoint at `modelUrl` is in Cache Storage (config and weights, as downloaded or
 * converted), so it loads offline. */
export async function isCached(modelUrl) {
  if (!hasCaches()) return false;
  const store = await caches.open(CACHE_NAME);
  const has = async (name, as) => {
    const url = fileUrl(modelUrl, name);
    return Boolean(url && await store.match(as ? convertedKey(url, as) : url));
  };
  const weights = async (name) => (await has(name)) || (await has(name, 'int8')) || (await has(name, 'f16'));
  return (await has('config.json')) && ((await weights('model.safetensors')) || (await weights('pytorch_model.bin')));
}

/** The copy of `key` in Cache Storage as a Blob, which the browser keeps on disk, or null. */
async function cachedBlob(key) {
  const store = hasCaches() ? await caches.open(CACHE_NAME).catch(() => null) : null;
  const hit = await store?.match(key);
  return hit ? hit.blob() : null;
}

/** Bytes of weights handed to the module at a time (a piece it releases once read through). */
const WEIGHTS_PIECE = 1 << 20;

/** A weights file: streamed into the module (`upload`, a WeightsUpload) and a Blob of it on disk
 * (or null), from which the module reads its token table's rows later instead of holding the table. */
const weightsFile = (upload, blob) => upload && { upload, blob };

/**
 * Streams `stream` (a ReadableStream of bytes, `size` of them if known) into a new WeightsUpload,
 * reporting progress: the file is never whole in JavaScript, and the module releases its pieces as
 * the model reads them. Refuses a file over the module's cap before or as it arrives.
 */
async function streamWeights(stream, size, onBytes, cap) {
  const upload = new (live().WeightsUpload)(cap);
  // Read into one buffer of our own where the stream allows it (a download's body and a Blob's
  // stream are byte streams): the default reader's fresh chunks would wait for the garbage
  // collector, as much memory again as the file by the end.
  let byob = true;
  let reader;
  try {
    reader = stream.getReader({ mode: 'byob' });
  } catch {
    byob = false;
    reader = stream.getReader();
  }
  // Gathered into pieces of a megabyte, each handed over whole: the module's memory then holds the
  // file as pieces side by side, which the model's tensors reuse as the pieces are read and released.
  let piece = new Uint8Array(WEIGHTS_PIECE);
  let filled = 0;
  let received = 0;
  const full = () => {
    if (filled === WEIGHTS_PIECE) {
      upload.push(piece);
      filled = 0;
    }
  };
  try {
    if (size) upload.expect(size);
    for (;;) {
      if (byob) {
        const { done, value } = await reader.read(new Uint8Array(piece.buffer, filled, WEIGHTS_PIECE - filled));
        if (value) {
          piece = new Uint8Array(value.buffer); // the same memory, handed back
          filled += value.byteLength;
          received += value.byteLength;
        }
        if (done) break;
        full();
      } else {
        const { done, value } = await reader.read();
        if (done) break;
        for (let at = 0; at < value.length;) {
          const n = Math.min(value.length - at, WEIGHTS_PIECE - filled);
          piece.set(value.subarray(at, at + n), filled);
          filled += n;
          at += n;
          full();
        }
        received += value.length;
      }
      onBytes?.(received);
    }
    upload.push(piece.subarray(0, filled));
    return upload;
  } catch (e) {
    upload.free();
    await reader.cancel().catch(() => {});
    throw e;
  }
}

/** A Blob (a File, or a copy Cache Storage keeps on disk) streamed into the module. */
async function blobWeights(url, blob, onProgress, cap) {
  const upload = await streamWeights(blob.stream(), blob.size, (loaded) => onProgress?.({ file: url, loaded, total: blob.size, cached: true }), cap);
  return weightsFile(upload, blob);
}

/** The weights at `url` from a converted copy in Cache Storage (int8 first), or null. */
async function keptWeights(url, onProgress, cap) {
  for (const as of ['int8', 'f16']) {
    const blob = await cachedBlob(convertedKey(url, as));
    if (blob) return blobWeights(url, blob, onProgress, cap);
  }
  return null;
}

/**
 * The weights at `url` downloaded (not kept as they are), converted here to `as` ('f16' or 'int8')
 * and kept so in Cache Storage: later loads read (and the browser stores) a half or a quarter of the
 * bytes.
 */
async function convertedWeights(url, as, { onProgress, optional, notes }) {
  const store = hasCaches() ? await caches.open(CACHE_NAME).catch(() => null) : null;
  const key = convertedKey(url, as);
  const original = await fetchBytes(url, { cache: false, onProgress, optional, notes });
  if (!original) return null;
  const bytes = live().convertWeights(original, as);
  try {
    await store?.put(key, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }));
  } catch (e) {
    notes?.push(`the ${as} copy of ${url.split('/').pop()} could not be kept in the browser's Cache Storage (${e.name ?? e.message}): `
      + 'the next visit downloads it again.');
  }
  notes?.push(`${url.split('/').pop()} is kept in this browser as ${as} (${(bytes.length / 1e6).toFixed(1)} MB instead of ${(original.length / 1e6).toFixed(1)} MB).`);
  return bytes;
}

/**
 * Fetches `url` as bytes, from Cache Storage when it is there, reporting progress in bytes.
 * Resolves to null for a 404 when `optional`.
 */
async function fetchBytes(url, { cache, onProgress, optional = false, notes }) {
  // Storage the browser refuses (private modes, policies) is no cache at all, not an error.
  const store = cache && hasCaches() ? await caches.open(CACHE_NAME).catch(() => null) : null;
  const hit = await store?.match(url);
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    onProgress?.({ file: url, loaded: bytes.length, total: bytes.length, cached: true });
    return bytes;
  }
  const response = await download(url, { onProgress, optional });
  if (!response) return null;
  const total = Number(response.headers.get('content-length')) || 0;
  onProgress?.({ file: url, loaded: 0, total, cached: false });
  const chunks = [];
  let loaded = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onProgress?.({ file: url, loaded, total, cached: false });
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  try {
    await store?.put(url, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }));
  } catch (e) {
    // A full Cache Storage (or one the browser refuses) costs the next visit a download, nothing more.
    notes?.push(`${url.split('/').pop()} could not be kept in the browser's Cache Storage (${e.name ?? e.message}): `
      + 'the next visit downloads it again.');
  }
  return bytes;
}

/** The response for `url`, or null for a 404 when `optional`; errors say what went wrong. */
async function download(url, { onProgress, optional = false }) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`Could not download ${url}: the network is unreachable, or the server does not let `
      + `this page read it (CORS). (${e.message})`);
  }
  if (response.status === 404 && optional) {
    onProgress?.({ file: url, loaded: 0, total: 0, cached: false });
    return null;
  }
  if (!response.ok) {
    throw new Error(`Could not download ${url}: the server answered ${response.status} ${response.statusText}`.trim());
  }
  return response;
}

/**
 * The weights at `url` streamed into the module: from Cache Storage when they are there; else
 * downloaded into Cache Storage (to disk, counted as they come) and streamed from there, or, where
 * nothing is kept (`cache` false, no Cache Storage, or a full one), streamed as they download.
 * No whole copy of the file is held in JavaScript on any of these paths.
 */
async function weightsFromUrl(url, { cache, onProgress, optional, notes, cap }) {
  const store = cache && hasCaches() ? await caches.open(CACHE_NAME).catch(() => null) : null;
  const fail = (e) => { throw new Error(`Could not load ${url}: ${e.message}`); };
  const hit = await store?.match(url);
  if (hit) return blobWeights(url, await hit.blob(), onProgress, cap).catch(fail);
  const response = await download(url, { onProgress, optional });
  if (!response) return null;
  const total = Number(response.headers.get('content-length')) || 0;
  if (total) {
    const check = new (live().WeightsUpload)(cap);
    try {
      check.expect(total);
    } catch (e) {
      await response.body.cancel().catch(() => {}); // not downloaded
      fail(e);
    } finally {
      check.free();
    }
  }
  const progress = (loaded) => onProgress?.({ file: url, loaded, total, cached: false });
  progress(0);
  if (store) {
    let loaded = 0;
    const counted = response.body.pipeThrough(new TransformStream({
      transform(chunk, out) { loaded += chunk.length; progress(loaded); out.enqueue(chunk); },
    }));
    let blob = null;
    try {
      await store.put(url, new Response(counted, { headers: { 'content-type': 'application/octet-stream' } }));
      blob = await (await store.match(url))?.blob();
    } catch (e) {
      // A full Cache Storage (or one the browser refuses) costs this load a second download and
      // the next visit a download, nothing more.
      notes?.push(`${url.split('/').pop()} could not be kept in the browser's Cache Storage (${e.name ?? e.message}): `
        + 'the next visit downloads it again.');
    }
    if (blob) return blobWeights(url, blob, null, cap).catch(fail);
    return weightsFromUrl(url, { cache: false, onProgress, optional, notes, cap });
  }
  return weightsFile(await streamWeights(response.body, total, progress, cap).catch(fail), null);
}

const text = (bytes) => new TextDecoder().decode(bytes);

/**
 * The checkpoint files from a base URL (a folder) or a file name → URL map: config, tokenizer,
 * preprocessor and weights.
 */
async function filesFromUrl(modelUrl, { cache, onProgress, notes, onExpect, keepAs, cap }) {
  const get = async (name, optional) => {
    const url = fileUrl(modelUrl, name);
    if (!url) return null;
    const weights = name === 'model.safetensors' || name === 'pytorch_model.bin';
    if (!weights) return fetchBytes(url, { cache, onProgress, optional, notes });
    if (!cache) return weightsFromUrl(url, { cache, onProgress, optional, notes, cap });
    // A converted copy kept by an earlier visit serves, whatever this load asks to keep.
    const kept = await keptWeights(url, onProgress, cap);
    if (kept) return kept;
    if (keepAs) {
      const converted = await convertedWeights(url, keepAs, { onProgress, optional, notes });
      if (!converted) return null;
      const upload = await streamWeights(new Blob([converted]).stream(), converted.length, null, cap);
      return weightsFile(upload, await cachedBlob(convertedKey(url, keepAs)));
    }
    return weightsFromUrl(url, { cache, onProgress, optional, notes, cap });
  };
  // All at once, so the sizes of all (the weights above all) are known from the start.
  onExpect?.(['config.json', 'tokenizer.json', 'preprocessor_config.json', 'model.safetensors'].map((n) => fileUrl(modelUrl, n)).filter(Boolean));
  const [config, tokenizer, preprocessor, safetensors] = await Promise.all([
    get('config.json'), get('tokenizer.json'), get('preprocessor_config.json', true), get('model.safetensors', true),
  ]);
  const weights = safetensors ?? (await get('pytorch_model.bin', true));
  if (!weights) {
    throw new Error(`${typeof modelUrl === 'string' ? modelUrl : 'The model'} has neither model.safetensors nor pytorch_model.bin`);
  }
  return { config: text(config), tokenizer, preprocessor: preprocessor && text(preprocessor), weights: weights.upload, weightsBlob: weights.blob };
}

/** Where each stage of a load lies in its overall progress (0–1): the wasm module's compilation, the
 * checkpoint's download, the model's preparation (weights read, uploaded to the GPU). */
const STAGES = { compile: [0, 0.05], download: [0.05, 0.9], prepare: [0.9, 1] };

/**
 * One progress signal for a whole load, as transformers.js's `progress_total`: `{stage, loaded,
 * total, progress}` with `progress` 0–1, never going back, 1 at the end; during the download `loaded`
 * and `total` are bytes across every file (`total` grows only while a server has not said a size),
 * with the `file` being read and whether it came from the `cached` copy.
 */
class LoadProgress {
  #report;
  #files = new Map();
  #progress = 0;

  constructor(report) {
    this.#report = report;
  }

  stage(stage, fraction, extra = {}) {
    const [from, to] = STAGES[stage];
    this.#progress = Math.max(this.#progress, from + (to - from) * Math.min(1, Math.max(0, fraction)));
    this.#report?.({ stage, loaded: fraction, total: 1, ...extra, progress: this.#progress });
  }

  /** The files about to be fetched: the download's fraction waits until each has said its size. */
  expect(urls) {
    for (const url of urls) if (!this.#files.has(url)) this.#files.set(url, { loaded: 0, total: null });
  }

  /** A file's bytes so far (the per-file callback of `fetchBytes`). */
  file({ file, loaded, total, cached }) {
    this.#files.set(file, { loaded, total: Math.max(total, loaded) });
    let [all, sum, sized] = [0, 0, true];
    for (const f of this.#files.values()) {
      all += f.loaded;
      sum += f.total ?? 0;
      sized &&= f.total !== null;
    }
    this.stage('download', sized && sum ? all / sum : 0, { file, cached, loaded: all, total: sum });
  }
}

/** The checkpoint files from user-chosen `File`s (a FileList, an array, or a name → Blob map). */
async function filesFromBlobs(files, cap) {
  const byName = files instanceof Map ? Object.fromEntries(files)
    : Array.isArray(files) || (typeof FileList !== 'undefined' && files instanceof FileList)
      ? Object.fromEntries([...files].map((f) => [f.name, f])) : files;
  const weights = byName['model.safetensors'] ?? byName['pytorch_model.bin'];
  const missing = ['config.json', 'tokenizer.json'].filter((n) => !byName[n]);
  if (!weights) missing.push('model.safetensors or pytorch_model.bin');
  if (missing.length) throw new Error(`The checkpoint files lack ${missing.join(', ')}`);
  const bytes = async (b) => new Uint8Array(await b.arrayBuffer());
  return {
    config: await byName['config.json'].text(),
    tokenizer: await bytes(byName['tokenizer.json']),
    preprocessor: byName['preprocessor_config.json'] ? await byName['preprocessor_config.json'].text() : null,
    weights: (await blobWeights(weights.name, weights, null, cap).catch((e) => { throw new Error(`${weights.name ?? 'The weights file'}: ${e.message}`); })).upload,
    // A File is read from disk again when the module asks for token rows.
    weightsBlob: weights,
  };
}

/** Refuses an encoded photo of more bytes than the module reads, before it is read or copied. */
function checkPhotoBytes(bytes) {
  const cap = live().maxPhotoBytes();
  if (bytes > cap) {
    throw new Error(`the file is ${Math.ceil(bytes / 1048576)} MB; photos of at most ${cap / 1048576} MB are read`);
  }
}

/** Any image as the wasm module's `Photo` (decoded once): encoded bytes, or RGBA pixels. */
async function toPhoto(image) {
  if (typeof Blob !== 'undefined' && image instanceof Blob) {
    checkPhotoBytes(image.size);
    return live().Photo.fromBytes(new Uint8Array(await image.arrayBuffer()));
  }
  if (image instanceof ArrayBuffer) return toPhoto(new Uint8Array(image));
  if (image instanceof Uint8Array) {
    checkPhotoBytes(image.byteLength);
    return live().Photo.fromBytes(image);
  }
  if (typeof ImageData !== 'undefined' && image instanceof ImageData) {
    return live().Photo.fromPixels(new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength), image.width, image.height);
  }
  // ImageBitmap, <img>, <canvas>, OffscreenCanvas, <video>: draw it and read the pixels.
  if (typeof HTMLImageElement !== 'undefined' && image instanceof HTMLImageElement && !image.complete) {
    await image.decode();
  }
  const width = image.naturalWidth ?? image.videoWidth ?? image.width;
  const height = image.naturalHeight ?? image.videoHeight ?? image.height;
  if (!width || !height) throw new Error('The image has no pixels yet (not loaded, or zero-sized)');
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(image, 0, 0);
  return toPhoto(ctx.getImageData(0, 0, width, height));
}

/** Runs `use(photo)` on `image` as a Photo, freeing the Photo afterwards. */
async function withPhoto(image, use) {
  const photo = await toPhoto(image);
  try {
    return await use(photo);
  } finally {
    photo.free();
  }
}

/** The labels as the library reads them (a comma-separated string or an array): split at commas,
 * trimmed, the first of repeats that differ only in ASCII case. Needs the module: after `load`. */
export function parseLabels(labels) {
  return live().parseLabels(labels);
}

/** Options without the keys left undefined (the module reads `null` as "none", as documented). */
const defined = (options) => Object.fromEntries(Object.entries(options ?? {}).filter(([, v]) => v !== undefined));

const GEOMETRY = ['shortSide', 'window', 'stride'];

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
  detect(options = {}) {
    return live().detectIn(this.width, this.height, this.labelMap, this.scores, this.labels, defined(options));
  }

  /**
   * Where each phrase of `caption` is, in a segmentation by `phraseLabels(caption)` (what
   * `Segmenter.ground` does): `[{phrase, start, end, score, box}]`, `start`/`end` indices into
   * `caption` (`caption.slice(start, end) === phrase`), `box` null where it is nowhere. Options:
   * `threshold`, `minArea`.
   */
  ground(caption, options = {}) {
    return live().groundIn(this.width, this.height, this.labelMap, this.scores, this.labels, caption, defined(options));
  }

  /**
   * The segmentation as a COCO file of one photo, for dataset tools (CVAT, Label Studio, FiftyOne)
   * and COCO's evaluation: `{images, categories, annotations}`, the labels as categories (ids from
   * 1), one annotation per label with pixels, its mask in COCO's compressed run-length encoding
   * (`{size: [height, width], counts}`, as pycocotools writes it), `bbox` [x, y, width, height],
   * `area` and mean `score`. `fileName` names the photo. Join several with `Segmenter.toCoco`.
   */
  toCoco({ fileName = 'photo.png' } = {}) {
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

/** RGBA pixels of `photo` at `width × height`: an ImageData of that size as it is, else drawn. */
function pixelsAt(photo, width, height) {
  if (typeof ImageData !== 'undefined' && photo instanceof ImageData) {
    if (photo.width !== width || photo.height !== height) {
      throw new Error(`the photo is ${photo.width}×${photo.height}, the segmentation ${width}×${height}: pass it at that size, or as a bitmap, canvas or image to draw`);
    }
    return photo.data;
  }
  const ctx = new OffscreenCanvas(width, height).getContext('2d');
  ctx.drawImage(photo, 0, 0, width, height);
  return ctx.getImageData(0, 0, width, height).data;
}

/** A colour for group `id`, as the CLI's groups pictures use: hues a golden angle apart. */
export function groupColour(id) {
  const hue = (id * 137.50777) % 360;
  const [s, v] = id % 2 === 0 ? [0.75, 0.95] : [0.9, 0.7];
  const c = v * s;
  const x = c * (1 - Math.abs(((hue / 60) % 2) - 1));
  const [r, g, b] = [[c, x, 0], [x, c, 0], [0, c, x], [0, x, c], [x, 0, c], [c, 0, x]][Math.min(5, Math.floor(hue / 60))];
  const m = v - c;
  return [r, g, b].map((u) => Math.round((u + m) * 255));
}

/**
 * Paints one stage of `Segmenter.groups` into an ImageData: each group in its colour over `photo`
 * (an ImageData of the same size) at `opacity`, boundaries between groups white.
 */
export function paintGroups({ width, height, stages }, stage = stages.length - 1, { photo = null, opacity = 0.6 } = {}) {
  const map = stages[stage].map;
  const out = new Uint8ClampedArray(width * height * 4);
  if (photo) out.set(photo.data);
  const colours = new Map();
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const g = map[i];
      const edge = (x + 1 < width && map[i + 1] !== g) || (y + 1 < height && map[i + width] !== g);
      if (!colours.has(g)) colours.set(g, groupColour(g));
      const c = edge ? [255, 255, 255] : colours.get(g);
      for (let j = 0; j < 3; j++) out[4 * i + j] = photo && !edge ? out[4 * i + j] * (1 - opacity) + c[j] * opacity : c[j];
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
   * keeps the weights in Cache Storage converted (a quarter or half of the bytes; the first visit
   * converts them here), so later visits load the smaller copy. `threads` (default: the machine's
   * cores) is how many threads the WebAssembly path uses: more than one needs a cross-origin
   * isolated page and a worker (`groupseg/worker`); otherwise it runs on one and `notes` says why.
   * The first load in a page (or worker) fixes the module and its threads. The weights are streamed
   * into the module as they download (or as a file or Cache Storage reads), never held whole in
   * JavaScript; a file over `maxWeightsBytes` (default and most: 2 GiB) is refused before it is read
   * when its size is known, else as it passes the cap.
   */
  static async load({ modelUrl, files, backend = 'auto', onProgress, cache = true, keepAs = null, wasmUrl, threads, relaxedSimd, maxWeightsBytes } = {}) {
    if (![null, 'f16', 'int8'].includes(keepAs)) throw new Error(`keepAs must be 'f16', 'int8' or null, not ${JSON.stringify(keepAs)}`);
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
    const f = modelUrl
      ? await filesFromUrl(modelUrl, { cache, onProgress: (p) => progress.file(p), notes, onExpect: (urls) => progress.expect(urls), keepAs, cap: maxWeightsBytes })
      : await filesFromBlobs(files, maxWeightsBytes);
    progress.stage('download', 1);
    progress.stage('prepare', 0);
    // The token table stays in the weights file where it is on disk (Cache Storage, a File): the
    // module reads the rows each label needs (a 12.6 MB table of which a few hundred rows are read).
    const readRange = f.weightsBlob && (async (start, end) => new Uint8Array(await f.weightsBlob.slice(start, end).arrayBuffer()));
    const segmenter = new Segmenter(await live().Segmenter.load(f.config, f.weights, f.tokenizer, f.preprocessor, backend, readRange));
    progress.stage('prepare', 1);
    /** What the load could not do but did without (e.g. keep the files in Cache Storage). */
    segmenter.notes = notes;
    /** Threads the WebAssembly path runs on (the module's pool). */
    segmenter.threads = started.threads;
    /** Whether the WebAssembly module runs with relaxed SIMD (fused multiply-adds). */
    segmenter.relaxedSimd = started.relaxedSimd;
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

  /**
   * One COCO file for several photos' segmentations (of the same labels): `items` are
   * `{segmentation, fileName}`; photos and annotations are numbered from 1 in their order.
   */
  async toCoco(items) {
    this.#live();
    return live().mergeCoco(items.map(({ segmentation, fileName }) => segmentation.toCoco({ fileName })));
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
    const o = defined(options);
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
    const o = defined(options);
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
    return withPhoto(image, (photo) => inner.classify(photo, labels, defined(options)));
  }

  /**
   * The objects of `labels` in `image` (or an `EncodedImage`): `segment`, then
   * `Segmentation.detect`. Options: both methods' (`threshold`, `topK`, `minArea`, `nmsIou`).
   */
  async detect(image, labels, options = {}) {
    return (await this.segment(image, labels, options)).detect(options);
  }

  /**
   * Grounds each phrase of `caption` ("a man riding a brown horse next to a red car", or GLIP's
   * "horse. red car.") in `image` (or an `EncodedImage`): `[{phrase, start, end, score, box}]`,
   * `box` null where a phrase is found nowhere. Options: `segment`'s, `threshold`, `minArea`.
   */
  async ground(image, caption, options = {}) {
    this.#live();
    const labels = phraseLabels(caption);
    if (!labels.length) throw new Error(`No phrase to ground in the caption ${JSON.stringify(caption)}: name something, e.g. "a dog on a sofa"`);
    // The phrases compete with the empty prompt: one phrase alone would else take the whole photo.
    return (await this.segment(image, labels, { ...options, nothingPrompt: true })).ground(caption, options);
  }

  /**
   * GroupViT's own groups, no labels needed (NVlabs' first_group … final_group views):
   * `{width, height, stages: [{map: Uint32Array, groupsPerWindow, count}]}`, one stage per grouping
   * block; `map` gives each pixel its group (`window × groupsPerWindow + group`). From an
   * `EncodedImage` the encoder does not run again. Paint a stage with `paintGroups`.
   */
  async groups(image, options = {}) {
    const inner = this.#live();
    const encoded = image instanceof EncodedImage ? image : await this.encode(image, options);
    try {
      const stages = await inner.groups(encoded._live());
      return {
        width: encoded.width,
        height: encoded.height,
        stages: stages.map((s) => {
          const stage = { map: new Uint32Array(s.map), groupsPerWindow: s.groupsPerWindow, count: s.count };
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
