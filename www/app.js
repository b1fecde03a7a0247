// The page: pick a model, pick a mode, type labels (or a caption), drop photos; each photo is run in
// the worker and shown here: segmented (legend, hover, opacity, views, downloads), its objects boxed,
// a caption's phrases grounded (hover a phrase or a region and the other lights up), classified, or
// the model's own groups.
import { Segmenter, isCached, paintLabels, paintGroups } from './pkg/worker.js';

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

// The model runs in the package's own Web Worker (groupseg/worker), so the page never freezes, not
// even on the CPU path. Each photo (by key) goes through the image encoder once; new labels or
// another mode re-run only the labels' part. Only the last few encodings are kept (a phone tab cannot
// hold a dozen); older photos are encoded again when asked for.
const KEEP_ENCODINGS = 4;
let segmenter = null;
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

const handlers = {
  async load({ modelUrl, files, backend, keepAs }, onProgress) {
    forgetPhotos();
    segmenter?.dispose();
    segmenter = null;
    segmenter = await Segmenter.load({ modelUrl, files, backend, keepAs, onProgress });
    return { backend: segmenter.backend, notes: segmenter.notes, threads: segmenter.threads };
  },
  async run({ mode, key, photo, labels, caption, options }) {
    if (!segmenter) throw new Error('Load a model first.');
    const started = performance.now();
    const ms = () => performance.now() - started;
    // Classification sees the whole photo at the model's input size, not the encoded windows.
    if (mode === 'classify') return { ranked: await segmenter.classify(photo, labels, options), ms: ms(), reused: false };
    const { image, reused } = await encodingOf(key, photo, options);
    if (mode === 'groups') return { groups: await segmenter.groups(image), ms: ms(), reused };
    let phrases = null;
    if (mode === 'ground') {
      phrases = await segmenter.phrases(caption);
      labels = await segmenter.phraseLabels(caption);
      if (!labels.length) throw new Error(`No phrase to ground in "${caption}": name something, e.g. "a red circle next to a blue star".`);
    }
    // Grounding's phrases compete with the empty prompt (the package's `ground` does the same).
    const result = await segmenter.segment(image, labels, mode === 'ground' ? { ...options, nothingPrompt: true } : options);
    const reply = { result, ms: 0, reused };
    if (mode === 'detect') reply.detections = await result.detect(options);
    if (mode === 'ground') Object.assign(reply, { phrases, grounding: await result.ground(caption, options) });
    reply.ms = ms();
    return reply;
  },
  // A camera frame: segmented whole (nothing kept: the next frame differs).
  async frame({ bitmap, labels, options }) {
    if (!segmenter) throw new Error('Load a model first.');
    const started = performance.now();
    const result = await segmenter.segment(bitmap, labels, options);
    return { result, ms: performance.now() - started };
  },
  async 'clear-cache'() {
    await Segmenter.clearCache();
    return {};
  },
};

