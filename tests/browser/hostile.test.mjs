// Hostile input and storage trouble in the page: a header bomb is refused by name and the tab goes
// on; a full Cache Storage still loads the model (with a note); a model a link names is not kept
// unless the person keeps it; the model kept on the last visit comes back on the next one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { serve, launch, newPage, fixtures, outDir, dropPhoto, modelSettled, done } from './harness.mjs';

let server, browser;
before(async () => { server = await serve(); browser = await launch(); });
after(async () => { await browser?.close(); server?.close(); });

test('a header-bomb photo is refused by name, the tab lives and the next photo is painted', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/?backend=cpu`);
  await modelSettled(page, 'demo');
  // 100000 × 100000 in its PNG header: ten gigapixels if it were decoded.
  await dropPhoto(page, join(fixtures, 'hostile', 'bomb-png-100000.png'), 'bomb.png');
  await page.waitForSelector('.result .error', { timeout: 60_000 });
  const error = await page.textContent('.result .error');
  assert.match(error, /^bomb\.png: .*larger than groupseg decodes.*megapixels/, error);
  await dropPhoto(page, join(fixtures, 'shapes-eval', '003.png'), 'scene.png');
  await done(page);
  assert.equal(await page.locator('.result canvas').count(), 1, 'the scene after the bomb is painted');
  await page.screenshot({ path: join(outDir, 'page-header-bomb.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
});

test('a photo over the byte cap is refused by name before it is read, and the next photo is painted', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/?backend=cpu`);
  await modelSettled(page, 'demo');
  // 300 MB of a PNG's signature and zeros: past the 256 MB cap, never copied into the module.
  const dataTransfer = await page.evaluateHandle(() => {
    const head = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
    const dt = new DataTransfer();
    dt.items.add(new File([head, new Uint8Array(300 << 20)], 'huge.png', { type: 'image/png' }));
    return dt;
  });
  await page.dispatchEvent('#drop', 'drop', { dataTransfer });
  await page.waitForSelector('.result .error', { timeout: 60_000 });
  const error = await page.textContent('.result .error');
  assert.match(error, /^huge\.png: the file is 301 MB; photos of at most 256 MB are read/, error);
  await dropPhoto(page, join(fixtures, 'shapes-eval', '003.png'), 'scene.png');
  await done(page);
  assert.equal(await page.locator('.result canvas').count(), 1, 'the scene after the huge file is painted');
  assert.deepEqual(page.problems, []);
});

test('with Cache Storage full, a downloaded model still loads and the page says it was not kept', async () => {
  const page = await newPage(browser);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.url, quotaSize: 4096 });
  const model = `${server.url}/fixtures/tiny-3stage/`;
  await page.goto(`${server.url}/?backend=cpu&model=${encodeURIComponent(model)}`);
  await modelSettled(page, 'url');
  assert.equal(await page.evaluate(() => document.body.dataset.model), 'ready', await page.textContent('#status'));
  assert.match(await page.textContent('#status'), /could not be kept in the browser's Cache Storage/);
  assert.deepEqual(page.problems, []);
});

test('a model a link names is loaded for that visit only, unless the person keeps it', async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const model = `${server.url}/fixtures/tiny-2stage/`;
  const linked = await context.newPage();
  await linked.goto(`${server.url}/?backend=cpu&model=${encodeURIComponent(model)}`);
  await modelSettled(linked, 'url');
  assert.equal(await linked.evaluate(() => document.body.dataset.model), 'ready');
  assert.equal(await linked.isVisible('#keep-model'), true, 'the page offers to keep the linked model');
  await linked.close();
  const next = await context.newPage();
  await next.goto(`${server.url}/?backend=cpu`);
  await modelSettled(next, 'demo');
  assert.match(await next.textContent('#backend-used'), /Shapes demo/, 'the link did not choose the next visit');
  await context.close();
});

test('the model of the last visit, kept and cached, is loaded again on the next visit', async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const model = `${server.url}/fixtures/tiny-3stage/`;
  const first = await context.newPage();
  await first.goto(`${server.url}/?backend=cpu&model=${encodeURIComponent(model)}`);
  await modelSettled(first, 'url');
  assert.equal(await first.evaluate(() => document.body.dataset.model), 'ready');
  await first.click('#keep-model');
  assert.match(await first.textContent('#status'), /will be loaded on your next visits/);
  await first.close();
  const weightsFetched = () => server.requests.filter((r) => r === '/fixtures/tiny-3stage/model.safetensors').length;
  const before = weightsFetched();
  const next = await context.newPage();
  await next.goto(`${server.url}/?backend=cpu`);
  await modelSettled(next, 'url');
  assert.equal(await next.evaluate(() => document.body.dataset.model), 'ready');
  assert.doesNotMatch(await next.textContent('#backend-used'), /Shapes demo/);
  assert.equal(weightsFetched(), before, 'the weights came from Cache Storage');
  await context.close();
});

test('a crafted segmentation whose size wraps on wasm32 is refused, and the module goes on', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/`);
  const out = await page.evaluate(async () => {
    const { Segmenter } = await import('/pkg/index.js');
    const s = await Segmenter.load({ backend: 'cpu' });
    const side = 256;
    const px = new Uint8ClampedArray(side * side * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 7919) % 256));
    const seg = await s.segment(new ImageData(px, side, side), ['red square', 'blue star']);
    // 65536 × 65537 is 2³² + 65536: on wasm32 it wraps to this map's 65536 pixels.
    const crafted = Object.assign(Object.create(Object.getPrototypeOf(seg)), seg, { width: 65536, height: 65537 });
    const refused = await crafted.detect().then(() => 'ran', (e) => e.message);
    return { refused, after: (await seg.detect()).length >= 0 };
  });
  assert.match(out.refused, /65536×65537 segmentation is larger than any photo/);
  assert.equal(out.after, true, 'the module still answers');
  assert.deepEqual(page.problems, []);
});

test('a model over the weights cap is refused before its download, by name, and the next load works', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/`);
  const out = await page.evaluate(async () => {
    const { Segmenter } = await import('/pkg/worker.js');
    const tiny = `${location.origin}/fixtures/tiny-2stage/`;
    const refused = await Segmenter.load({ modelUrl: tiny, backend: 'cpu', cache: false, maxWeightsBytes: 100_000 })
      .then(() => 'loaded', (e) => e.message);
    const fromFile = await Segmenter.load({
      files: { 'config.json': new File(['{}'], 'config.json'), 'tokenizer.json': new File(['{}'], 'tokenizer.json'),
        'model.safetensors': new File([new Uint8Array(200_000)], 'model.safetensors') },
      backend: 'cpu', maxWeightsBytes: 100_000,
    }).then(() => 'loaded', (e) => e.message);
    const s = await Segmenter.load({ modelUrl: tiny, backend: 'cpu', cache: false });
    const ok = s.backend;
    s.dispose();
    return { refused, fromFile, ok };
  });
  assert.match(out.refused, /^Could not load .*tiny-2stage\/model\.safetensors: the weights file is 0\.4 MB; this load takes \(maxWeightsBytes\) weights files of at most 0\.1 MB/, out.refused);
  assert.match(out.fromFile, /^model\.safetensors: the weights file is 0\.2 MB; this load takes \(maxWeightsBytes\)/, out.fromFile);
  assert.match(out.ok, /^CPU/);
  assert.deepEqual(page.problems, []);
});
