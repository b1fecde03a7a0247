// The page: load a checkpoint from files, segment dropped photos, paint each with a legend.
import init, { Segmenter } from './pkg/groupseg.js';

const $ = (id) => document.getElementById(id);
const status = (text, error = false) => { $('status').textContent = text; $('status').className = error ? 'error' : ''; };
// The library's colour for class k (0 is background), so the page matches the CLI's overlays.
// `colours` is read from the result once: each read of a wasm getter copies the array.
const colour = (colours, k) => [colours[3 * k], colours[3 * k + 1], colours[3 * k + 2]];

let segmenter = null;
await init();
// ?backend=webgpu|cpu|auto preselects where the model runs.
const wanted = new URLSearchParams(location.search).get('backend');
if (wanted && [...$('backend').options].some((o) => o.value === wanted)) $('backend').value = wanted;
status('Choose the checkpoint files to start.');

$('model').addEventListener('change', async (ev) => {
  const files = Object.fromEntries([...ev.target.files].map((f) => [f.name, f]));
  const weights = files['model.safetensors'] ?? files['pytorch_model.bin'];
  const missing = ['config.json', 'tokenizer.json'].filter((n) => !files[n]);
  if (!weights) missing.push('model.safetensors or pytorch_model.bin');
  if (missing.length) return status(`Missing from the chosen files: ${missing.join(', ')}.`, true);
  status('Loading the model…');
  try {
    segmenter?.free();
    segmenter = null;
    segmenter = await Segmenter.load(
      await files['config.json'].text(),
      new Uint8Array(await weights.arrayBuffer()),
      new Uint8Array(await files['tokenizer.json'].arrayBuffer()),
      files['preprocessor_config.json'] ? await files['preprocessor_config.json'].text() : undefined,
      $('backend').value);
    $('backend-used').textContent = `Running on ${segmenter.backend}.`;
    status('Model ready: drop photos.');
  } catch (e) {
    segmenter = null;
    status(`Could not load the model: ${e.message}`, true);
  }
});

async function segmentAll(files) {
  if (!segmenter) return status('Load a model first.', true);
  for (const file of files) {
    status(`Segmenting ${file.name}…`);
    const started = performance.now();
    try {
      const bytes = new Uint8Array(await file.arrayBuffer());
      const r = await segmenter.segment(bytes, $('labels').value);
      show(file, r, performance.now() - started);
    } catch (e) {
      showError(file, e.message);
    }
  }
  status('Done.');
}

function show(file, r, ms) {
  const box = document.createElement('div');
  box.className = 'result';
  const title = document.createElement('div');
  title.textContent = `${file.name} (${Math.round(ms)} ms)`;
  const holder = document.createElement('div');
  const legend = document.createElement('div');
  legend.className = 'legend';
  const colours = r.colours;
  JSON.parse(r.summaryJson).forEach((c, k) => {
    if (c.share === 0) return;
    const row = document.createElement('div');
    const sw = document.createElement('span');
    sw.style.background = `rgb(${colour(colours, k).join(',')})`;
    row.append(sw, `${c.label} ${(c.share * 100).toFixed(1)} %, score ${c.mean_score.toFixed(2)}`);
    legend.append(row);
  });
  box.append(title, holder, legend);
  $('results').prepend(box);
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => { holder.replaceChildren(paint(img, r)); URL.revokeObjectURL(url); };
  img.src = url;
}

/** The photo with each labelled pixel tinted half-way to its label's colour. */
function paint(img, r) {
  const canvas = document.createElement('canvas');
  canvas.width = r.width; canvas.height = r.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0, r.width, r.height);
  const px = ctx.getImageData(0, 0, r.width, r.height);
  const map = r.labelMap;
  const colours = r.colours;
  for (let i = 0; i < map.length; i++) {
    if (map[i] === 0) continue;
    const c = colour(colours, map[i]);
    for (let j = 0; j < 3; j++) px.data[4 * i + j] = Math.round(px.data[4 * i + j] * 0.5 + c[j] * 0.5);
  }
  ctx.putImageData(px, 0, 0);
  return canvas;
}

function showError(file, message) {
  const box = document.createElement('div');
  box.className = 'result';
  box.textContent = `${file.name}: ${message}`;
  box.style.color = '#b00020';
  $('results').prepend(box);
}

$('photos').addEventListener('change', (ev) => segmentAll([...ev.target.files]));
const drop = $('drop');
drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (ev) => { ev.preventDefault(); drop.classList.remove('over'); segmentAll([...ev.dataTransfer.files]); });
