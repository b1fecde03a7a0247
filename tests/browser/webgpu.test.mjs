// The GPU path in the browser: the wasm library on Chromium's WebGPU (SwiftShader, headless) gives
// the reference label maps and the CPU path's answers; the page runs on WebGPU and says so.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serve, launch, newPage, safetensor, fixtures, outDir, loadFixtureModel, dropPhoto } from './harness.mjs';

let server, browser;
before(async () => { server = await serve(); browser = await launch(); });
after(async () => { await browser?.close(); server?.close(); });

/** In the page, through the npm package's API: loads the fixture model on each backend and segments. */
async function segmentInPage(page, { model, photo, labels, options, backends }) {
  return page.evaluate(async ({ model, photo, labels, options, backends }) => {
    const { Segmenter } = await import('/pkg/index.js');
    const blob = async (url) => (await fetch(url)).blob();
    const names = ['config.json', 'model.safetensors', 'tokenizer.json', 'preprocessor_config.json'];
    const files = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await blob(`/fixtures/${model}/${n}`)])));
    const image = await blob(`/fixtures/${photo}`);
    const adapter = await navigator.gpu?.requestAdapter();
    const info = adapter?.info;
    const out = { adapter: adapter ? { vendor: info.vendor, architecture: info.architecture, description: info.description,
      fallback: info.isFallbackAdapter ?? adapter.isFallbackAdapter } : null };
    for (const backend of backends) {
      const seg = await Segmenter.load({ files, backend });
      const runs = [];
      for (const o of options) {
        const started = performance.now();
        const r = await seg.segment(image, labels, o);
        runs.push({ ms: performance.now() - started, width: r.width, height: r.height,
          labelMap: Array.from(r.labelMap), scores: Array.from(r.scores), summary: r.summary });
      }
      out[backend] = { backend: seg.backend, capabilities: seg.capabilities, runs };
      seg.dispose();
    }
    return out;
  }, { model, photo, labels, options, backends });
}

test('WebGPU in the browser gives the reference label maps and the CPU path\'s answers', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/`);
  const meta = JSON.parse(await readFile(join(fixtures, 'tiny-3stage', 'photo.json'), 'utf8'));
  // NVlabs' inference, unrefined, as the reference ran it.
  const fixture = { shortSide: 40, window: meta.window, stride: meta.stride, refine: false };
  const got = await segmentInPage(page, {
    model: 'tiny-3stage',
    photo: 'tiny-3stage/photo.png',
    labels: meta.labels.join(', '),
    options: [
      { ...fixture, backgroundThreshold: meta.background_threshold },
      { ...fixture, backgroundThreshold: null },
    ],
    backends: ['webgpu', 'cpu'],
  });
  console.log('adapter:', JSON.stringify(got.adapter));
  assert.ok(got.adapter, 'navigator.gpu gave no adapter: is --enable-unsafe-webgpu set?');
  assert.match(got.webgpu.backend, /^GPU: /, got.webgpu.backend);
  // The typed report says the same: SwiftShader, a software adapter, through WebGPU.
  const gpu = got.webgpu.capabilities;
  assert.equal(gpu.device, 'gpu');
  assert.equal(gpu.software, true);
  assert.equal(`GPU: ${gpu.adapter}`, got.webgpu.backend);
  assert.equal(got.cpu.capabilities.device, 'cpu');
  assert.equal(got.cpu.capabilities.whyNotGpu, null, 'the CPU was asked for: no reason to give');
  assert.equal(got.cpu.backend, 'CPU');
  for (const [i, name] of ['photo_label_map', 'photo_label_map_nobg'].entries()) {
    const want = Array.from((await safetensor(join(fixtures, 'tiny-3stage', 'expected.safetensors'), name)).data);
    assert.deepEqual(got.webgpu.runs[i].labelMap, want, `WebGPU ${name}`);
    assert.deepEqual(got.cpu.runs[i].labelMap, want, `CPU ${name}`);
    console.log(`${name}: WebGPU ${got.webgpu.runs[i].ms.toFixed(0)} ms, CPU ${got.cpu.runs[i].ms.toFixed(0)} ms`);
  }
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('WebGPU and CPU agree over many overlapping windows and seven labels', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/`);
  const got = await segmentInPage(page, {
    model: 'tiny-3stage',
    photo: 'tiny-3stage/photo_big.png',
    labels: 'cat, dog, grass, sky, a red car, water, tree',
    options: [{ shortSide: 60, window: 40, stride: 20, backgroundThreshold: 0.2, refine: false }],
    backends: ['webgpu', 'cpu'],
  });
  const [g, c] = [got.webgpu.runs[0], got.cpu.runs[0]];
  assert.equal(g.width, 163);
  assert.equal(g.height, 101);
  let ties = 0;
  for (let i = 0; i < c.labelMap.length; i++) {
    // A differing label is allowed only where the two classes tie within float noise.
    if (g.labelMap[i] !== c.labelMap[i]) {
      assert.ok(Math.abs(g.scores[i] - c.scores[i]) <= 1e-4, `pixel ${i}: ${g.labelMap[i]} vs ${c.labelMap[i]}`);
      ties++;
    } else {
      assert.ok(Math.abs(g.scores[i] - c.scores[i]) <= 1e-4, `pixel ${i}: score ${g.scores[i]} vs ${c.scores[i]}`);
    }
  }
  assert.ok(ties * 1000 <= c.labelMap.length, `${ties} tied pixels`);
  assert.ok(c.summary.filter((s) => s.share > 0).length >= 2, 'the photo should show several classes');
  console.log(`163x101, 8 windows: ${ties} ties; WebGPU ${g.ms.toFixed(0)} ms, CPU ${c.ms.toFixed(0)} ms`);
  await page.close();
});

