// A checkpoint's files: from a URL (kept in Cache Storage, or converted to int8 / f16 once and
// kept so), or from files the user picked; the weights streamed into the module as they arrive.
import { live } from './module.js';

/** Cache Storage bucket for downloaded checkpoints; bump the version when the format changes. */
export const CACHE_NAME = 'groupseg-models-v1';

export const hasCaches = () => typeof caches !== 'undefined';

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
 * or into what `sinkFor(firstPiece)` gives (a WeightsConversion), reporting progress: the file is
 * never whole in JavaScript, and the module releases its pieces as the model reads them. Refuses a
 * file over the module's cap before or as it arrives. Resolves to the sink.
 */
async function streamWeights(stream, size, onBytes, cap, sinkFor = () => new (live().WeightsUpload)(cap)) {
  // Made for the first piece, which holds the header: what the file holds decides where it goes.
  let upload = null;
  const sink = (piece) => (upload ??= sinkFor(piece));
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
      sink(piece).push(piece);
      filled = 0;
    }
  };
  try {
    if (size) live().refuseWeightsOver(size, cap); // before a byte is read
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
    sink(piece.subarray(0, filled)).push(piece.subarray(0, filled));
    return upload;
  } catch (e) {
    upload?.free();
    await reader.cancel().catch(() => {});
    throw e;
  }
}

const mb = (bytes) => (bytes / 1e6).toFixed(1);
const fileName = (url) => String(url).split('/').pop();

/** Memory, in GB, a device may report (`navigator.deviceMemory`, which Chromium gives) and still
 * get models as they are under `keepAs: 'auto'`: at or under it they are kept as int8. Running out
 * of memory is how in-browser models most often fail on phones. */
const LOW_MEMORY_GB = 4;

/** Memory a model takes in the module, weights and work together, from the larger of the weights
 * it holds and its file (whose pieces wait in the module until the model reads them): the load
 * peaked at 1.09× a full-size f32 file, and segmenting took at most 11.4 MB more than the weights
 * (a 448 window of full-size GroupViT; 8.9 MB for the shapes demo's window and prompts). */
const needs = (bytes) => bytes * 1.1 + 16e6;

/** Why `keepAs: 'auto'` keeps every model as int8 on this device, or null. */
export function lowMemory() {
  const gb = globalThis.navigator?.deviceMemory;
  return typeof gb === 'number' && gb <= LOW_MEMORY_GB ? `this device reports ${gb} GB of memory` : null;
}

/**
 * The weights `stream` brings (`size` bytes if known), into the module as `keep` says ('auto',
 * 'int8', 'f16' or null: as they are), resolving to a weightsFile. Under 'auto' the file's header
 * (in its first piece) decides: as they are where the module can make room for what the model
 * would hold so, else as int8, and `notes` says why. A converted copy is kept in `store` (the
 * original there let go) and read into the module from there; `blob` is the original on disk.
 */
async function weightsInto(stream, size, { url, onBytes, cap, keep, store, blob, notes }) {
  let as = keep === 'auto' ? null : keep;
  let int8Need = 0; // room to make for the int8 copy, when 'auto' chose it
  let received = 0;
  const sink = await streamWeights(stream, size, (n) => { received = n; onBytes?.(n); }, cap, (head) => {
    if (as && head[0] === 0x50 && head[1] === 0x4b) {
      // A PyTorch zip (a File the user chose) cannot be converted as it arrives.
      notes?.push(`${fileName(url)} is held as it is, not as ${as}: a pytorch_model.bin is converted only whole (groupseg convert).`);
      as = null;
    }
    if (keep === 'auto') {
      const held = live().weightsHeld(head);
      const need = held && needs(Math.max(held.asItIs, size));
      if (held && !held.storedInt8 && !live().reserveMemory(need)) {
        as = 'int8';
        int8Need = needs(held.asInt8);
        notes?.push(`${fileName(url)} is kept as int8 (${mb(held.asInt8)} MB of weights instead of ${mb(held.asItIs)} MB): `
          + `this browser could not give the model the ${mb(need)} MB it needs as it is.`);
      }
    }
    return as ? new (live().WeightsConversion)(as, cap) : new (live().WeightsUpload)(cap);
  });
  if (!as) return weightsFile(sink, blob);
  const alreadyInt8 = sink.alreadyInt8;
  const bytes = sink.finish();
  if (int8Need && !live().reserveMemory(int8Need)) {
    throw new Error(`this browser could not give the model the ${mb(int8Need)} MB it needs even as int8: close other tabs, or load a smaller model`);
  }
  const said = keep !== 'auto' && !alreadyInt8 && `${mb(bytes.length)} MB instead of ${mb(received)} MB`;
  return holdConverted(url, as, bytes, { store, cap, notes, said });
}

/**
 * `bytes`, the weights at `url` converted to `as`, kept in `store` under their own key (the
 * original there let go: a later visit reads the copy first) and read into the module from there,
 * so that these bytes can go; `said` (sizes), when given, goes into `notes`.
 */
async function holdConverted(url, as, bytes, { store, cap, notes, said }) {
  const key = convertedKey(url, as);
  try {
    await store?.put(key, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }));
    await store?.delete(url);
  } catch (e) {
    notes?.push(`the ${as} copy of ${fileName(url)} could not be kept in the browser's Cache Storage (${e.name ?? e.message}): `
      + 'the next visit downloads it again.');
  }
  if (said) notes?.push(`${fileName(url)} is kept ${store ? 'in this browser ' : ''}as ${as} (${said}).`);
  const kept = store ? await cachedBlob(key) : null;
  const upload = await streamWeights(kept ? kept.stream() : new Blob([bytes]).stream(), bytes.length, null, cap);
  return weightsFile(upload, kept);
}

