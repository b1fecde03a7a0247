// The page: pick a model, type labels, drop photos; each photo is segmented in the worker and
// painted here with a legend, hover, opacity, view toggles and downloads.
import { isCached, paintLabels } from './pkg/index.js';

const $ = (id) => document.getElementById(id);
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

const status = (text, error = false) => { $('status').textContent = text; $('status').className = error ? 'error' : ''; };

// One request at a time per id; replies come back by id.
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
const pending = new Map();
let nextId = 0;
worker.onmessage = ({ data }) => {
  const p = pending.get(data.id);
  if (!p) return;
  if (data.type === 'progress') return p.onProgress?.(data);
  pending.delete(data.id);
  if (data.type === 'error') p.reject(new Error(data.message));
  else p.resolve(data);
};
worker.onerror = (e) => status(`The worker failed: ${e.message}`, true);
function ask(message, onProgress) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onProgress });
    worker.postMessage({ ...message, id });
  });
}

// Labels that suit each kind of model, swapped in while the user has not typed their own.
const DEFAULT_LABELS = {
  photos: 'cat, dog, sofa, window, floor, grass, sky',
  shapes: 'red circle, blue star, green triangle, yellow square, orange ring, purple bar, pink cross',
};
function suggestLabels(kind) {
  if (Object.values(DEFAULT_LABELS).includes($('labels').value)) $('labels').value = DEFAULT_LABELS[kind];
}

let modelReady = false;
let views = 0; // names each result's radio group
let nextKey = 0; // names each photo for the worker, which keeps its encoding
const photos = []; // { file, box, key, bitmap, request } for re-painting when the labels change

function showProgress({ file, loaded, total, cached }) {
  const name = file.split('/').pop();
  $('progress').hidden = false;
  $('progress').max = total || 1;
  $('progress').value = total ? loaded : 0;
  const mb = (n) => (n / 1048576).toFixed(1);
  $('progress-text').textContent = cached ? `${name} from the cache`
    : `${name}: ${mb(loaded)}${total ? ` of ${mb(total)}` : ''} MB`;
}

// `data-model` on <body> says where loading stands (loading, ready, failed) and `data-source` what is
// loading (demo, url, files), for scripts and tests. Loads run one after another, in order.
let loads = Promise.resolve();
function loadModel(source) {
  loads = loads.then(() => loadNow(source));
  return loads;
}

