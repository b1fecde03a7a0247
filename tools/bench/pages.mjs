// What the browser benchmarks share: a site serving the package beside what a benchmark needs, and
// one timed window of ours and of onnxruntime-web's in a page (any engine's: tests/browser/engines.mjs).
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { root, serve } from '../../tests/browser/harness.mjs';
import { ENGINES, openEngine } from '../../tests/browser/engines.mjs';

/** A fresh folder test-out/NAME holding the package (pkg/), each `links` entry (name → path) and,
 * unless they name one, an empty page; its path. */
export async function benchSite(name, links = {}) {
  const site = join(root, 'test-out', name);
  await rm(site, { recursive: true, force: true });
  await mkdir(site, { recursive: true });
  if (!links['index.html']) await writeFile(join(site, 'index.html'), `<!doctype html><title>${name}</title><link rel="icon" href="data:,">`);
  for (const [link, target] of Object.entries({ pkg: join(root, 'www', 'pkg'), ...links })) await symlink(target, join(site, link));
  return site;
}

/** onnxruntime-web's bundles, as npm installs them for tools/bench/web. */
export const ORT_DIST = join(root, 'tools', 'bench', 'web', 'node_modules', 'onnxruntime-web', 'dist');

/**
 * Serves `site` and calls `visit(browser, freshPage)` in each engine (ENGINES=chromium,firefox,…
 * picks some; all three by default), `freshPage()` opening a new page at the site's root (close it
 * when done); each engine is closed after its visit.
 */
export async function inEachEngine(site, visit) {
  const engines = process.env.ENGINES ? process.env.ENGINES.split(',') : ENGINES;
  const server = await serve(site);
  try {
    for (const engine of engines) {
      const browser = await openEngine(engine);
      try {
        await visit(browser, async () => {
          const page = await browser.newPage();
          await page.goto(`${server.url}/`);
          return page;
        });
      } finally {
        await browser.close();
      }
    }
  } finally {
    server.close();
  }
}

export const median = (t) => [...t].sort((a, b) => a - b)[Math.floor(t.length / 2)];

/**
 * Ours, timed in `page` from the image to a label map read back (encode one `side` window, then the
 * composition with a label already embedded): `{times, where, module}`. `entry` is the package's
 * worker or main-thread entry; the model is the site's model/ (f32) or model-int8/.
 */
export function timeOurs(page, { entry = '/pkg/worker.js', backend = 'wasm', side, threads, warm, runs, weights }) {
  return page.evaluate(async ({ entry, backend, side, threads, warm, runs, weights }) => {
    const { Segmenter } = await import(entry);
    const model = weights === 'int8' ? 'model-int8' : 'model';
    const s = await Segmenter.load({ backend: backend === 'wasm' ? 'cpu' : 'webgpu', modelUrl: `${location.origin}/${model}/`, cache: false, ...(threads ? { threads } : {}) });
    if (backend === 'wasm' && threads && s.threads !== threads) throw new Error(`groupseg ran on ${s.threads} threads, not ${threads}: ${s.notes}`);
    const px = new Uint8ClampedArray(side * side * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 7919) % 256));
    const img = new ImageData(px, side, side);
    const once = async () => {
      const t = performance.now();
      const e = await s.encode(img, { shortSide: side, window: side, stride: side });
      await s.segment(e, ['cat']);
      const ms = performance.now() - t;
      e.dispose();
      return ms;
    };
    for (let i = 0; i < warm; i++) await once();
    const times = [];
    for (let i = 0; i < runs; i++) times.push(await once());
    const module = `${s.capabilities.module}, ${s.capabilities.relaxedSimd ? 'relaxed SIMD' : 'plain SIMD'}`;
    const where = s.backend;
    s.dispose();
    return { times, where, module };
  }, { entry, backend, side, threads, warm, runs, weights });
}

/** onnxruntime-web on the site's onnx/ graph of the image encoder (the q8 one for int8), timed from
 * the tensor to its outputs read back: `{times, where}`. */
export function timePeer(page, { backend = 'wasm', side, threads, warm, runs, weights }) {
  return page.evaluate(async ({ backend, side, threads, warm, runs, weights }) => {
    const ort = await import(backend === 'webgpu' ? '/ort/ort.webgpu.min.mjs' : '/ort/ort.wasm.min.mjs');
    ort.env.wasm.wasmPaths = `${location.origin}/ort/`;
    ort.env.logLevel = 'error'; // its notes on node placement are not problems
    if (threads) ort.env.wasm.numThreads = threads;
    const graph = `/onnx/vision_${side}${weights === 'int8' ? '_q8' : ''}.onnx`;
    const session = await ort.InferenceSession.create(graph, { executionProviders: [backend], graphOptimizationLevel: 'all', logSeverityLevel: 3 });
    const x = new ort.Tensor('float32', Float32Array.from({ length: 3 * side * side }, (_, i) => ((i * 7919) % 256) / 128 - 1), [1, 3, side, side]);
    const once = async () => {
      const t = performance.now();
      const r = await session.run({ pixel_values: x });
      for (const v of Object.values(r)) await v.getData(); // on the CPU: a no-op; on the GPU: read back
      return performance.now() - t;
    };
    for (let i = 0; i < warm; i++) await once();
    const times = [];
    for (let i = 0; i < runs; i++) times.push(await once());
    await session.release();
    return { times, where: `onnxruntime-web ${ort.env.versions.web}` };
  }, { backend, side, threads, warm, runs, weights });
}
