// The page: pick a model, pick a mode, type labels (or a caption), drop photos; each photo is run in
// the worker and shown here: segmented (legend, hover, opacity, views, downloads), its objects boxed,
// a caption's phrases grounded (hover a phrase or a region and the other lights up), classified, or
// the model's own groups.
import { Segmenter, isCached } from './pkg/worker.js';
import { $, text, status, saveBlob } from './ui.js';
import { render, renderDetect, renderGround, renderClassify, renderGroups } from './results.js';
import { cameraButton } from './camera.js';

const HUB = {
  redcaps: 'https://huggingface.co/nvidia/groupvit-gcc-redcaps/resolve/main/',
  yfcc: 'https://huggingface.co/nvidia/groupvit-gcc-yfcc/resolve/main/',
};

/** localStorage key of the last model URL loaded, restored on the next visit if still cached. */
const LAST_MODEL = 'groupseg-last-model';
/** Photos are shown from bitmaps at most this many pixels on their long side. */
const DISPLAY_SIDE = 2048;

/** Keeps (a URL), forgets (null) or leaves (undefined) the last model; storage may be refused. */
function remember(url) {
  try {
    if (url) localStorage.setItem(LAST_MODEL, url);
    else if (url === null) localStorage.removeItem(LAST_MODEL);
  } catch { /* no localStorage here: every visit starts as the first */ }
}

function lastModel() {
  try {
    return localStorage.getItem(LAST_MODEL);
  } catch {
    return null;
  }
}


// The model runs in the package's own Web Worker (groupseg/worker), so the page never freezes, not
// even on the CPU path. Each photo (by key) goes through the image encoder once; new labels or
// another mode re-run only the labels' part. Only the last few encodings are kept (a phone tab cannot
// hold a dozen); older photos are encoded again when asked for.
const KEEP_ENCODINGS = 4;
let segmenter = null;
let threads; // ?threads=N; the package's default (every core) when unset
const pageNotes = []; // what the page itself has to say with every load's notes (a bad ?threads=)
const encodings = new Map(); // photo key → EncodedImage, least recently used first

function forgetPhotos() {
  for (const e of encodings.values()) e.dispose();
  encodings.clear();
}

/** The encoding of photo `key`, made when missing; `reused` says whether it was there. */
async function encodingOf(key, photo, options) {
  let image = encodings.get(key);
  const reused = Boolean(image);
  if (image) encodings.delete(key); // re-inserted below as the most recently used
  else image = await segmenter.encode(photo, options);
  encodings.set(key, image);
  for (const [old, e] of encodings) {
    if (encodings.size <= KEEP_ENCODINGS) break;
    e.dispose();
    encodings.delete(old);
  }
  return { image, reused };
}

/** Loads a model in the worker, in place of the one before. */
async function load({ modelUrl, files, backend, keepAs }, onProgress) {
  forgetPhotos();
  segmenter?.dispose();
  segmenter = null;
  segmenter = await Segmenter.load({ modelUrl, files, backend, keepAs, onProgress, threads });
  return { backend: segmenter.backend, notes: segmenter.notes, capabilities: segmenter.capabilities };
}

/** One photo (by key: its encoding is kept) in one mode: what its renderer shows. */
async function run({ mode, key, photo, labels, caption, options }) {
  if (!segmenter) throw new Error('Load a model first.');
  const started = performance.now();
  const ms = () => performance.now() - started;
  // Classification sees the whole photo at the model's input size, not the encoded windows.
  if (mode === 'classify') return { ranked: await segmenter.classify(photo, labels, options.classify), ms: ms(), reused: false };
  // The page sets no size option: photos are encoded at the model's own.
  const { image, reused } = await encodingOf(key, photo, {});
  if (mode === 'groups') return { groups: await segmenter.groups(image), ms: ms(), reused };
  let phrases = null;
  if (mode === 'ground') {
    phrases = await segmenter.phrases(caption);
    labels = await segmenter.phraseLabels(caption);
    if (!labels.length) throw new Error(`No phrase to ground in "${caption}": name something, e.g. "a red circle next to a blue star".`);
  }
  // Grounding's phrases compete with the empty prompt (the package's `ground` does the same).
  const result = await segmenter.segment(image, labels, mode === 'ground' ? { ...options.segment, nothingPrompt: true } : options.segment);
  const reply = { result, ms: 0, reused };
  if (mode === 'detect') reply.detections = await result.detect(options.boxes);
  if (mode === 'ground') Object.assign(reply, { phrases, grounding: await result.ground(caption, options.boxes) });
  reply.ms = ms();
  return reply;
}