test('the page runs on WebGPU when asked, says so, and paints the dropped photo', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/?backend=webgpu`);
  await loadFixtureModel(page);
  assert.match(await page.textContent('#backend-used'), /Running on GPU: .* through WebGPU/);
  await page.fill('#labels', 'cat, dog, grass, sky');
  await dropPhoto(page, join(fixtures, 'tiny-3stage', 'photo_big.png'), 'street.png');
  await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null, { timeout: 300_000 });
  const text = await page.textContent('#results');
  assert.match(text, /street\.png \(\d+ ms\)/);
  assert.match(text, /(cat|dog|grass|sky|background) \d+\.\d %, confidence \d\.\d\d/);
  await page.screenshot({ path: join(outDir, 'page-webgpu.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('an int8 copy stays int8 on the GPU: a quarter of the bytes, and the CPU path\'s answers', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/`);
  const got = await page.evaluate(async () => {
    const { Segmenter } = await import('/pkg/index.js');
    const modelUrl = `${location.origin}/fixtures/tiny-3stage/`;
    const image = await (await fetch('/fixtures/tiny-3stage/photo_big.png')).blob();
    const options = { shortSide: 60, window: 40, stride: 20, backgroundThreshold: 0.2, refine: false };
    const out = {};
    for (const [name, load] of [['original', { cache: false }], ['int8', { keepAs: 'int8' }]]) {
      for (const backend of ['webgpu', 'cpu']) {
        const seg = await Segmenter.load({ modelUrl, backend, ...load });
        const r = await seg.segment(image, 'cat, dog, grass, sky, a red car, water, tree', options);
        out[`${name} ${backend}`] = { backend: seg.backend, memory: await seg.memory(), labelMap: Array.from(r.labelMap), scores: Array.from(r.scores) };
        seg.dispose();
      }
    }
    return out;
  });
  const [original, int8] = [got['original webgpu'], got['int8 webgpu']];
  assert.match(int8.backend, /^GPU: /, int8.backend);
  console.log(`weights on the GPU: original (f16-exact values) ${original.memory.weights.gpu} B, int8 ${int8.memory.weights.gpu} B`);
  assert.ok(int8.memory.weights.gpu < 0.6 * original.memory.weights.gpu, JSON.stringify([original.memory, int8.memory]));
  // As natively (tests/gpu.rs): the CPU path computes an int8 checkpoint's products in integers
  // over quantized activations, the GPU in f32 over the widened codes, and this random fixture's
  // scores lie close together, so the label maps are compared by share (natively 97 % alike with a
  // background threshold; a wrong product would leave chance agreement among seven labels).
  const cpu = got['int8 cpu'];
  const alike = cpu.labelMap.filter((v, i) => v === int8.labelMap[i]).length / cpu.labelMap.length;
  console.log(`int8, WebGPU vs CPU: ${(alike * 100).toFixed(2)} % of ${cpu.labelMap.length} pixels alike`);
  assert.ok(alike >= 0.75, `${(alike * 100).toFixed(2)} % of pixels alike`);
  assert.deepEqual(page.problems, []);
  await page.close();
});
