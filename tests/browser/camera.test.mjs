// Camera mode with Chromium's fake camera (a moving test pattern): the page paints frame after frame
// with the demo model, reports its frame rate and backend, re-labels as the labels are typed, and
// stops.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { serve, launch, newPage, outDir, modelSettled } from './harness.mjs';

let server, browser;
before(async () => {
  server = await serve();
  browser = await launch(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']);
});
after(async () => { await browser?.close(); server?.close(); });

const frames = (page) => page.evaluate(() => Number(document.getElementById('camera-view').dataset.frames ?? 0));

test('camera mode paints frames from the camera, says how fast and where, and follows the labels', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/?backend=cpu`);
  await modelSettled(page, 'demo');
  assert.equal(await page.isVisible('#camera-view'), false, 'the camera view stays hidden until asked for');
  await page.click('#camera');
  await page.waitForFunction(() => Number(document.getElementById('camera-view').dataset.frames ?? 0) >= 5, null, { timeout: 120_000 });
  const fps = await page.textContent('#camera-fps');
  assert.match(fps, /^\d+\.\d frames per second on CPU/, fps);
  assert.ok(Number(fps.match(/^[\d.]+/)[0]) > 0, fps);
  const size = await page.$eval('#camera-canvas', (c) => [c.width, c.height]);
  assert.deepEqual(size, [640, 480], "frames at the camera's size");
  await page.screenshot({ path: join(outDir, 'page-camera.png'), fullPage: true });

  // New labels apply from the next frames on, without stopping the camera.
  await page.fill('#labels', 'green circle, yellow square');
  await page.waitForFunction(() => {
    const chips = [...document.querySelectorAll('#camera-legend .chip')].map((c) => c.textContent);
    return chips.length && chips.every((t) => /^(green circle|yellow square) /.test(t));
  }, null, { timeout: 60_000 });
  const before = await frames(page);
  await page.waitForFunction((n) => Number(document.getElementById('camera-view').dataset.frames) > n + 2, before, { timeout: 60_000 });

  await page.click('#camera');
  assert.equal(await page.getAttribute('#camera', 'aria-pressed'), 'false');
  const stopped = await frames(page);
  await page.waitForTimeout(1000);
  assert.ok((await frames(page)) <= stopped + 1, 'no frames after stopping (one may be in flight)');
  assert.deepEqual(page.problems, []);
  await page.close();
});