/** A camera frame: segmented whole (nothing kept: the next frame differs). */
async function frame({ bitmap, labels, options }) {
  if (!segmenter) throw new Error('Load a model first.');
  const started = performance.now();
  const result = await segmenter.segment(bitmap, labels, options.segment);
  return { result, ms: performance.now() - started };
}

// Labels that suit each kind of model, swapped in while the user has not typed their own.
const DEFAULT_LABELS = {
  photos: 'cat, dog, sofa, window, floor, grass, sky',
  shapes: 'red circle, blue star, green triangle, yellow square, orange ring, purple bar, pink cross',
};
const DEFAULT_CAPTIONS = {
  photos: 'a cat sleeping on a sofa next to a window',
  shapes: 'a red circle next to a blue star',
};
function suggestLabels(kind) {
  if (Object.values(DEFAULT_LABELS).includes($('labels').value)) $('labels').value = DEFAULT_LABELS[kind];
  if (Object.values(DEFAULT_CAPTIONS).includes($('caption').value)) $('caption').value = DEFAULT_CAPTIONS[kind];
}

let modelReady = false;
let nextKey = 0; // names each photo for the worker, which keeps its encoding
const photos = []; // { file, box, key, bitmap, request } for re-painting when the labels change

/** The load's one progress signal (compile, download, prepare) on one bar; `data-progress` on <body>
 * keeps the values seen, for tests. */
const progressSeen = [];
function showProgress({ stage, loaded, total, progress, file, cached }) {
  $('progress').hidden = false;
  $('progress').max = 1;
  $('progress').value = progress;
  progressSeen.push(progress);
  document.body.dataset.progress = progressSeen.join(' ');
  if (!document.body.dataset.stages?.endsWith(stage)) {
    document.body.dataset.stages = `${document.body.dataset.stages ?? ''} ${stage}`.trim();
    // Each stage's start on the page's timeline, for DevTools and tools/bench/first-paint.mjs.
    performance.mark(`groupseg:${stage}`);
  }
  const mb = (n) => (n / 1048576).toFixed(1);
  const pct = `${Math.floor(progress * 100)} %`;
  const name = file?.split('/').pop();
  $('progress-text').textContent = stage === 'compile' ? `${pct}: starting the WebAssembly module`
    : stage === 'prepare' ? `${pct}: preparing the model`
      : `${pct}: ${mb(loaded)}${total ? ` of ${mb(total)}` : ''} MB${name ? ` (${name}${cached ? ' from the cache' : ''})` : ''}`;
}

// `data-model` on <body> says where loading stands (loading, ready, failed) and `data-source` what is
// loading (demo, url, files), for scripts and tests. Loads run one after another, in order; a source
// may be a promise (the first visit's model is found asynchronously), counted as waiting at once.
let loads = Promise.resolve();
let loadsWaiting = 0;
function loadModel(source) {
  loadsWaiting++;
  loads = loads.then(() => source).then(loadNow).finally(() => loadsWaiting--);
  return loads;
}

async function loadNow(source) {
  modelReady = false;
  $('keep-model').hidden = true;
  progressSeen.length = 0;
  document.body.dataset.stages = '';
  document.body.dataset.model = 'loading';
  const kind = source.files ? 'files' : source.modelUrl ? 'url' : 'demo';
  document.body.dataset.source = kind;
  $('backend-used').textContent = '';
  status('Loading the model…');
  performance.mark('groupseg:load', { detail: kind });
  try {
    const { fromLink, ...chosen } = source;
    const { backend, notes, capabilities } = await load({ ...chosen, backend: $('backend').value, keepAs: $('keep-int8').checked ? 'int8' : 'auto' }, showProgress);
    modelReady = true;
    // The next visit starts with the same model when the browser keeps it; a model a link named
    // (?model=) only when the person keeps it, so a link cannot choose their later visits' model.
    if (fromLink) offerToKeep(source.modelUrl);
    else remember(source.modelUrl ?? (kind === 'demo' ? null : undefined));
    document.body.dataset.model = 'ready';
    performance.mark('groupseg:ready');
    suggestLabels(kind === 'demo' ? 'shapes' : 'photos');
    $('samples-row').hidden = kind !== 'demo';
    const { device, threads } = capabilities;
    const where = device === 'cpu' ? `${backend}, ${threads} thread${threads === 1 ? '' : 's'}` : backend;
    $('backend-used').textContent = `${kind === 'demo' ? 'Shapes demo (it knows only coloured shapes). ' : ''}Running on ${where}.`;
    $('backend-used').dataset.backend = backend;
    $('backend-used').dataset.threads = threads;
    const said = [...pageNotes, ...(notes ?? [])];
    const note = said.length ? ` ${said.join(' ')}` : '';
    status(`${photos.length ? 'Model ready: re-painting the photos…' : 'Model ready: drop photos.'}${note}`);
    for (const entry of photos) entry.request = null;
    if (photos.length) await repaintAll();
  } catch (e) {
    document.body.dataset.model = 'failed';
    status(`Could not load the model: ${e.message}`, true);
  } finally {
    $('progress').hidden = true;
    $('progress-text').textContent = '';
  }
}

