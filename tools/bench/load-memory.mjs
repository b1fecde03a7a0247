// What loading a checkpoint costs the browser's memory beside the weights file: the package in
// Debian's Chromium on a cross-origin isolated page, its worker loading OUT/model on the CPU path,
// the renderer processes' resident memory sampled every 20 ms from before the load to after it
// (JavaScript, the WebAssembly memory and the browser's own buffers together), less what they held
// before. Three loads, each in a fresh browser: a first visit (downloaded into Cache Storage and
// streamed from there), a later visit (from Cache Storage), and `cache: false` (streamed as it
// downloads).
// Usage: node tools/bench/load-memory.mjs OUT   (OUT/model: e.g. ./build.sh bench's full-size model)
// LOAD_MEMORY_KEEP=int8 (or f16, null): the loads' keepAs (default: the package's, 'auto').
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { serve, launch, newPage } from '../../tests/browser/harness.mjs';
import { benchSite } from './pages.mjs';

const out = resolve(process.argv[2] ?? 'bench-out');
// LOAD_MEMORY_PKG: another build of the package to compare with.
const site = await benchSite('load-memory', { model: join(out, 'model'), ...(process.env.LOAD_MEMORY_PKG ? { pkg: process.env.LOAD_MEMORY_PKG } : {}) });
const weights = (await stat(join(out, 'model', 'model.safetensors'))).size;

/** Resident kB of Chromium's renderer processes (where the page and its workers run). */
async function rendererKb() {
  let kb = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmd.includes('chromium') || !cmd.includes('--type=renderer')) continue;
      const rss = (await readFile(`/proc/${pid}/status`, 'utf8')).match(/VmRSS:\s+(\d+)/);
      if (rss) kb += Number(rss[1]);
    } catch { /* gone meanwhile */ }
  }
  return kb;
}

const server = await serve(site);
const mb = (b) => (b / 1048576).toFixed(1);
const keepAs = process.env.LOAD_MEMORY_KEEP === 'null' ? null : process.env.LOAD_MEMORY_KEEP;
console.log(`weights file: ${mb(weights)} MB (${out}/model), keepAs ${keepAs === undefined ? 'the default' : keepAs}`);
const visits = [['first visit (Cache Storage)', true, false], ['later visit (from Cache Storage)', true, true], ['cache: false', false, false]];
let context = null;
let browser = null;
for (const [name, cache, again] of visits) {
  if (!again) {
    await browser?.close();
    browser = await launch();
    context = await browser.newContext();
  }
  const page = await context.newPage();
  await page.goto(`${server.url}/`);
  const before = await rendererKb();
  let peak = before;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, await rendererKb());
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const memory = await page.evaluate(async ({ cache, keepAs }) => {
    const { Segmenter } = await import('/pkg/worker.js');
    const s = await Segmenter.load({ modelUrl: `${location.origin}/model/`, backend: 'cpu', cache, threads: 1, keepAs });
    const m = await s.memory();
    globalThis.kept = s;
    return m;
  }, { cache, keepAs });
  const after = await rendererKb();
  sampling = false;
  await sampler;
  const rise = (peak - before) * 1024;
  console.log(`${name}: peak rise ${mb(rise)} MB = ${(rise / weights).toFixed(2)} × the weights file; `
    + `after the load ${mb((after - before) * 1024)} MB; WebAssembly memory ${mb(memory.heap)} MB (at most ${mb(memory.peakLive)} MB `
    + `allocated at once, ${mb(memory.live)} MB now, of which weights ${mb(memory.weights.cpu)} MB)`);
  await page.close();
}
await browser?.close();
server.close();
