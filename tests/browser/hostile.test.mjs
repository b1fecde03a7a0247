// Hostile input and storage trouble in the page: a header bomb is refused by name and the tab goes
// on; a full Cache Storage still loads the model (with a note); the model of the last visit comes
// back on the next one.
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

test('the model of the last visit, cached, is loaded again on the next visit', async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const model = `${server.url}/fixtures/tiny-3stage/`;
  const first = await context.newPage();
  await first.goto(`${server.url}/?backend=cpu&model=${encodeURIComponent(model)}`);
  await modelSettled(first, 'url');
  assert.equal(await first.evaluate(() => document.body.dataset.model), 'ready');
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
