// examples/vite, built by Vite against the package in pkg/ (./build.sh test builds both), loads in
// the browser with the model the package ships and segments a picked photo.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serve, launch, newPage, fixtures, outDir, root } from './harness.mjs';

const dist = join(root, 'examples', 'vite', 'dist');
let server, browser;
before(async () => {
  if (!existsSync(join(dist, 'index.html'))) throw new Error('build the example first (./build.sh test does)');
  server = await serve(dist);
  browser = await launch();
});
after(async () => { await browser?.close(); server?.close(); });

test('the Vite example loads the package and its demo model, and segments a photo', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/`);
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
  const meta = JSON.parse(await readFile(join(fixtures, 'shapes-eval', 'labels.json'), 'utf8'));
  // Held-out scene 38: a red triangle, a purple star and a pink circle, plus two distractor labels.
  const scene = meta.scenes[38];
  const phrases = scene.labels.slice(0, -2); // the labels before the two distractors
  await page.fill('#labels', scene.labels.join(', '));
  await page.setInputFiles('#photo', join(fixtures, 'shapes-eval', '038.png'));
  await page.waitForFunction(() => /^(Done\.|Could not)/.test(document.getElementById('status').textContent), null,
    { timeout: 120_000 });
  assert.equal(await page.textContent('#status'), 'Done.');
  // Every painted class is one of the labels (or background), each of the scene's shapes is painted
  // with its own phrase, and together they cover the photo.
  const rows = await page.locator('#legend li').allTextContents();
  let total = 0;
  const painted = {};
  for (const row of rows) {
    const [, label, share] = row.match(/^(.*): ([\d.]+) %$/) ?? [];
    assert.ok(['background', ...scene.labels].includes(label), row);
    painted[label] = Number(share);
    total += Number(share);
  }
  // Painted at all: refined, the demo keeps little of this scene's star (0.7 %, the README's
  // picture); how well it paints is scored against the truth in truth.test.mjs.
  for (const phrase of phrases) assert.ok(painted[phrase] > 0, `${phrase} painted: ${JSON.stringify(painted)}`);
  assert.ok(Math.abs(total - 100) < 0.5, `shares add up to ${total} %`);
  const size = await page.evaluate(() => [document.getElementById('out').width, document.getElementById('out').height]);
  assert.deepEqual(size, [64, 64]);
  await page.screenshot({ path: join(outDir, 'vite-example.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
  await page.close();
});
