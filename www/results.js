// How each mode's result is shown: segment (overlay, legend, hover, opacity, views, downloads),
// detect (boxes), ground (phrases and their regions lit together), classify (ranked labels) and
// groups (each grouping block's groups).
import { paintLabels, paintGroups } from './pkg/worker.js';
import { $, text, took, rgb, download } from './ui.js';

let views = 0; // names each result's radio group

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

/** Each region's label written on it, on a plate in its colour (NVlabs' input_pred_label). */
function writeNames(canvas, r, regions) {
  const ctx = canvas.getContext('2d');
  const font = Math.max(11, Math.round(Math.max(r.width, r.height) / 36));
  ctx.font = `bold ${font}px system-ui, sans-serif`;
  for (const d of regions) {
    const k = r.labels.indexOf(d.label);
    const { x, y } = d.anchor;
    const w = ctx.measureText(d.label).width + 6;
    const left = Math.min(Math.max(0, x - w / 2), r.width - w);
    const top = Math.min(Math.max(0, y - font / 2 - 2), r.height - font - 4);
    ctx.fillStyle = rgb(r.colours, k);
    ctx.fillRect(left, top, w, font + 4);
    ctx.fillStyle = '#fff';
    ctx.fillText(d.label, left + 3, top + font);
  }
}

export function render(entry, { result: r, reused }, ms) {
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
export function renderDetect(entry, { result: r, detections, reused }, ms) {
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
export function renderGround(entry, { result: r, phrases, grounding, reused }, ms) {
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
export function renderClassify(entry, { ranked }, ms) {
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
export function renderGroups(entry, { groups, reused }, ms) {
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