/** Shows the button that keeps `url` as the model of later visits. */
function offerToKeep(url) {
  const keep = $('keep-model');
  keep.hidden = false;
  keep.onclick = () => {
    remember(url);
    keep.hidden = true;
    status(`${new URL(url, location.href).host} will be loaded on your next visits.`);
  };
}

/** The chosen mode: segment, detect, ground, classify or groups. */
const mode = () => document.querySelector('input[name=mode]:checked').value;

function showModeInputs() {
  const m = mode();
  $('labels-row').hidden = m === 'ground' || m === 'groups';
  $('caption-row').hidden = m !== 'ground';
  document.body.dataset.mode = m;
}

/** The options under More, for each operation that takes them: segmentation (every mode but
 * classify), boxes (detect and ground) and classification. */
function options() {
  const preset = $('template-preset').value;
  const templates = preset === 'custom' ? [$('template').value] : preset;
  const segment = { templates, refine: $('refine').checked };
  if ($('no-background').checked) segment.backgroundThreshold = null;
  else if ($('threshold').value !== '') segment.backgroundThreshold = Number($('threshold').value);
  const boxes = $('box-threshold').value !== '' ? { threshold: Number($('box-threshold').value) } : {};
  return { segment, boxes, classify: { templates } };
}

/** Runs the chosen mode on one photo into its result box, replacing what the box showed (unless it
 * already shows this mode with these labels and options). */
async function segmentInto(entry) {
  const m = mode();
  const message = { mode: m, key: entry.key, photo: entry.file, labels: $('labels').value, caption: $('caption').value, options: options() };
  const request = JSON.stringify([m, message.labels, message.caption, message.options]);
  if (entry.request === request) return;
  entry.request = request;
  const started = performance.now();
  try {
    const reply = await run(message);
    const size = reply.result ?? reply.groups;
    entry.bitmap ??= await displayBitmap(entry.file, size?.width, size?.height);
    const ms = reply.ms ?? performance.now() - started;
    const shown = { segment: render, detect: renderDetect, ground: renderGround, classify: renderClassify, groups: renderGroups }[m];
    shown(entry, reply, ms);
    entry.box.dataset.mode = m;
    performance.mark('groupseg:painted', { detail: { photo: entry.file.name, mode: m } });
    // Segmented photos go into the COCO file; other modes' results do not.
    entry.segmentation = m === 'segment' ? reply.result : null;
    $('coco-row').hidden = !photos.some((e) => e.segmentation);
  } catch (e) {
    entry.request = null;
    entry.box.replaceChildren(text('div', `${entry.file.name}: ${e.message}`, 'error'));
  }
}

/** The photo for display: decoded by the browser, downscaled to at most DISPLAY_SIDE on its long
 * side (the result canvas scales it back up), so a tab of phone photos stays small. */
async function displayBitmap(file, width, height) {
  if (!width || !height) {
    // Classification gives no size: the browser's decoding says it.
    const probe = await createImageBitmap(file, { imageOrientation: 'from-image' });
    [width, height] = [probe.width, probe.height];
    probe.close();
  }
  const scale = Math.min(1, DISPLAY_SIDE / Math.max(width, height));
  return createImageBitmap(file, {
    imageOrientation: 'from-image',
    resizeWidth: Math.max(1, Math.round(width * scale)),
    resizeHeight: Math.max(1, Math.round(height * scale)),
    resizeQuality: 'high',
  });
}

const VERB = { segment: 'Segmenting', detect: 'Detecting in', ground: 'Grounding in', classify: 'Classifying', groups: 'Grouping' };

async function segmentAll(files) {
  const entries = files.map((file) => {
    const box = document.createElement('div');
    box.className = 'result';
    box.append(text('div', `${file.name}: waiting…`));
    $('results').prepend(box);
    const entry = { file, box, key: nextKey++ };
    photos.push(entry);
    return entry;
  });
  // Photos given before a model is ready wait for one: every load paints the photos when it ends.
  if (!modelReady) {
    const waiting = `${entries.length === 1 ? 'This photo waits' : 'These photos wait'} for the model`;
    return loadsWaiting ? status(`${waiting}, which is loading.`) : status(`${waiting}: load one (step 1).`, true);
  }
  for (const [i, entry] of entries.entries()) {
    status(`${VERB[mode()]} ${entry.file.name} (${i + 1} of ${entries.length})…`);
    await segmentInto(entry);
  }
  status('Done.');
}

