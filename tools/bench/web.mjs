// ./build.sh bench-web: groupseg's package against onnxruntime-web (npm) on the same full-size random
// GroupViT, in the same headless Chromium (Debian's), on a cross-origin isolated page: the image
// encoder on one window at 224 and 448 pixels, WebAssembly on 1 and 2 threads, in f32 and in int8
// (ours: the `groupseg convert --to int8` copy, integer products; onnxruntime-web: the q8 copy
// transformers.js loads by default, from onnx_export.py), and WebGPU on the adapter Chromium has
// (SwiftShader on a machine without a GPU). Each peer is loaded as its users get it at its fastest:
// onnxruntime-web's own bundle per backend (ort.wasm, ort.webgpu), graph optimisation on. Every figure is a median over runs
// after warm-up, in a fresh page per measurement (onnxruntime-web fixes its threads per page), rounds
// alternating between the two so that drift in this machine's speed falls on both; each side keeps
// its best round. Ours is timed from the image to a label map read back (encode, then the
// composition with a label already embedded), onnxruntime-web's from the tensor to its outputs read
// back. Then the memory of an int8 copy: the page's WebAssembly heap and the most ever live in it,
// after the first visit converts the download, after a later visit loads the kept copy, and after
// it segments a 448 window (1 and 2 threads) or a 597 × 448 photo.
// Prints Markdown tables (ratios, memory); writes OUT/bench-web.json and OUT/bench-web.md.
// Usage: node web.mjs OUT          (OUT holds model/ and onnx/, from reference.py and onnx_export.py)
import { writeFile, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { cpus } from 'node:os';
import { serve, launch, newPage } from '../../tests/browser/harness.mjs';
import { benchSite, ORT_DIST, median, timeOurs, timePeer } from './pages.mjs';

const out = resolve(process.argv[2] ?? 'bench-out');
const site = await benchSite('bench-web', { ort: ORT_DIST, model: join(out, 'model'), 'model-int8': join(out, 'model-int8'), onnx: join(out, 'onnx') });

const plan = [
  // [backend, side, threads, warm-up runs, timed runs, rounds, weights]; a software adapter takes tens of
  // seconds a run, so WebGPU gets few: at 448 one run a round, in two rounds, since one slow run
  // (nearly twice the next one's time) was once the whole figure.
  // Warm-up is generous: onnxruntime-web on 2 threads takes its first 4 runs at 224 at twice its
  // steady time.
  ...['f32', 'int8'].flatMap((weights) => [
    ['wasm', 224, 1, 6, 7, 2, weights], ['wasm', 224, 2, 6, 7, 2, weights], ['wasm', 448, 1, 3, 5, 2, weights], ['wasm', 448, 2, 3, 5, 2, weights],
  ]),
  ['webgpu', 224, null, 1, 2, 1, 'f32'], ['webgpu', 448, null, 1, 1, 2, 'f32'],
];
// BENCH_ONLY=wasm, webgpu, int8 or memory: one part (the README's tables come from a run of all).
const only = process.env.BENCH_ONLY;
if (only) plan.splice(0, plan.length, ...plan.filter((p) => p[0] === only || p[6] === only));

const ours = (page, [backend, side, threads, warm, runs, , weights]) => timeOurs(page, { backend, side, threads, warm, runs, weights });
const peer = (page, [backend, side, threads, warm, runs, , weights]) => timePeer(page, { backend, side, threads, warm, runs, weights });

// The int8 copy's memory: each visit a fresh page, so a fresh module, in one browser context, so
// one Cache Storage. Visits 0, 1 and 3 on one thread (the page's module); visit 2 in
// groupseg/worker on 2 threads, whose workers share one memory. Visits 1 and 2 segment one 448
// window, visit 3 a 597 × 448 photo with the default geometry (two overlapping windows).
async function memory(page, visit) {
  return page.evaluate(async (visit) => {
    const { Segmenter } = await import(visit === 2 ? '/pkg/worker.js' : '/pkg/index.js');
    const modelUrl = `${location.origin}/model/`;
    if (visit === 0) await Segmenter.clearCache();
    const threads = visit === 2 ? 2 : 1;
    const s = await Segmenter.load({ backend: 'cpu', modelUrl, keepAs: 'int8', threads });
    if (s.threads !== threads) throw new Error(`${s.threads} threads, not ${threads}: ${s.notes}`);
    const name = ['first visit (downloads, converts, keeps int8)', 'later visit (loads the kept int8 copy)', 'later visit, groupseg/worker on 2 threads', 'later visit'][visit];
    const rows = visit === 3 ? [] : [{ visit: name, ...(await s.memory()) }];
    const photo = (w, h) => new ImageData(new Uint8ClampedArray(w * h * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 7919) % 256)), w, h);
    const labels = ['cat', 'sofa', 'window', 'floor'];
    if (visit === 1 || visit === 2) {
      await s.segment(photo(448, 448), labels, { shortSide: 448, window: 448, stride: 448 });
      rows.push({ visit: `${name}, after segmenting one 448×448 window (4 labels)`, ...(await s.memory()) });
    }
    if (visit === 3) {
      await s.segment(photo(597, 448), labels);
      rows.push({ visit: `${name}, after segmenting a 597×448 photo (default geometry: two overlapping windows; 4 labels)`, ...(await s.memory()) });
      await Segmenter.clearCache();
    }
    s.dispose();
    return rows;
  }, visit);
}

