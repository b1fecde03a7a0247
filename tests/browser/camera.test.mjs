// Camera mode with Chromium's fake camera (a moving test pattern): the page paints frame after frame
// with the demo model, reports its frame rate and backend, re-labels as the labels are typed, and
// stops. Then the camera films a held-out shapes scene (a Y4M file): the painted frame's labels are
// the scene's shapes and no other, each painted over a half to one and a half times its true share
// (the frame comes through the camera's colour conversion, 4× the scene's size).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serve, launch, newPage, outDir, modelSettled, fixtures } from './harness.mjs';

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
  console.error(`camera, refinement ${await page.isChecked('#refine') ? 'on' : 'off'}: ${fps}`);
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

/** Held-out scene `n` drawn 4× larger (nearest neighbour) as one Y4M frame (I420, BT.601 studio
 * range, what Chromium's file camera reads), with its truth: each class's share of the pixels. */
async function sceneAsCamera(page, n) {
  const read = async (name) => (await readFile(join(fixtures, 'shapes-eval', name))).toString('base64');
  const meta = JSON.parse(await readFile(join(fixtures, 'shapes-eval', 'labels.json'), 'utf8'));
  const [photo, mask] = [await read(`${n}`.padStart(3, '0') + '.png'), await read(`${n}`.padStart(3, '0') + '-mask.png')];
  const { width, height, rgba, ids } = await page.evaluate(async ([photo, mask]) => {
    const pixels = async (b64) => {
      const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
      const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
      const ctx = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d');
      ctx.drawImage(bitmap, 0, 0);
      return { width: bitmap.width, height: bitmap.height, data: Array.from(ctx.getImageData(0, 0, bitmap.width, bitmap.height).data) };
    };
    const [p, m] = [await pixels(photo), await pixels(mask)];
    return { width: p.width, height: p.height, rgba: p.data, ids: m.data.filter((_, i) => i % 4 === 0) };
  }, [photo, mask]);
  const [w, h] = [width * 4, height * 4];
  const y = Buffer.alloc(w * h);
  const [u, v] = [Buffer.alloc((w / 2) * (h / 2)), Buffer.alloc((w / 2) * (h / 2))];
  const at = (x, yy) => ((yy >> 2) * width + (x >> 2)) * 4;
  for (let yy = 0; yy < h; yy++) {
    for (let x = 0; x < w; x++) {
      const i = at(x, yy);
      const [r, g, b] = [rgba[i], rgba[i + 1], rgba[i + 2]];
      y[yy * w + x] = Math.round(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255);
      if (x % 2 === 0 && yy % 2 === 0) {
        u[(yy / 2) * (w / 2) + x / 2] = Math.round(128 + (-37.797 * r - 74.203 * g + 112 * b) / 255);
        v[(yy / 2) * (w / 2) + x / 2] = Math.round(128 + (112 * r - 93.786 * g - 18.214 * b) / 255);
      }
    }
  }
  const path = join(outDir, 'camera-scene.y4m');
  await writeFile(path, Buffer.concat([Buffer.from(`YUV4MPEG2 W${w} H${h} F10:1 Ip A1:1 C420jpeg\nFRAME\n`), y, u, v]));
  const truth = {};
  for (const id of ids) if (id > 0) truth[meta.classes[id]] = (truth[meta.classes[id]] ?? 0) + 1 / ids.length;
  return { path, labels: meta.scenes[n].labels, truth, size: [w, h] };
}

test("a painted camera frame of a shapes scene carries the scene's labels", async () => {
  const page = await newPage(browser);
  const scene = await sceneAsCamera(page, 38);
  await page.close();
  const filming = await launch(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', `--use-file-for-fake-video-capture=${scene.path}`]);
  try {
    const cam = await newPage(filming);
    await cam.goto(`${server.url}/?backend=cpu`);
    await modelSettled(cam, 'demo');
    await cam.fill('#labels', scene.labels.join(', '));
    await cam.click('#camera');
    await cam.waitForFunction(() => Number(document.getElementById('camera-view').dataset.frames ?? 0) >= 2, null, { timeout: 120_000 });
    assert.deepEqual(await cam.$eval('#camera-canvas', (c) => [c.width, c.height]), scene.size, "frames at the file's size");
    await cam.screenshot({ path: join(outDir, 'page-camera-scene.png'), fullPage: true });
    const shares = Object.fromEntries(await cam.$$eval('#camera-legend [data-label]', (els) => els.map((e) => [e.dataset.label, Number(e.dataset.share)])));
    assert.deepEqual(Object.keys(shares).sort(), Object.keys(scene.truth).sort(), `painted ${JSON.stringify(shares)}, true ${JSON.stringify(scene.truth)}`);
    for (const [label, share] of Object.entries(scene.truth)) {
      assert.ok(Math.abs(shares[label] - share) <= 0.5 * share, `${label}: ${shares[label]} of the frame painted, ${share} true`);
    }
    await cam.click('#camera');
    assert.deepEqual(cam.problems, []);
  } finally {
    await filming.close();
  }
});