/** Runs one of the handlers; loads report progress through `onProgress`. */
function ask({ type, ...message }, onProgress) {
  return handlers[type](message, onProgress);
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
let views = 0; // names each result's radio group
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
  if (!document.body.dataset.stages?.endsWith(stage)) document.body.dataset.stages = `${document.body.dataset.stages ?? ''} ${stage}`.trim();
  const mb = (n) => (n / 1048576).toFixed(1);
  const pct = `${Math.floor(progress * 100)} %`;
  const name = file?.split('/').pop();
  $('progress-text').textContent = stage === 'compile' ? `${pct}: starting the WebAssembly module`
    : stage === 'prepare' ? `${pct}: preparing the model`
      : `${pct}: ${mb(loaded)}${total ? ` of ${mb(total)}` : ''} MB${name ? ` (${name}${cached ? ' from the cache' : ''})` : ''}`;
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
  $('keep-model').hidden = true;
  progressSeen.length = 0;
  document.body.dataset.stages = '';
  document.body.dataset.model = 'loading';
  const kind = source.files ? 'files' : source.modelUrl ? 'url' : 'demo';
  document.body.dataset.source = kind;
  $('backend-used').textContent = '';
  status('Loading the model…');
  try {
    const { fromLink, ...load } = source;
    const { backend, notes, threads } = await ask({ type: 'load', ...load, backend: $('backend').value, keepAs: $('keep-int8').checked ? 'int8' : null }, showProgress);
    modelReady = true;
    // The next visit starts with the same model when the browser keeps it; a model a link named
    // (?model=) only when the person keeps it, so a link cannot choose their later visits' model.
    if (fromLink) offerToKeep(source.modelUrl);
    else remember(source.modelUrl ?? (kind === 'demo' ? null : undefined));
    document.body.dataset.model = 'ready';
    suggestLabels(kind === 'demo' ? 'shapes' : 'photos');
    $('samples-row').hidden = kind !== 'demo';
    const where = backend.startsWith('CPU') ? `${backend}, ${threads} thread${threads === 1 ? '' : 's'}` : backend;
    $('backend-used').textContent = `${kind === 'demo' ? 'Shapes demo (it knows only coloured shapes). ' : ''}Running on ${where}.`;
    $('backend-used').dataset.backend = backend;
    $('backend-used').dataset.threads = threads;
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

function options() {
  const preset = $('template-preset').value;
  const o = { templates: preset === 'custom' ? [$('template').value] : preset };
  if ($('no-background').checked) o.backgroundThreshold = null;
  else if ($('threshold').value !== '') o.backgroundThreshold = Number($('threshold').value);
  if ($('box-threshold').value !== '') o.threshold = Number($('box-threshold').value);
  o.refine = $('refine').checked;
  return o;
}

/** Runs the chosen mode on one photo into its result box, replacing what the box showed (unless it
 * already shows this mode with these labels and options). */
async function segmentInto(entry) {
  const m = mode();
  const message = { type: 'run', mode: m, key: entry.key, photo: entry.file, labels: $('labels').value, caption: $('caption').value, options: options() };
  const request = JSON.stringify([m, message.labels, message.caption, message.options]);
  if (entry.request === request) return;
  entry.request = request;
  const started = performance.now();
  try {
    const reply = await ask(message);
    const size = reply.result ?? reply.groups;
    entry.bitmap ??= await displayBitmap(entry.file, size?.width, size?.height);
    const ms = reply.ms ?? performance.now() - started;
    const shown = { segment: render, detect: renderDetect, ground: renderGround, classify: renderClassify, groups: renderGroups }[m];
    shown(entry, reply, ms);
    entry.box.dataset.mode = m;
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
    status(`${VERB[mode()]} ${entry.file.name} (${i + 1} of ${entries.length})…`);
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

/** The photo, the overlay (labels over the photo, background left clear) or the mask (every class).
 * Classes in `hidden` are left unpainted; the overlay covers the photo left of `split` (0–1) only. */
function paint(canvas, entry, r, view, opacity, hidden = new Set(), split = 1) {
  const ctx = canvas.getContext('2d');
  const shown = hidden.size ? { ...r, labelMap: r.labelMap.map((k) => (hidden.has(k) ? 0 : k)) } : r;
  if (view === 'mask') return ctx.putImageData(paintLabels(shown, { opacity: 1, background: true }), 0, 0);
  ctx.drawImage(entry.bitmap, 0, 0, r.width, r.height);
  if (view === 'overlay') {
    const cut = Math.round(split * r.width);
    if (cut > 0) ctx.putImageData(paintLabels(shown, { photo: ctx.getImageData(0, 0, r.width, r.height), opacity }), 0, 0, 0, 0, cut, r.height);
  }
}

/** The overlay as the CLI writes it: the painted photo with a legend beneath (colour, label, share,
 * confidence of every class present). */
function overlayWithLegend(entry, r, opacity, hidden, names, regions) {
  const present = r.summary.map((c, k) => [c, k]).filter(([c]) => c.share > 0);
  const font = Math.max(12, Math.round(r.width / 40));
  const row = Math.round(font * 1.5);
  const lines = present.map(([c]) => `${c.label}  ${(c.share * 100).toFixed(1)} %  confidence ${c.meanScore.toFixed(2)}`);
  const probe = document.createElement('canvas').getContext('2d');
  probe.font = `${font}px system-ui, sans-serif`;
  const width = Math.max(r.width, Math.ceil(Math.max(0, ...lines.map((l) => probe.measureText(l).width)) + 2.5 * row));
  const c = Object.assign(document.createElement('canvas'), { width, height: r.height + row * present.length + row / 2 });
  const ctx = c.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, c.width, c.height);
  const photo = Object.assign(document.createElement('canvas'), { width: r.width, height: r.height });
  paint(photo, entry, r, 'overlay', opacity, hidden);
  if (names) writeNames(photo, r, regions);
  ctx.drawImage(photo, 0, 0);
  ctx.font = `${font}px system-ui, sans-serif`;
  present.forEach(([, k], i) => {
    const y = r.height + row / 2 + i * row;
    ctx.fillStyle = k === 0 ? '#808080' : rgb(r.colours, k);
    ctx.fillRect(row / 4, y, font, font);
    ctx.fillStyle = '#000';
    ctx.fillText(lines[i], row / 4 + font * 1.5, y + font * 0.85);
  });
  return c;
}

/** The pixel of class `k` inside `box` nearest the middle of its pixels there: where a name written
 * on the region lands inside it (a ring's middle is not the ring). */
function anchorOf(r, k, box) {
  let [sx, sy, n] = [0, 0, 0];
  for (let y = box.ymin; y < box.ymax; y++) {
    for (let x = box.xmin; x < box.xmax; x++) {
      if (r.labelMap[y * r.width + x] === k) { sx += x; sy += y; n++; }
    }
  }
  const [cx, cy] = [sx / n, sy / n];
  let best = [box.xmin, box.ymin, Infinity];
  for (let y = box.ymin; y < box.ymax; y++) {
    for (let x = box.xmin; x < box.xmax; x++) {
      const d = (x - cx) ** 2 + (y - cy) ** 2;
      if (r.labelMap[y * r.width + x] === k && d < best[2]) best = [x, y, d];
    }
  }
  return best;
}

/** Each region's label written on it, on a plate in its colour (NVlabs' input_pred_label). */
function writeNames(canvas, r, regions) {
  const ctx = canvas.getContext('2d');
  const font = Math.max(11, Math.round(Math.max(r.width, r.height) / 36));
  ctx.font = `bold ${font}px system-ui, sans-serif`;
  for (const d of regions) {
    const k = r.labels.indexOf(d.label);
    const [x, y] = anchorOf(r, k, d.box);
    const w = ctx.measureText(d.label).width + 6;
    const left = Math.min(Math.max(0, x - w / 2), r.width - w);
    const top = Math.min(Math.max(0, y - font / 2 - 2), r.height - font - 4);
    ctx.fillStyle = rgb(r.colours, k);
    ctx.fillRect(left, top, w, font + 4);
    ctx.fillStyle = '#fff';
    ctx.fillText(d.label, left + 3, top + font);
  }
}

function saveBlob(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function download(canvas, name) {
  canvas.toBlob((blob) => saveBlob(blob, name), 'image/png');
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

function render(entry, { result: r, reused }, ms) {
  const { box, file } = entry;
  const canvas = document.createElement('canvas');
  canvas.width = r.width;
  canvas.height = r.height;
  canvas.setAttribute('aria-label', `${file.name}, segmented`);
  let view = 'overlay';
  let opacity = 0.5;
  let names = false;
  let split = 1;
  const hidden = new Set();
  const redraw = () => {
    paint(canvas, entry, r, view, opacity, hidden, split);
    if (names && view !== 'photo') writeNames(canvas, r, regions.filter((d) => !hidden.has(r.labels.indexOf(d.label))));
  };

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
  // Before / after: the overlay left of the handle, the photo right of it.
  const compare = Object.assign(document.createElement('input'), { type: 'range', min: 0, max: 1, step: 0.01, value: split, className: 'compare' });
  compare.setAttribute('aria-label', 'before / after: overlay left of the handle, photo right of it');
  compare.oninput = () => { split = Number(compare.value); redraw(); };
  const compareLabel = text('label', 'before / after ');
  compareLabel.append(compare);
  controls.append(compareLabel);
  const namesBox = Object.assign(document.createElement('input'), { type: 'checkbox', className: 'names' });
  // Regions to write names on, found (in the worker) the first time names are asked for.
  let regions = null;
  namesBox.onchange = async () => {
    if (namesBox.checked) regions ??= await r.detect({ threshold: 0, nmsIou: 1 });
    names = namesBox.checked;
    redraw();
    canvas.dataset.names = names ? 'drawn' : '';
  };
  const namesLabel = text('label', '');
  namesLabel.append(namesBox, ' names');
  controls.append(namesLabel);
  const stem = file.name.replace(/\.[^.]*$/, '');
  const overlayButton = text('button', 'overlay PNG');
  overlayButton.onclick = () => {
    download(overlayWithLegend(entry, r, opacity, hidden, names, regions), `${stem}.overlay.png`);
  };
  const maskButton = text('button', 'mask PNG');
  maskButton.onclick = () => {
    const c = Object.assign(document.createElement('canvas'), { width: r.width, height: r.height });
    paint(c, entry, r, 'mask', 1, hidden);
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

  // The legend as chips: pressing one hides or shows its label's colour.
  const legend = document.createElement('div');
  legend.className = 'legend';
  r.summary.forEach((c, k) => {
    if (c.share === 0) return;
    const chip = text('button', '', 'chip');
    chip.type = 'button';
    chip.setAttribute('aria-pressed', 'true');
    chip.title = `show or hide ${c.label}`;
    const swatch = text('span', '', 'swatch');
    swatch.style.background = rgb(r.colours, k);
    chip.append(swatch, `${c.label} ${(c.share * 100).toFixed(1)} %, confidence ${c.meanScore.toFixed(2)}`);
    chip.dataset.label = c.label;
    chip.dataset.share = String(c.share);
    chip.onclick = () => {
      if (hidden.has(k)) hidden.delete(k); else hidden.add(k);
      chip.setAttribute('aria-pressed', String(!hidden.has(k)));
      redraw();
    };
    legend.append(chip);
  });
  box.replaceChildren(text('div', `${file.name} (${took(ms, reused)})`, 'took'), canvas, hover, controls, legend);
  redraw();
}

const took = (ms, reused) => `${Math.round(ms)} ms${reused ? ', labels only: the image encoder did not run again' : ''}`;
const rgb = (colours, k) => `rgb(${colours[3 * k]},${colours[3 * k + 1]},${colours[3 * k + 2]})`;

/** A canvas of the photo at the result's size. */
function photoCanvas(entry, width, height, name) {
  const canvas = Object.assign(document.createElement('canvas'), { width, height });
  canvas.setAttribute('aria-label', name);
  canvas.getContext('2d').drawImage(entry.bitmap, 0, 0, width, height);
  return canvas;
}

/** Draws boxes `[{box, text, colour, strong}]` with their texts on plates above them. */
function drawBoxes(canvas, boxes) {
  const ctx = canvas.getContext('2d');
  const side = Math.max(canvas.width, canvas.height);
  const line = Math.max(2, Math.round(side / 150));
  const font = Math.max(11, Math.round(side / 32));
  ctx.font = `bold ${font}px system-ui, sans-serif`;
  for (const b of boxes) {
    ctx.lineWidth = b.strong ? 2 * line : line;
    ctx.strokeStyle = b.colour;
    const { xmin, ymin, xmax, ymax } = b.box;
    ctx.strokeRect(xmin + ctx.lineWidth / 2, ymin + ctx.lineWidth / 2, xmax - xmin - ctx.lineWidth, ymax - ymin - ctx.lineWidth);
  }
  for (const b of boxes) {
    const w = ctx.measureText(b.text).width + 6;
    const x = Math.min(b.box.xmin, canvas.width - w);
    const y = Math.max(0, b.box.ymin - font - 4);
    ctx.fillStyle = b.colour;
    ctx.fillRect(x, y, w, font + 4);
    ctx.fillStyle = '#fff';
    ctx.fillText(b.text, x + 3, y + font);
  }
}

/** Where the pointer is over `canvas`, in the result's pixels. */
function pixelAt(canvas, ev, width, height) {
  const rect = canvas.getBoundingClientRect();
  const x = Math.min(width - 1, Math.floor(((ev.clientX - rect.left) / rect.width) * width));
  const y = Math.min(height - 1, Math.floor(((ev.clientY - rect.top) / rect.height) * height));
  return y * width + x;
}

/** Detect: the photo with a box per object, labelled with its score, and the list beneath. */
function renderDetect(entry, { result: r, detections, reused }, ms) {
  const canvas = photoCanvas(entry, r.width, r.height, `${entry.file.name}, objects`);
  const classOf = (label) => r.labels.indexOf(label);
  drawBoxes(canvas, detections.map((d) => ({ box: d.box, text: `${d.label} ${d.score.toFixed(2)}`, colour: rgb(r.colours, classOf(d.label)) })));
  const list = document.createElement('div');
  list.className = 'found';
  if (!detections.length) list.append(text('div', 'No object of these labels found.'));
  for (const d of detections) {
    const row = document.createElement('div');
    const swatch = text('span', '', 'swatch');
    swatch.style.cssText = `display:inline-block;width:1em;height:1em;margin-right:.3em;background:${rgb(r.colours, classOf(d.label))}`;
    row.append(swatch, `${d.label} ${d.score.toFixed(2)} at (${d.box.xmin}, ${d.box.ymin})–(${d.box.xmax}, ${d.box.ymax})`);
    row.dataset.label = d.label;
    row.dataset.box = JSON.stringify(d.box);
    list.append(row);
  }
  entry.box.replaceChildren(text('div', `${entry.file.name}: ${detections.length} found (${took(ms, reused)})`, 'took'), canvas, list);
}

/** Ground: the caption with its phrases marked in their regions' colours; hovering a phrase lights
 * its region and box, hovering the photo lights the phrase of the region under the pointer. */
function renderGround(entry, { result: r, phrases, grounding, reused }, ms) {
  const caption = $('caption').value;
  const classOf = (i) => r.labels.findIndex((l) => l.toLowerCase() === phrases[i].label.toLowerCase());
  const canvas = document.createElement('canvas');
  Object.assign(canvas, { width: r.width, height: r.height });
  canvas.setAttribute('aria-label', `${entry.file.name}, phrases grounded`);
  const marks = [];
  const draw = (lit) => {
    const ctx = canvas.getContext('2d');
    ctx.drawImage(entry.bitmap, 0, 0, r.width, r.height);
    // Only the lit phrase's region is painted while one is lit; all of them otherwise.
    const keep = lit === null ? null : classOf(lit);
    const map = keep === null ? r.labelMap : r.labelMap.map((k) => (k === keep ? k : 0));
    ctx.putImageData(paintLabels({ ...r, labelMap: map }, { photo: ctx.getImageData(0, 0, r.width, r.height), opacity: 0.45 }), 0, 0);
    drawBoxes(canvas, grounding.flatMap((g, i) => (g.box && (lit === null || lit === i)
      ? [{ box: g.box, text: `${g.phrase} ${g.score.toFixed(2)}`, colour: rgb(r.colours, classOf(i)), strong: lit === i }] : [])));
    marks.forEach((m, i) => m.classList.toggle('lit', lit === i));
  };
  const line = document.createElement('p');
  line.className = 'caption';
  let at = 0;
  grounding.forEach((g, i) => {
    line.append(caption.slice(at, g.start));
    const mark = text('mark', caption.slice(g.start, g.end));
    if (g.box) mark.style.background = rgb(r.colours, classOf(i)).replace('rgb', 'rgba').replace(')', ',0.45)');
    else mark.classList.add('nowhere');
    mark.title = g.box ? `score ${g.score.toFixed(2)}` : 'found nowhere in the photo';
    mark.tabIndex = 0;
    mark.dataset.phrase = g.phrase;
    mark.dataset.box = JSON.stringify(g.box);
    mark.onpointerenter = mark.onfocus = () => draw(i);
    mark.onpointerleave = mark.onblur = () => draw(null);
    marks.push(mark);
    line.append(mark);
    at = g.end;
  });
  line.append(caption.slice(at));
  canvas.onpointermove = (ev) => {
    const k = r.labelMap[pixelAt(canvas, ev, r.width, r.height)];
    const i = k === 0 ? -1 : grounding.findIndex((_, j) => classOf(j) === k);
    marks.forEach((m, j) => m.classList.toggle('lit', j === i));
  };
  canvas.onpointerleave = () => marks.forEach((m) => m.classList.remove('lit'));
  const found = grounding.filter((g) => g.box).length;
  entry.box.replaceChildren(text('div', `${entry.file.name}: ${found} of ${grounding.length} phrases found (${took(ms, reused)})`, 'took'), canvas, line);
  draw(null);
}

/** Classify: the photo and its labels ranked, with bars. */
function renderClassify(entry, { ranked }, ms) {
  const { width, height } = entry.bitmap;
  const canvas = photoCanvas(entry, width, height, `${entry.file.name}, classified`);
  const list = document.createElement('div');
  list.className = 'ranked';
  for (const { label, score } of ranked.slice(0, 10)) {
    const row = document.createElement('div');
    const bar = text('span', '', 'bar');
    bar.style.width = `${Math.max(1, score * 12)}em`;
    row.append(bar, `${label} ${(score * 100).toFixed(1)} %`);
    row.dataset.label = label;
    row.dataset.score = score;
    list.append(row);
  }
  entry.box.replaceChildren(text('div', `${entry.file.name}: most likely ${ranked[0].label} (${Math.round(ms)} ms)`, 'took'), canvas, list);
}

/** Groups: the model's own groups of one grouping block over the photo, boundaries white. */
function renderGroups(entry, { groups, reused }, ms) {
  const { width, height, stages } = groups;
  const canvas = photoCanvas(entry, width, height, `${entry.file.name}, groups`);
  const photo = canvas.getContext('2d').getImageData(0, 0, width, height);
  let stage = stages.length - 1;
  const draw = () => canvas.getContext('2d').putImageData(paintGroups(groups, stage, { photo }), 0, 0);
  const controls = document.createElement('div');
  controls.className = 'controls';
  const name = `stage-${views++}`;
  stages.forEach((s, k) => {
    const radio = Object.assign(document.createElement('input'), { type: 'radio', name, value: k, checked: k === stage });
    radio.onchange = () => { stage = k; draw(); };
    const label = text('label', '');
    label.append(radio, ` grouping block ${k + 1}: ${s.count} groups`);
    controls.append(label);
  });
  const hover = text('div', '\u00a0', 'hover');
  canvas.onpointermove = (ev) => {
    const g = stages[stage].map[pixelAt(canvas, ev, width, height)];
    const per = stages[stage].groupsPerWindow;
    hover.textContent = `group ${g % per + 1}${g >= per ? ` of window ${Math.floor(g / per) + 1}` : ''}`;
  };
  const counts = stages.map((s, k) => `block ${k + 1}: ${s.count}`).join(', ');
  entry.box.replaceChildren(text('div', `${entry.file.name}: groups (${counts}; ${took(ms, reused)})`, 'took'), canvas, hover, controls);
  draw();
}

// Model sources.
$('load-demo').onclick = () => loadModel({});
$('load-redcaps').onclick = () => loadModel({ modelUrl: HUB.redcaps });
$('load-yfcc').onclick = () => loadModel({ modelUrl: HUB.yfcc });
$('load-url').onclick = () => $('model-url').value && loadModel({ modelUrl: $('model-url').value });
$('coco').onclick = downloadCoco;
$('model').onchange = (ev) => loadModel({ files: [...ev.target.files] });
$('clear-cache').onclick = async () => { await ask({ type: 'clear-cache' }); status('The model cache is empty.'); };

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

// Camera mode: frames segmented one after another (the next frame is taken when the last one is
// painted, so a slow backend lowers the frame rate rather than queueing frames), by the labels as
// they are typed.
const camera = { stream: null, video: null, painted: 0, times: [] };

async function startCamera() {
  if (!modelReady) return status('Load a model first (step 1).', true);
  try {
    camera.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  } catch (e) {
    return status(`No camera: ${e.message}`, true);
  }
  camera.video = Object.assign(document.createElement('video'), { muted: true, playsInline: true, srcObject: camera.stream });
  await camera.video.play();
  Object.assign(camera, { painted: 0, times: [] });
  $('camera').setAttribute('aria-pressed', 'true');
  $('camera').textContent = 'Stop the camera';
  $('camera-view').hidden = false;
  $('camera-status').textContent = 'Segmenting the camera…';
  cameraLoop();
}

function stopCamera() {
  camera.stream?.getTracks().forEach((t) => t.stop());
  camera.stream = null;
  $('camera').setAttribute('aria-pressed', 'false');
  $('camera').textContent = 'Camera';
  $('camera-status').textContent = 'Camera stopped.';
}

async function cameraLoop() {
  const canvas = $('camera-canvas');
  while (camera.stream) {
    const { videoWidth: w, videoHeight: h } = camera.video;
    if (!w || !h) { await new Promise((ok) => setTimeout(ok, 50)); continue; }
    // The frame as shown, kept here; a copy goes to the worker.
    const frame = await createImageBitmap(camera.video);
    const sent = frame; // the worker entry sends its own copy
    const labels = $('labels').value;
    try {
      const reply = await ask({ type: 'frame', bitmap: sent, labels, options: options() });
      if (!camera.stream) break;
      const r = reply.result;
      Object.assign(canvas, { width: r.width, height: r.height });
      const ctx = canvas.getContext('2d');
      ctx.drawImage(frame, 0, 0, r.width, r.height);
      ctx.putImageData(paintLabels(r, { photo: ctx.getImageData(0, 0, r.width, r.height), opacity: 0.5 }), 0, 0);
      camera.painted++;
      camera.times.push(performance.now());
      if (camera.times.length > 10) camera.times.shift();
      const span = (camera.times.at(-1) - camera.times[0]) / 1000;
      const fps = camera.times.length > 1 ? (camera.times.length - 1) / span : 0;
      $('camera-fps').textContent = `${fps.toFixed(1)} frames per second on ${$('backend-used').dataset.backend ?? 'this backend'} (${Math.round(reply.ms)} ms a frame)`;
      $('camera-view').dataset.frames = camera.painted;
      $('camera-legend').replaceChildren(...r.summary.flatMap((c, k) => {
        if (c.share === 0 || k === 0) return [];
        const chip = text('span', '', 'chip');
        const swatch = text('span', '', 'swatch');
        swatch.style.background = rgb(r.colours, k);
        chip.append(swatch, `${c.label} ${(c.share * 100).toFixed(0)} %`);
        chip.dataset.label = c.label;
        chip.dataset.share = String(c.share);
        return [chip];
      }));
    } catch (e) {
      $('camera-status').textContent = `A frame failed: ${e.message}`;
      await new Promise((ok) => setTimeout(ok, 500));
    } finally {
      frame.close();
    }
  }
}

$('camera').onclick = () => (camera.stream ? stopCamera() : startCamera());

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
  loadModel({ modelUrl: params.get('model'), fromLink: true });
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
