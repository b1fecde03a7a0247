// The page as a person uses it, on the CPU path: the painted label map equals the native CLI's,
// bad files and bad model URLs get plain-words errors without breaking the page, and a model
// loaded from a URL is served from Cache Storage on the next visit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
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
  assert.equal(await page.textContent('#backend-used'), 'Running on CPU.');
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
