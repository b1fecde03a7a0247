// The package against onnxruntime-web in each browser engine (Chromium, Firefox ESR, WebKitGTK),
// on one thread (WebKit gives pages no shared memory, so one thread is what every engine can run):
// one window of the full-size image encoder at 224 and 448, f32 and int8 (ours: `groupseg convert`'s
// copy; theirs: the q8 graph transformers.js users get), timed to the result. Ours runs the module
// each engine loads (relaxed SIMD where the engine validates it, plain SIMD elsewhere), on the page's
// main thread; onnxruntime-web its `ort.wasm` bundle with graph optimisation on. Medians of the
// timed runs after warm-up; a fresh page for each measurement.
// Usage: node tools/bench/engines-speed.mjs OUT   (after ./build.sh bench-web has made OUT's models)
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { serve, root } from '../../tests/browser/harness.mjs';
import { ENGINES, openEngine } from '../../tests/browser/engines.mjs';

const out = resolve(process.argv[2] ?? 'bench-out');
const site = join(root, 'test-out', 'engines-speed');
await rm(site, { recursive: true, force: true });
await mkdir(site, { recursive: true });
await writeFile(join(site, 'index.html'), '<!doctype html><title>engines-speed</title><link rel="icon" href="data:,">');
for (const [link, target] of [['pkg', join(root, 'www', 'pkg')], ['ort', join(root, 'tools', 'bench', 'web', 'node_modules', 'onnxruntime-web', 'dist')],
  ['model', join(out, 'model')], ['model-int8', join(out, 'model-int8')], ['onnx', join(out, 'onnx')]]) {
  await symlink(target, join(site, link));
}

const engines = process.env.ENGINES ? process.env.ENGINES.split(',') : ENGINES;
// [side, weights, warm-up runs, timed runs]
const plan = [[224, 'f32', 3, 5], [448, 'f32', 2, 3], [224, 'int8', 3, 5], [448, 'int8', 2, 3]];

function ours(page, [side, weights, warm, runs]) {
  return page.evaluate(async ({ side, weights, warm, runs }) => {
    const { Segmenter } = await import('/pkg/index.js');
    const s = await Segmenter.load({ backend: 'cpu', modelUrl: `${location.origin}/${weights === 'int8' ? 'model-int8' : 'model'}/`, cache: false, threads: 1 });
    const px = new Uint8ClampedArray(side * side * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 7919) % 256));
    const img = new ImageData(px, side, side);
    const once = async () => {
      const t = performance.now();
      const e = await s.encode(img, { shortSide: side, window: side, stride: side });
      const ms = performance.now() - t;
      e.dispose();
      return ms;
    };
    for (let i = 0; i < warm; i++) await once();
    const times = [];
    for (let i = 0; i < runs; i++) times.push(await once());
    const module = `${s.capabilities.module}${s.capabilities.relaxedSimd ? ', relaxed SIMD' : ', plain SIMD'}`;
    s.dispose();
    return { times, module };
  }, { side, weights, warm, runs });
}

function peer(page, [side, weights, warm, runs]) {
  return page.evaluate(async ({ side, weights, warm, runs }) => {
    const ort = await import('/ort/ort.wasm.min.mjs');
    ort.env.wasm.wasmPaths = `${location.origin}/ort/`;
    ort.env.wasm.numThreads = 1;
    ort.env.logLevel = 'error';
    const session = await ort.InferenceSession.create(`/onnx/vision_${side}${weights === 'int8' ? '_q8' : ''}.onnx`, { executionProviders: ['wasm'], graphOptimizationLevel: 'all', logSeverityLevel: 3 });
    const x = new ort.Tensor('float32', Float32Array.from({ length: 3 * side * side }, (_, i) => ((i * 7919) % 256) / 128 - 1), [1, 3, side, side]);
    const once = async () => {
      const t = performance.now();
      await session.run({ pixel_values: x });
      return performance.now() - t;
    };
    for (let i = 0; i < warm; i++) await once();
    const times = [];
    for (let i = 0; i < runs; i++) times.push(await once());
    await session.release();
    return { times, module: `onnxruntime-web ${ort.env.versions.web}` };
  }, { side, weights, warm, runs });
}

const median = (t) => [...t].sort((a, b) => a - b)[Math.floor(t.length / 2)];
const server = await serve(site);
const rows = [];
try {
  for (const engine of engines) {
    const browser = await openEngine(engine);
    try {
      for (const item of plan) {
        const r = {};
        for (const [who, run] of [['ours', ours], ['peer', peer]]) {
          const page = await browser.newPage();
          await page.goto(`${server.url}/`);
          r[who] = await run(page, item);
          await page.close();
          console.error(`${browser.version} ${item[0]} ${item[1]}: ${who} ${r[who].times.map(Math.round).join(' ')} ms (${r[who].module})`);
        }
        rows.push({ engine: browser.version, side: item[0], weights: item[1], module: r.ours.module, ours: median(r.ours.times), peer: median(r.peer.times), peerVersion: r.peer.module });
      }
    } finally {
      await browser.close();
    }
  }
} finally {
  server.close();
}
console.log(`\nOne window, one thread, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (${rows[0]?.peerVersion ?? ''})\n`);
console.log('| engine | our module | weights | input | groupseg (ms) | onnxruntime-web (ms) | ratio |');
console.log('|---|---|---|---|---:|---:|---:|');
for (const r of rows) {
  const weights = r.weights === 'int8' ? 'int8 (ours) / q8 (theirs)' : 'f32';
  console.log(`| ${r.engine} | ${r.module} | ${weights} | ${r.side}×${r.side} | ${r.ours.toFixed(0)} | ${r.peer.toFixed(0)} | **${(r.ours / r.peer).toFixed(2)}** |`);
}
