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
export async function filesFromUrl(modelUrl, { cache, onProgress, notes, onExpect, keepAs, cap }) {
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

/** The checkpoint files from user-chosen `File`s (a FileList, an array, or a name → Blob map). */
export async function filesFromBlobs(files, cap) {
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
