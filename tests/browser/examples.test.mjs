// examples/react (Vite) and examples/webpack, built against the package in pkg/ (./build.sh test
// builds them): each loads the package's worker entry and its demo model, and segments a picked photo
// off the main thread.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serve, launch, newPage, fixtures, outDir, root } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const meta = JSON.parse(await readFile(join(fixtures, 'shapes-eval', 'labels.json'), 'utf8'));

for (const example of ['react', 'webpack']) {
  test(`the ${example} example segments a photo with groupseg/worker`, async () => {
    const dist = join(root, 'examples', example, 'dist');
    if (!existsSync(join(dist, 'index.html'))) throw new Error(`build examples/${example} first (./build.sh test does)`);
    const server = await serve(dist);
    try {
      const page = await newPage(browser);
      await page.goto(`${server.url}/`);
      await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
      // Served cross-origin isolated: the worker runs the threaded module on every core.
      const cores = await page.evaluate(() => navigator.hardwareConcurrency);
      assert.match(await page.textContent('#status'), new RegExp(`^Ready \\(CPU.*, ${cores} threads?\\): pick a photo\\.$`));
      // The model runs in the package's worker, not on the page's thread.
      const workers = page.workers().map((w) => w.url());
      assert.ok(workers.some((u) => /worker-entry|\d+\.main\.js/.test(u)), `a groupseg worker runs: ${workers}`);
      // Held-out scene 38: a red triangle, a purple star and a pink circle, plus two distractors.
      const scene = meta.scenes[38];
      await page.fill('#labels', scene.labels.join(', '));
      await page.setInputFiles('#photo', join(fixtures, 'shapes-eval', '038.png'));
      await page.waitForFunction(() => /^(Done\.|Could not)/.test(document.getElementById('status').textContent), null, { timeout: 120_000 });
      assert.equal(await page.textContent('#status'), 'Done.');
      const rows = await page.locator('#legend li').allTextContents();
      for (const phrase of scene.labels.slice(0, -2)) {
        assert.ok(rows.some((r) => r.startsWith(`${phrase}: `)), `${phrase} painted: ${rows}`);
      }
      await page.screenshot({ path: join(outDir, `example-${example}.png`), fullPage: true });
      assert.deepEqual(page.problems, []);
      await page.close();
    } finally {
      server.close();
    }
  });
}
