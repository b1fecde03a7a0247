// Phones' memory: a model is kept as int8 where the device says it has little memory
// (`navigator.deviceMemory`) or where the module cannot make room for it as it is; the notes say
// which, and a model too large even as int8 is refused by a sentence, not a crashed page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serve, launch, newPage, fixtures } from './harness.mjs';

let server;
before(async () => { server = await serve(); });
after(() => server?.close());

const meta = JSON.parse(await readFile(join(fixtures, 'shapes-eval', 'labels.json'), 'utf8'));
const scene = 38;
const photo64 = (await readFile(join(fixtures, 'shapes-eval', `${String(scene).padStart(3, '0')}.png`))).toString('base64');

/** The shapes demo loaded in `page` with `keepAs`, its notes, weights held and scene 38's label map
 * (or the load's error). */
function loadDemo(page, keepAs) {
  return page.evaluate(async ({ keepAs, b64, labels }) => {
    const { Segmenter } = await import('/pkg/index.js');
    const photo = new Blob([Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0))], { type: 'image/png' });
    try {
      const s = await Segmenter.load({ backend: 'cpu', keepAs });
      const seg = await s.segment(photo, labels);
      const out = { notes: s.notes, weights: (await s.memory()).weights.cpu, labelMap: Array.from(seg.labelMap) };
      s.dispose();
      return out;
    } catch (e) {
      return { error: e.message };
    }
  }, { keepAs, b64: photo64, labels: meta.scenes[scene].labels });
}

const alike = (a, b) => a.filter((v, i) => v === b[i]).length / a.length;

test('a device reporting 4 GB or less keeps a model as int8 and says so; keepAs null keeps it as it is', async () => {
  const browser = await launch();
  try {
    const page = await newPage(browser);
    await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'deviceMemory', { get: () => 2 }));
    await page.goto(`${server.url}/`);
    const auto = await loadDemo(page, undefined);
    const asItIs = await loadDemo(page, null);
    assert.ok(!auto.error && !asItIs.error, JSON.stringify([auto.error, asItIs.error]));
    console.log(`deviceMemory 2: weights ${auto.weights} B (as it is: ${asItIs.weights} B); notes: ${auto.notes.join(' ')}; `
      + `label maps alike on scene ${scene}: ${(100 * alike(auto.labelMap, asItIs.labelMap)).toFixed(2)} %`);
    assert.ok(auto.notes.some((n) => /kept as int8: this device reports 2 GB of memory/.test(n)), auto.notes.join(' | '));
    assert.ok(auto.weights < 0.3 * asItIs.weights, `${auto.weights} B held as int8 against ${asItIs.weights} B`);
    assert.ok(!asItIs.notes.some((n) => /int8/.test(n)), asItIs.notes.join(' | '));
    assert.ok(alike(auto.labelMap, asItIs.labelMap) >= 0.97);
    assert.deepEqual(page.problems, []);
  } finally {
    await browser.close();
  }
});

// V8's limit on a WebAssembly memory's pages stands in for a phone that cannot grow the module's
// memory: the shapes demo needs (with its work) about 23.7 MB as it is and 18.1 MB as int8 over a
// module that starts at about 5 MB, so 400 pages (26.2 MB) hold it only as int8 and 360 pages
// (23.6 MB) not at all.
test('where the module cannot make room for a model as it is, it is kept as int8; where not even so, the load says so and the page lives', async () => {
  const room = {};
  for (const pages of [400, 360]) {
    const browser = await launch([`--js-flags=--wasm-max-mem-pages=${pages}`]);
    try {
      const page = await newPage(browser);
      await page.goto(`${server.url}/`);
      room[pages] = await loadDemo(page, undefined);
      room[pages].alive = await page.evaluate(() => 1 + 1);
      room[pages].problems = page.problems;
    } finally {
      await browser.close();
    }
  }
  const [fits, short] = [room[400], room[360]];
  console.log(`400 pages: ${fits.error ?? `weights ${fits.weights} B; notes: ${fits.notes.join(' ')}`}; 360 pages: ${short.error ?? 'loaded'}`);
  assert.ok(!fits.error, fits.error);
  assert.ok(fits.notes.some((n) => /kept as int8 .*could not give the model the [\d.]+ MB it needs as it is/.test(n)), fits.notes.join(' | '));
  assert.ok(fits.weights < 2.5e6, `${fits.weights} B held`);
  assert.ok(new Set(fits.labelMap).size > 1, 'the int8 model segmented the scene into one label');
  assert.match(short.error ?? '', /could not give the model the [\d.]+ MB it needs even as int8: close other tabs/);
  for (const r of [fits, short]) {
    assert.equal(r.alive, 2);
    assert.deepEqual(r.problems, []);
  }
});