const server = await serve(site);
const browser = await launch();
const results = [];
const memoryRows = [];
try {
  for (const item of plan) {
    const best = { ours: Infinity, peer: Infinity };
    let where = {};
    for (let round = 0; round < item[5]; round++) {
      for (const [side, run] of [['ours', ours], ['peer', peer]]) {
        const page = await newPage(browser);
        await page.goto(`${server.url}/`);
        const r = await run(page, item);
        if (page.problems.length) throw new Error(`${side} ${item}: ${page.problems.join('; ')}`);
        await page.close();
        best[side] = Math.min(best[side], median(r.times));
        where[side] = r.where;
        console.error(`${item[0]} ${item[1]} ${item[2] ?? ''} ${item[6]}: ${side} ${r.times.map(Math.round).join(' ')} ms`);
      }
    }
    results.push({ backend: item[0], side: item[1], threads: item[2], weights: item[6], ours: best.ours, peer: best.peer, ratio: best.ours / best.peer, where });
  }
  if (!only || only === 'memory') {
    // A fresh browser: its memory and storage hold nothing of the runs above.
    const fresh = await launch();
    try {
      const context = await fresh.newContext();
      for (const visit of [0, 1, 2, 3]) {
        const page = await context.newPage();
        const problems = [];
        page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
        await page.goto(`${server.url}/`);
        memoryRows.push(...(await memory(page, visit)));
        if (problems.length) throw new Error(`memory: ${problems.join('; ')}`);
        await page.close();
      }
    } finally {
      await fresh.close();
    }
  }
} finally {
  await browser.close();
  server.close();
}

const chromium = (await import('node:child_process')).execFileSync('/usr/bin/chromium', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
const when = new Date().toISOString().slice(0, 16).replace('T', ' ');
const weightsOf = (r) => (r.weights === 'int8' ? 'int8 (ours) / q8 (onnxruntime-web)' : 'f32');
const rows = results.map((r) => `| ${r.backend === 'wasm' ? `WebAssembly, ${r.threads} thread${r.threads > 1 ? 's' : ''}` : 'WebGPU'} | ${weightsOf(r)} | ${r.side}×${r.side} | ${r.ours.toFixed(0)} | ${r.peer.toFixed(0)} | ${r.ratio.toFixed(2)} |`);
const mb = (b) => (b / 1e6).toFixed(1);
const memoryTable = memoryRows.length ? [
  '',
  `Full-size checkpoint kept as int8, WebAssembly, ${chromium}, ${when} UTC`,
  '',
  '| page | wasm heap (MB) | most ever live in it (MB) | weights in it (MB) | left in the file on disk (MB) |',
  '|---|---:|---:|---:|---:|',
  ...memoryRows.map((r) => `| ${r.visit} | ${mb(r.heap)} | ${mb(r.peakLive)} | ${mb(r.weights.cpu)} | ${mb(r.weights.inFile)} |`),
] : [];
const table = [
  `Image encoder, one window, full-size GroupViT (random weights), ${chromium}, ${cpus().length} × ${cpus()[0].model.trim()}, ${when} UTC; WebGPU adapter: ${results.find((r) => r.backend === 'webgpu')?.where.ours ?? 'none'}`,
  '',
  '| backend | weights | input | groupseg (ms) | onnxruntime-web (ms) | ratio |',
  '|---|---|---|---:|---:|---:|',
  ...rows,
  ...memoryTable,
].join('\n');
console.log(table);
await writeFile(join(out, 'bench-web.json'), JSON.stringify({ chromium, when, results, memory: memoryRows }, null, 2));
await writeFile(join(out, 'bench-web.md'), `${table}\n`);
