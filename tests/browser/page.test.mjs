// The page as a person uses it, on the CPU path: the painted label map equals the native CLI's,
// bad files and bad model URLs get plain-words errors without breaking the page, and a model
// loaded from a URL is served from Cache Storage on the next visit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  serve, launch, newPage, fixtures, outDir, root, loadFixtureModel, dropPhoto, modelSettled, compareMask, cli, done,
} from './harness.mjs';

let server, browser;
before(async () => { server = await serve(); browser = await launch(); });
after(async () => { await browser?.close(); server?.close(); });

const model = join(fixtures, 'tiny-3stage');
const labels = 'cat, dog, grass, sky';

test('the painted label map equals the native CLI\'s for the same model, photo and labels', async () => {
  const photo = join(model, 'photo_big.png');
  const out = join(outDir, 'cli');
  execFileSync(cli(), ['segment', photo, '--model', model, '--labels', labels, '--no-background', '--backend', 'cpu',
    '--out', out], { stdio: 'inherit' });
  const page = await newPage(browser);
  await page.goto(`${server.url}/?backend=cpu`);
  await loadFixtureModel(page);
  // Served cross-origin isolated: the page's worker runs WebAssembly on every core.
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  assert.equal(await page.textContent('#backend-used'), `Running on CPU, ${cores} thread${cores === 1 ? '' : 's'}.`);
  await page.fill('#labels', labels);
  await page.click('summary'); // "More" label options
  await page.check('#no-background');
  await dropPhoto(page, photo, 'photo_big.png');
  await done(page);
  await page.screenshot({ path: join(outDir, 'page-cpu-overlay.png'), fullPage: true });
  // The legend names the classes the CLI found.
  const legend = await page.textContent('.legend');
  assert.match(legend, /(cat|dog|grass|sky) \d+\.\d %/);
  const diff = await compareMask(page, '/out/cli/photo_big.mask.png');
  assert.equal(diff.size, undefined, `mask sizes differ: ${diff.size}`);
  assert.ok(diff.colours >= 2, 'the CLI mask should show several classes');
  assert.equal(diff.differing, 0, `${diff.differing} of ${diff.pixels} pixels differ from the CLI's mask`);
  await page.screenshot({ path: join(outDir, 'page-cpu-mask.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('a file that is not a photo gets a plain error and the next photo is still painted', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/?backend=cpu`);
  await loadFixtureModel(page);
  await page.fill('#labels', labels);
  await dropPhoto(page, join(root, 'README.md'), 'notes.md', 'text/markdown');
  await done(page);
  assert.match(await page.textContent('#results'), /notes\.md: .*not a JPEG, PNG, WebP, GIF or BMP/);
  await dropPhoto(page, join(model, 'photo.png'), 'photo.png');
  await done(page);
  assert.equal(await page.locator('.result canvas').count(), 1);
  assert.equal(await page.inputValue('#labels'), labels, 'the typed labels stay');
  await page.screenshot({ path: join(outDir, 'page-bad-file.png'), fullPage: true });
  await page.close();
});

test('a model URL that 404s is reported in plain words and the page stays usable', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/?backend=cpu&model=${encodeURIComponent(`${server.url}/fixtures/missing/`)}`);
  await modelSettled(page);
  assert.match(await page.textContent('#status'), /config\.json: the server answered 404/);
  await loadFixtureModel(page); // still works afterwards
  await page.close();
});

test('a model loaded from a URL is served from the cache on the next visit', async () => {
  const context = await browser.newContext();
  const url = `${server.url}/?backend=cpu&model=${encodeURIComponent(`${server.url}/fixtures/tiny-3stage/`)}`;
  const weights = () => server.requests.filter((p) => p.endsWith('tiny-3stage/model.safetensors')).length;
  const before = weights();
  for (const visit of [1, 2]) {
    const page = await context.newPage();
    await page.goto(url);
    await modelSettled(page);
    assert.match(await page.textContent('#status'), /ready/, `visit ${visit}`);
    await page.close();
  }
  assert.equal(weights() - before, 1, 'the weights were downloaded once');
  await context.close();
});

test('a photo given while the model loads waits for it and is painted; ?threads= picks the threads', async () => {
  let release;
  const gate = new Promise((ok) => { release = ok; });
  const held = await serve(undefined, { hold: (path) => (path.endsWith('tiny-3stage/model.safetensors') ? gate : null) });
  try {
    const page = await newPage(browser);
    await page.goto(`${held.url}/?backend=cpu&threads=1&model=${encodeURIComponent(`${held.url}/fixtures/tiny-3stage/`)}`);
    await page.waitForFunction(() => document.body.dataset.stages?.includes('download'));
    await dropPhoto(page, join(model, 'photo.png'), 'photo.png');
    assert.equal(await page.textContent('#status'), 'This photo waits for the model, which is loading.');
    assert.equal(await page.textContent('.result'), 'photo.png: waiting…');
    release();
    await modelSettled(page, 'url');
    await done(page);
    assert.equal(await page.locator('.result canvas').count() > 0, true, 'the waiting photo was painted');
    assert.equal(await page.textContent('#backend-used'), 'Running on CPU, 1 thread.');
    // Each stage of the load and the painted photo are on the page's timeline, in order.
    const marks = await page.evaluate(() => performance.getEntriesByType('mark').map((m) => m.name));
    assert.deepEqual(marks.filter((m) => m.startsWith('groupseg:')),
      ['groupseg:load', 'groupseg:compile', 'groupseg:download', 'groupseg:prepare', 'groupseg:ready', 'groupseg:painted']);
    assert.deepEqual(page.problems, []);
    await page.close();
    // A threads value that is not one is said with the load's notes; the page loads on every core.
    const bad = await newPage(browser);
    await bad.goto(`${held.url}/?backend=cpu&threads=two`);
    await modelSettled(bad, 'demo');
    assert.match(await bad.textContent('#status'), /ready.*\?threads=two is not a number of threads \(1, 2, …\): the page uses every core\./);
    const cores = await bad.evaluate(() => navigator.hardwareConcurrency);
    assert.equal(await bad.textContent('#backend-used'), `Shapes demo (it knows only coloured shapes). Running on CPU, ${cores} thread${cores === 1 ? '' : 's'}.`);
    await bad.close();
  } finally {
    held.close();
  }
});

test('a model kept as int8 is converted once, stored at about a quarter, and loads from that copy', async () => {
  const context = await browser.newContext();
  const model = `${server.url}/fixtures/tiny-2stage/`; // an f32 checkpoint
  const url = `${server.url}/?backend=cpu&model=${encodeURIComponent(model)}`;
  const weights = () => server.requests.filter((p) => p.endsWith('tiny-2stage/model.safetensors')).length;
  const before = weights();
  for (const visit of [1, 2]) {
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
    await page.goto(`${server.url}/?backend=cpu`);
    await modelSettled(page);
    await page.check('#keep-int8');
    await page.fill('#model-url', model);
    await page.click('#load-url');
    await modelSettled(page, 'url');
    const text = await page.textContent('#status');
    assert.match(text, /ready/, `visit ${visit}: ${text}`);
    if (visit === 1) assert.match(text, /model\.safetensors is kept in this browser as int8/, text);
    const sizes = await page.evaluate(async (model) => {
      const store = await caches.open('groupseg-models-v1');
      const size = async (key) => (await (await store.match(key))?.arrayBuffer())?.byteLength ?? null;
      return { original: await size(`${model}model.safetensors`), int8: await size(`${model}model.safetensors?groupseg-kept=int8`) };
    }, model);
    assert.equal(sizes.original, null, `visit ${visit}: the f32 original is not kept`);
    const f32 = (await readFile(join(fixtures, 'tiny-2stage', 'model.safetensors'))).length;
    assert.ok(sizes.int8 > 0 && sizes.int8 < f32 * 0.4, `int8 copy ${sizes.int8} bytes of ${f32}`);
    // The kept copy segments.
    await dropPhoto(page, join(fixtures, 'tiny-3stage', 'photo.png'), 'photo.png');
    await done(page);
    assert.equal(await page.locator('.result canvas').count(), 1);
    assert.deepEqual(problems, []);
    await page.close();
  }
  assert.equal(weights() - before, 1, 'the weights were downloaded once');
  await context.close();
});