/** A Blob (a File, or a copy Cache Storage keeps on disk) streamed into the module as `keep` says. */
function blobWeights(url, blob, { onProgress, cap, keep = null, store = null, notes } = {}) {
  const onBytes = (loaded) => onProgress?.({ file: url, loaded, total: blob.size, cached: true });
  return weightsInto(blob.stream(), blob.size, { url, onBytes, cap, keep, store, blob, notes });
}

/** The weights at `url` from a converted copy in Cache Storage (int8 first), or null. */
async function keptWeights(url, onProgress, cap) {
  for (const as of ['int8', 'f16']) {
    const blob = await cachedBlob(convertedKey(url, as));
    if (blob) return blobWeights(url, blob, { onProgress, cap });
  }
  return null;
}

/**
 * A `pytorch_model.bin` at `url` downloaded whole (a zip cannot be converted as it arrives),
 * converted here to `as` ('f16' or 'int8'), kept so in Cache Storage when `cache`, and read into
 * the module.
 */
async function convertedZip(url, as, { cache, onProgress, optional, notes, cap }) {
  const store = cache && hasCaches() ? await caches.open(CACHE_NAME).catch(() => null) : null;
  const original = await fetchBytes(url, { cache: false, onProgress, optional, notes });
  if (!original) return null;
  const bytes = live().convertWeights(original, as);
  return holdConverted(url, as, bytes, { store, cap, notes, said: `${mb(bytes.length)} MB instead of ${mb(original.length)} MB` });
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
 * The weights at `url` streamed into the module as `keep` says: from Cache Storage when they are
 * there; else downloaded into Cache Storage (to disk, counted as they come) and streamed from
 * there, or, where nothing is kept (`cache` false, no Cache Storage, or a full one), streamed as
 * they download. No whole copy of the file is held in JavaScript on any of these paths.
 */
async function weightsFromUrl(url, { cache, onProgress, optional, notes, cap, keep }) {
  const store = cache && hasCaches() ? await caches.open(CACHE_NAME).catch(() => null) : null;
  const fail = (e) => { throw new Error(`Could not load ${url}: ${e.message}`); };
  const hit = await store?.match(url);
  if (hit) return blobWeights(url, await hit.blob(), { onProgress, cap, keep, store, notes }).catch(fail);
  const response = await download(url, { onProgress, optional });
  if (!response) return null;
  const total = Number(response.headers.get('content-length')) || 0;
  if (total) {
    try {
      live().refuseWeightsOver(total, cap);
    } catch (e) {
      await response.body.cancel().catch(() => {}); // not downloaded
      fail(e);
    }
  }
  const progress = (loaded) => onProgress?.({ file: url, loaded, total, cached: false });
  progress(0);
  // Kept converted: converted as it downloads, and only the copy kept.
  if (store && (keep === 'int8' || keep === 'f16')) {
    return weightsInto(response.body, total, { url, onBytes: progress, cap, keep, store, blob: null, notes }).catch(fail);
  }
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
      notes?.push(`${fileName(url)} could not be kept in the browser's Cache Storage (${e.name ?? e.message}): `
        + 'the next visit downloads it again.');
    }
    if (blob) return blobWeights(url, blob, { cap, keep, store, notes }).catch(fail);
    return weightsFromUrl(url, { cache: false, onProgress, optional, notes, cap, keep });
  }
  return weightsInto(response.body, total, { url, onBytes: progress, cap, keep, store: null, blob: null, notes }).catch(fail);
}

const text = (bytes) => new TextDecoder().decode(bytes);

/**
 * The checkpoint files from a base URL (a folder) or a file name → URL map: config, tokenizer,
 * preprocessor and weights.
 */
export async function filesFromUrl(modelUrl, { cache, onProgress, notes, onExpect, keepAs, cap }) {
  const get = async (name, optional) => {
    const url = fileUrl(modelUrl, name);
    if (!url) return null;
    const weights = name === 'model.safetensors' || name === 'pytorch_model.bin';
    if (!weights) return fetchBytes(url, { cache, onProgress, optional, notes });
    // A converted copy kept by an earlier visit serves, whatever this load asks to keep.
    const kept = cache && await keptWeights(url, onProgress, cap);
    if (kept) return kept;
    if (name === 'pytorch_model.bin' && (keepAs === 'int8' || keepAs === 'f16')) {
      return convertedZip(url, keepAs, { cache, onProgress, optional, notes, cap });
    }
    return weightsFromUrl(url, { cache, onProgress, optional, notes, cap, keep: keepAs });
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

/** The checkpoint files from user-chosen `File`s (a FileList, an array, or a name → Blob map), the
 * weights held as `keep` says (as for `filesFromUrl`). */
export async function filesFromBlobs(files, { cap, keep, notes }) {
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
    ...await blobWeights(weights.name ?? 'model.safetensors', weights, { cap, keep, notes })
      .then(({ upload, blob }) => ({ weights: upload, weightsBlob: blob }))
      // A File is read from disk again when the module asks for token rows.
      .catch((e) => { throw new Error(`${weights.name ?? 'The weights file'}: ${e.message}`); }),
  };
}