async function loadNow(source) {
  modelReady = false;
  document.body.dataset.model = 'loading';
  const kind = source.files ? 'files' : source.modelUrl ? 'url' : 'demo';
  document.body.dataset.source = kind;
  $('backend-used').textContent = '';
  status('Loading the model…');
  try {
    const { backend, notes } = await ask({ type: 'load', ...source, backend: $('backend').value }, showProgress);
    modelReady = true;
    // The next visit starts with the same model when the browser keeps it.
    remember(source.modelUrl ?? (kind === 'demo' ? null : undefined));
    document.body.dataset.model = 'ready';
    suggestLabels(kind === 'demo' ? 'shapes' : 'photos');
    $('samples-row').hidden = kind !== 'demo';
    $('backend-used').textContent = `${kind === 'demo' ? 'Shapes demo (it knows only coloured shapes). ' : ''}Running on ${backend}.`;
    const note = notes?.length ? ` ${notes.join(' ')}` : '';
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

function options() {
  const o = { templates: [$('template').value] };
  if ($('no-background').checked) o.backgroundThreshold = null;
  else if ($('threshold').value !== '') o.backgroundThreshold = Number($('threshold').value);
  return o;
}

/** Segments one photo into its result box, replacing what the box showed (unless it already shows
 * these labels and options). */
async function segmentInto(entry) {
  const request = JSON.stringify([$('labels').value, options()]);
  if (entry.request === request) return;
  entry.request = request;
  const started = performance.now();
  try {
    const { result, ms, reused } = await ask({
      type: 'segment', key: entry.key, photo: entry.file, labels: $('labels').value, options: options(),
    });
    entry.bitmap ??= await displayBitmap(entry.file, result.width, result.height);
    render(entry, result, ms ?? performance.now() - started, reused);
  } catch (e) {
    entry.request = null;
    entry.box.replaceChildren(text('div', `${entry.file.name}: ${e.message}`, 'error'));
  }
}

/** The photo for display: decoded by the browser, downscaled to at most DISPLAY_SIDE on its long
 * side (the result canvas scales it back up), so a tab of phone photos stays small. */
function displayBitmap(file, width, height) {
  const scale = Math.min(1, DISPLAY_SIDE / Math.max(width, height));
  return createImageBitmap(file, {
    imageOrientation: 'from-image',
    resizeWidth: Math.max(1, Math.round(width * scale)),
    resizeHeight: Math.max(1, Math.round(height * scale)),
    resizeQuality: 'high',
  });
}

async function segmentAll(files) {
  if (!modelReady) return status('Load a model first (step 1).', true);
  const entries = files.map((file) => {
    const box = document.createElement('div');
    box.className = 'result';
    box.append(text('div', `${file.name}: waiting…`));
    $('results').prepend(box);
    const entry = { file, box, key: nextKey++ };
    photos.push(entry);
    return entry;
  });
  for (const [i, entry] of entries.entries()) {
    status(`Segmenting ${entry.file.name} (${i + 1} of ${entries.length})…`);
    await segmentInto(entry);
  }
  status('Done.');
}

async function repaintAll() {
  for (const entry of photos) await segmentInto(entry);
  status('Done.');
}

function text(tag, content, className) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (className) el.className = className;
  return el;
}

/** The photo, the overlay (labels over the photo, background left clear) or the mask (every class). */
function paint(canvas, entry, r, view, opacity) {
  const ctx = canvas.getContext('2d');
  if (view === 'mask') return ctx.putImageData(paintLabels(r, { opacity: 1, background: true }), 0, 0);
  ctx.drawImage(entry.bitmap, 0, 0, r.width, r.height);
  if (view === 'overlay') {
    ctx.putImageData(paintLabels(r, { photo: ctx.getImageData(0, 0, r.width, r.height), opacity }), 0, 0);
  }
}

function download(canvas, name) {
  canvas.toBlob((blob) => {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = name;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }, 'image/png');
}

function render(entry, r, ms, reused) {
  const { box, file } = entry;
  const canvas = document.createElement('canvas');
  canvas.width = r.width;
  canvas.height = r.height;
  canvas.setAttribute('aria-label', `${file.name}, segmented`);
  let view = 'overlay';
  let opacity = 0.5;
  const redraw = () => paint(canvas, entry, r, view, opacity);

  const controls = document.createElement('div');
  controls.className = 'controls';
  const slider = Object.assign(document.createElement('input'), { type: 'range', min: 0, max: 1, step: 0.05, value: opacity });
  slider.setAttribute('aria-label', 'overlay opacity');
  slider.oninput = () => { opacity = Number(slider.value); redraw(); };
  const opacityLabel = text('label', 'opacity ');
  opacityLabel.append(slider);
  controls.append(opacityLabel);
  const group = `view-${views++}`;
  for (const v of ['photo', 'overlay', 'mask']) {
    const radio = Object.assign(document.createElement('input'), { type: 'radio', name: group, value: v, checked: v === view });
    radio.onchange = () => { view = v; redraw(); };
    const label = text('label', '');
    label.append(radio, ` ${v}`);
    controls.append(label);
  }
  const stem = file.name.replace(/\.[^.]*$/, '');
  const overlayButton = text('button', 'overlay PNG');
  overlayButton.onclick = () => {
    const c = Object.assign(document.createElement('canvas'), { width: r.width, height: r.height });
    paint(c, entry, r, 'overlay', opacity);
    download(c, `${stem}.overlay.png`);
  };
  const maskButton = text('button', 'mask PNG');
  maskButton.onclick = () => {
    const c = Object.assign(document.createElement('canvas'), { width: r.width, height: r.height });
    paint(c, entry, r, 'mask', 1);
    download(c, `${stem}.mask.png`);
  };
  controls.append(overlayButton, maskButton);

  const hover = text('div', '\u00a0', 'hover');
  canvas.onpointermove = (ev) => {
    const rect = canvas.getBoundingClientRect();
    const x = Math.min(r.width - 1, Math.floor(((ev.clientX - rect.left) / rect.width) * r.width));
    const y = Math.min(r.height - 1, Math.floor(((ev.clientY - rect.top) / rect.height) * r.height));
    const i = y * r.width + x;
    hover.textContent = `${r.labels[r.labelMap[i]]} (score ${r.scores[i].toFixed(2)})`;
  };
  canvas.onpointerleave = () => { hover.textContent = '\u00a0'; };

  const legend = document.createElement('div');
  legend.className = 'legend';
  r.summary.forEach((c, k) => {
    if (c.share === 0) return;
    const row = document.createElement('div');
    const swatch = text('span', '', 'swatch');
    swatch.style.background = `rgb(${r.colours[3 * k]},${r.colours[3 * k + 1]},${r.colours[3 * k + 2]})`;
    row.append(swatch, `${c.label} ${(c.share * 100).toFixed(1)} %, confidence ${c.meanScore.toFixed(2)}`);
    legend.append(row);
  });
  const took = `${Math.round(ms)} ms${reused ? ', labels only: the image encoder did not run again' : ''}`;
  box.replaceChildren(text('div', `${file.name} (${took})`, 'took'), canvas, hover, controls, legend);
  redraw();
}

// Model sources.
$('load-demo').onclick = () => loadModel({});
$('load-redcaps').onclick = () => loadModel({ modelUrl: HUB.redcaps });
$('load-yfcc').onclick = () => loadModel({ modelUrl: HUB.yfcc });
$('load-url').onclick = () => $('model-url').value && loadModel({ modelUrl: $('model-url').value });
$('model').onchange = (ev) => loadModel({ files: [...ev.target.files] });
$('clear-cache').onclick = async () => { await ask({ type: 'clear-cache' }); status('The model cache is empty.'); };

// Labels: re-paint every photo when they change.
for (const id of ['labels', 'threshold', 'no-background', 'template']) {
  $(id).addEventListener('change', () => modelReady && photos.length && repaintAll());
}

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
    await segmentAll(scenes);
  } catch (e) {
    status(`Could not fetch the sample scenes: ${e.message}`, true);
  }
};

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

// ?backend=webgpu|cpu|auto and ?model=URL.
const params = new URLSearchParams(location.search);
const wanted = params.get('backend');
if (wanted && [...$('backend').options].some((o) => o.value === wanted)) $('backend').value = wanted;
if (params.get('model')) {
  $('model-url').value = params.get('model');
  loadModel({ modelUrl: params.get('model') });
} else {
  // The model of the last visit, or a hub model, when this browser still keeps it, loads offline;
  // otherwise the built-in shapes demo, so that the page works at once and without a network.
  const candidates = [lastModel(), HUB.redcaps, HUB.yfcc].filter(Boolean);
  (async () => {
    for (const url of candidates) {
      if (await isCached(url).catch(() => false)) return { modelUrl: url };
    }
    return {};
  })().then(loadModel);
}
