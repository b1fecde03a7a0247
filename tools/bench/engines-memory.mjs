// The WebAssembly heap per browser engine (Chromium, Firefox ESR, WebKitGTK), for the full-size
// checkpoint held in f32 and as int8: after loading, and after segmenting one 448×448 window. Each
// row a fresh page (so a fresh module, whose memory grows and never shrinks), the package on the
// page's main thread (one thread: what WebKit runs everywhere), the weights streamed as they
// download (`cache: false`, so every engine reads them the same way and the token table is held).
// Usage: node tools/bench/engines-memory.mjs OUT   (OUT/model: e.g. ./build.sh bench's full-size model)
import { join, resolve } from 'node:path';
import { benchSite, inEachEngine } from './pages.mjs';

const out = resolve(process.argv[2] ?? 'bench-out');
const site = await benchSite('engines-memory', { model: join(out, 'model') });

const mb = (b) => (b / 1048576).toFixed(1);
const rows = [];
await inEachEngine(site, async (browser, freshPage) => {
  for (const keepAs of [null, 'int8']) {
    const page = await freshPage();
    const r = await page.evaluate(async (keepAs) => {
      const { Segmenter } = await import('/pkg/index.js');
      const s = await Segmenter.load({ backend: 'cpu', modelUrl: `${location.origin}/model/`, cache: false, keepAs });
      const loaded = await s.memory();
      const px = new Uint8ClampedArray(448 * 448 * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 7919) % 256));
      await s.segment(new ImageData(px, 448, 448), ['cat', 'sofa', 'window', 'floor'], { shortSide: 448, window: 448, stride: 448 });
      const after = await s.memory();
      const module = s.capabilities.module;
      s.dispose();
      return { loaded, after, module, relaxedSimd: s.capabilities.relaxedSimd };
    }, keepAs);
    rows.push({ engine: browser.version, weights: keepAs ?? 'f32', ...r });
    console.log(`${browser.version}, ${keepAs ?? 'f32'}: heap ${mb(r.loaded.heap)} MB loaded, ${mb(r.after.heap)} MB after a 448 window `
      + `(most live ${mb(r.after.peakLive)} MB; weights ${mb(r.after.weights.cpu)} MB; ${r.module}${r.relaxedSimd ? ', relaxed SIMD' : ''})`);
    await page.close();
  }
});
console.log(`\n| engine | weights | wasm heap loaded (MB) | after a 448 window (MB) | most ever live (MB) | weights held (MB) |`);
console.log('|---|---|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.engine} | ${r.weights} | ${mb(r.loaded.heap)} | ${mb(r.after.heap)} | ${mb(r.after.peakLive)} | ${mb(r.after.weights.cpu)} |`);
}