async function repaintAll() {
  for (const entry of photos) await segmentInto(entry);
  status('Done.');
}

/** One COCO file of every photo segmented (by the labels now typed), in the order they were given. */
async function downloadCoco() {
  const painted = photos.filter((e) => e.segmentation);
  try {
    const file = await segmenter.toCoco(painted.map((e) => ({ segmentation: e.segmentation, fileName: e.file.name })));
    saveBlob(new Blob([JSON.stringify(file)], { type: 'application/json' }), 'groupseg-coco.json');
    status(`COCO file: ${file.images.length} photos, ${file.annotations.length} annotations.`);
  } catch (e) {
    status(`COCO file: ${e.message}`, true);
  }
}

// Model sources.
$('load-demo').onclick = () => loadModel({});
$('load-redcaps').onclick = () => loadModel({ modelUrl: HUB.redcaps });
$('load-yfcc').onclick = () => loadModel({ modelUrl: HUB.yfcc });
$('load-url').onclick = () => $('model-url').value && loadModel({ modelUrl: $('model-url').value });
$('coco').onclick = downloadCoco;
$('model').onchange = (ev) => loadModel({ files: [...ev.target.files] });
$('clear-cache').onclick = async () => { await Segmenter.clearCache(); status('The model cache is empty.'); };

// Labels: re-paint every photo when they change.
for (const id of ['labels', 'caption', 'threshold', 'no-background', 'refine', 'template', 'template-preset', 'box-threshold']) {
  $(id).addEventListener('change', () => modelReady && photos.length && repaintAll());
}
for (const radio of document.querySelectorAll('input[name=mode]')) {
  radio.addEventListener('change', () => {
    showModeInputs();
    if (modelReady && photos.length) repaintAll();
  });
}
showModeInputs();

// Sample scenes for the shapes demo (www/samples/, written by tools/shapes/samples.py): their labels
// replace the typed ones, since the demo knows only the shapes' phrases.
$('samples').onclick = async () => {
  try {
    const { files, labels } = await (await fetch('samples/samples.json')).json();
    const scenes = await Promise.all(files.map(async (name) => {
      const res = await fetch(`samples/${name}`);
      if (!res.ok) throw new Error(`${name}: HTTP ${res.status}`);
      return new File([await res.blob()], name, { type: 'image/png' });
    }));
    $('labels').value = labels.join(', ');
    $('caption').value = `${labels.join('. ')}.`;
    await segmentAll(scenes);
  } catch (e) {
    status(`Could not fetch the sample scenes: ${e.message}`, true);
  }
};

cameraButton({
  ready: () => modelReady,
  segmentFrame: (bitmap, labels) => frame({ bitmap, labels, options: options() }),
});

// Photos: picker, drop, paste.
$('photos').onchange = (ev) => segmentAll([...ev.target.files]);
const drop = $('drop');
drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (ev) => { ev.preventDefault(); drop.classList.remove('over'); segmentAll([...ev.dataTransfer.files]); });
drop.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); $('photos').click(); } });
document.addEventListener('paste', (ev) => {
  const files = [...ev.clipboardData.files].filter((f) => f.type.startsWith('image/'));
  if (files.length) segmentAll(files);
});

// ?backend=webgpu|cpu|auto, ?threads=N and ?model=URL.
const params = new URLSearchParams(location.search);
const wanted = params.get('backend');
if (wanted && [...$('backend').options].some((o) => o.value === wanted)) $('backend').value = wanted;
if (params.has('threads')) {
  const n = params.get('threads');
  if (/^[1-9]\d{0,3}$/.test(n)) threads = Number(n);
  else pageNotes.push(`?threads=${n} is not a number of threads (1, 2, …): the page uses every core.`);
}
if (params.get('model')) {
  $('model-url').value = params.get('model');
  loadModel({ modelUrl: params.get('model'), fromLink: true });
} else {
  // The model of the last visit, or a hub model, when this browser still keeps it, loads offline;
  // otherwise the built-in shapes demo, so that the page works at once and without a network.
  const candidates = [lastModel(), HUB.redcaps, HUB.yfcc].filter(Boolean);
  loadModel((async () => {
    for (const url of candidates) {
      if (await isCached(url).catch(() => false)) return { modelUrl: url };
    }
    return {};
  })());
}
