// The package against onnxruntime-web in each browser engine (Chromium, Firefox ESR, WebKitGTK),
// on one thread (WebKit gives pages no shared memory, so one thread is what every engine can run):
// one window of the full-size image encoder at 224 and 448, f32 and int8 (ours: `groupseg convert`'s
// copy; theirs: the q8 graph transformers.js users get), each timed as `./build.sh bench-web` times
// it (ours to a label map read back). Ours runs the module
// each engine loads (relaxed SIMD where the engine validates it, plain SIMD elsewhere), on the page's
// main thread; onnxruntime-web its `ort.wasm` bundle with graph optimisation on. Medians of the
// timed runs after warm-up, best of two alternating rounds; a fresh page for each measurement.
// Usage: node tools/bench/engines-speed.mjs OUT   (after ./build.sh bench-web has made OUT's models)
import { join, resolve } from 'node:path';
import { benchSite, inEachEngine, ORT_DIST, median, timeOurs, timePeer } from './pages.mjs';

const out = resolve(process.argv[2] ?? 'bench-out');
const site = await benchSite('engines-speed', { ort: ORT_DIST, model: join(out, 'model'), 'model-int8': join(out, 'model-int8'), onnx: join(out, 'onnx') });

// [side, weights, warm-up runs, timed runs]
const plan = [[224, 'f32', 3, 5], [448, 'f32', 2, 3], [224, 'int8', 3, 5], [448, 'int8', 2, 3]];

// Ours on the page's main thread: one thread in every engine.
const ours = (page, [side, weights, warm, runs]) => timeOurs(page, { entry: '/pkg/index.js', side, threads: 1, warm, runs, weights });
const peer = (page, [side, weights, warm, runs]) => timePeer(page, { side, threads: 1, warm, runs, weights });

const rows = [];
await inEachEngine(site, async (browser, freshPage) => {
  for (const item of plan) {
    // Two rounds, alternating ours and theirs so that drift in the machine's speed falls on both;
    // each side keeps its best round (as bench-web does).
    const best = { ours: Infinity, peer: Infinity };
    const seen = {};
    for (let round = 0; round < 2; round++) {
      for (const [who, run] of [['ours', ours], ['peer', peer]]) {
        const page = await freshPage();
        const r = await run(page, item);
        await page.close();
        best[who] = Math.min(best[who], median(r.times));
        seen[who] = r.module ?? r.where;
        console.error(`${browser.version} ${item[0]} ${item[1]}: ${who} ${r.times.map(Math.round).join(' ')} ms (${seen[who]})`);
      }
    }
    rows.push({ engine: browser.version, side: item[0], weights: item[1], module: seen.ours, ours: best.ours, peer: best.peer, peerVersion: seen.peer });
  }
});
console.log(`\nOne window, one thread, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (${rows[0]?.peerVersion ?? ''})\n`);
console.log('| engine | our module | weights | input | groupseg (ms) | onnxruntime-web (ms) | ratio |');
console.log('|---|---|---|---|---:|---:|---:|');
for (const r of rows) {
  const weights = r.weights === 'int8' ? 'int8 (ours) / q8 (theirs)' : 'f32';
  console.log(`| ${r.engine} | ${r.module} | ${weights} | ${r.side}×${r.side} | ${r.ours.toFixed(0)} | ${r.peer.toFixed(0)} | **${(r.ours / r.peer).toFixed(2)}** |`);
}
