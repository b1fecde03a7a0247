// What refinement costs in the browser beside the image encoder, as `cargo run --release --example
// refine-cost` measures it natively: the package in Debian's Chromium on a cross-origin isolated
// page, a full-size random checkpoint, one 448 × 448 window and 8 labels; WebAssembly on 1 and 2
// threads, and WebGPU on the adapter Chromium has (SwiftShader without a GPU: there only the ratio
// means anything). The photo is encoded (timed to the read-back of an unrefined labelling, less
// that labelling's median), then labelled with refinement off and on, alternating, each to its
// label map read back; medians.
// Usage: cargo run --release --example refine-cost -- --keep OUT/model && node refine-web.mjs OUT
import { join, resolve } from 'node:path';
import { serve, launch, newPage } from '../../tests/browser/harness.mjs';
import { benchSite, median } from './pages.mjs';

const out = resolve(process.argv[2] ?? 'bench-out');
const site = await benchSite('refine-web', { model: join(out, 'model') });

// [backend, threads, encoder runs, labelling runs of each kind]
const plan = [['wasm', 1, 3, 7], ['wasm', 2, 3, 7], ['webgpu', null, 1, 3]];
// REFINE_WEB_ONLY=wasm or webgpu: one part.
if (process.env.REFINE_WEB_ONLY) plan.splice(0, plan.length, ...plan.filter((p) => p[0] === process.env.REFINE_WEB_ONLY));
const server = await serve(site);
const browser = await launch();
const rows = [];
try {
  for (const [backend, threads, encodes, labellings] of plan) {
    const page = await newPage(browser);
    await page.goto(`${server.url}/`);
    const r = await page.evaluate(async ({ backend, threads, encodes, labellings }) => {
      const { Segmenter } = await import('/pkg/worker.js');
      const s = await Segmenter.load({ backend: backend === 'wasm' ? 'cpu' : 'webgpu', modelUrl: `${location.origin}/model/`, cache: false, ...(threads ? { threads } : {}) });
      if (backend === 'wasm' && s.threads !== threads) throw new Error(`${s.threads} threads, not ${threads}: ${s.notes}`);
      const px = new Uint8ClampedArray(448 * 448 * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 7919) % 256));
      const img = new ImageData(px, 448, 448);
      const geometry = { shortSide: 448, window: 448, stride: 448 };
      const labels = ['cat', 'dog', 'sofa', 'window', 'floor', 'wall', 'plant', 'lamp'];
      const encodeTimes = [];
      let e = null;
      // Encoding returns before a GPU has finished: each is timed through an unrefined labelling's
      // read-back, whose own median is taken off below.
      for (let i = 0; i <= encodes; i++) {
        e?.dispose();
        const t = performance.now();
        e = await s.encode(img, geometry);
        await s.segment(e, labels, { refine: false });
        if (i > 0) encodeTimes.push(performance.now() - t);
      }
      const times = { off: [], on: [] };
      for (let i = 0; i <= labellings; i++) {
        for (const refine of [false, true]) {
          const t = performance.now();
          await s.segment(e, labels, { refine });
          if (i > 0) times[refine ? 'on' : 'off'].push(performance.now() - t);
        }
      }
      const where = s.backend;
      e.dispose();
      s.dispose();
      return { encodeTimes, times, where };
    }, { backend, threads, encodes, labellings });
    await page.close();
    const [off, on] = [median(r.times.off), median(r.times.on)];
    const enc = median(r.encodeTimes) - off;
    rows.push({ backend: `${backend}${threads ? `, ${threads} thread${threads > 1 ? 's' : ''}` : ''} (${r.where})`, enc, off, on });
    console.error(JSON.stringify(rows.at(-1)));
  }
} finally {
  await browser.close();
  server.close();
}
console.log('| backend | encoder (ms) | labelling, unrefined (ms) | refined (ms) | refinement (ms) | share of the encoder |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.backend} | ${r.enc.toFixed(0)} | ${r.off.toFixed(1)} | ${r.on.toFixed(1)} | ${(r.on - r.off).toFixed(1)} | ${((100 * (r.on - r.off)) / r.enc).toFixed(1)} % |`);
}
