// Relaxed SIMD: where the browser validates it (Chromium does) the package runs the module built with
// fused multiply-adds and relaxed SIMD's integer dot product; `relaxedSimd: false` runs the plain SIMD
// build. Both paint the same label maps (fused multiply-adds round once where the plain build rounds
// twice, so a near tie may flip a pixel), in f32 and with the demo kept as int8 (integer products:
// relaxed SIMD's dot product in one, widened codes and `i32x4.dot_i16x8_s` in the other).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serve, launch, newPage, fixtures } from './harness.mjs';

let browser;
let server;
before(async () => {
  browser = await launch();
  server = await serve(undefined, { isolated: false });
});
after(async () => {
  await browser?.close();
  server?.close();
});

const meta = JSON.parse(await readFile(join(fixtures, 'shapes-eval', 'labels.json'), 'utf8'));
const scene = (await readFile(join(fixtures, 'shapes-eval', '038.png'))).toString('base64');

/** In a fresh page (the module is fixed per page): scene 38 with the shapes demo as shipped and kept
 * as int8, and the 3-stage fixture on a 448 window, from the main-thread API loaded with `relaxedSimd`. */
async function run(relaxedSimd) {
  const page = await newPage(browser);
  try {
    await page.goto(`${server.url}/`);
    return await page.evaluate(async ({ scene, labels, relaxedSimd }) => {
      const { Segmenter } = await import('/pkg/index.js');
      const blob = new Blob([Uint8Array.from(atob(scene), (c) => c.charCodeAt(0))], { type: 'image/png' });
      const side = 448;
      const big = new ImageData(new Uint8ClampedArray(side * side * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 7919) % 256)), side, side);
      const tiny = {};
      for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'preprocessor_config.json']) tiny[f] = `/fixtures/tiny-3stage/${f}`;
      const options = relaxedSimd === undefined ? {} : { relaxedSimd };
      const demo = await Segmenter.load({ backend: 'cpu', threads: 1, ...options });
      const fixture = await Segmenter.load({ backend: 'cpu', modelUrl: tiny, cache: false });
      // Asking for the other module once this page started one: it keeps it and says so.
      const other = await Segmenter.load({ backend: 'cpu', relaxedSimd: !demo.relaxedSimd });
      // The demo converted to int8 in the page (kept in Cache Storage; the second run loads that copy).
      const int8 = await Segmenter.load({ backend: 'cpu', modelUrl: `${location.origin}/pkg/models/shapes-demo/`, keepAs: 'int8' });
      const out = {
        relaxedSimd: demo.relaxedSimd,
        notes: demo.notes,
        otherNotes: other.notes,
        otherRelaxedSimd: other.relaxedSimd,
        scene: Array.from((await demo.segment(blob, labels)).labelMap),
        int8Scene: Array.from((await int8.segment(blob, labels)).labelMap),
        int8Weights: (await int8.memory()).weights.cpu,
        demoWeights: (await demo.memory()).weights.cpu,
        big: Array.from((await fixture.segment(big, ['cat', 'dog', 'sofa'], { shortSide: side, backgroundThreshold: null })).labelMap),
      };
      out.badOption = await Segmenter.load({ relaxedSimd: 'yes' }).then(() => 'loaded', (e) => e.message);
      for (const s of [demo, fixture, other, int8]) s.dispose();
      return out;
    }, { scene, labels: meta.scenes[38].labels, relaxedSimd });
  } finally {
    assert.deepEqual(page.problems, []);
    await page.close();
  }
}

const agreement = (a, b) => a.filter((v, i) => v === b[i]).length / a.length;

test('Chromium runs the relaxed-SIMD module; the plain one paints the same label maps', async () => {
  const relaxed = await run(undefined);
  const plain = await run(false);
  assert.equal(relaxed.relaxedSimd, true, 'Chromium validates relaxed SIMD, so the package loads that build');
  assert.deepEqual(relaxed.notes, []);
  assert.equal(plain.relaxedSimd, false);
  assert.deepEqual(plain.notes, []);
  assert.equal(relaxed.otherRelaxedSimd, true);
  assert.match(relaxed.otherNotes.join(' '), /^relaxed SIMD: an earlier load here started the module$/);
  assert.equal(plain.otherRelaxedSimd, false);
  assert.match(plain.otherNotes.join(' '), /^no relaxed SIMD: an earlier load here started the module$/);
  for (const key of ['scene', 'big', 'int8Scene']) {
    assert.equal(relaxed[key].length, plain[key].length, key);
    assert.ok(relaxed[key].length > 0, key);
    const share = agreement(relaxed[key], plain[key]);
    assert.ok(share >= 0.999, `${key}: the two builds agree on ${(share * 100).toFixed(3)} % of pixels`);
  }
  assert.ok(new Set(relaxed.scene).size >= 3, 'scene 38 is painted with several labels');
  // The int8 copy computes with its codes (a third of the f32 weights' bytes held) and labels the
  // scene as the f32 demo does, in both builds.
  for (const run of [relaxed, plain]) {
    assert.ok(run.int8Weights * 3 < run.demoWeights, `int8 holds ${run.int8Weights} bytes against ${run.demoWeights}`);
    const share = agreement(run.int8Scene, run.scene);
    assert.ok(share >= 0.99, `int8 against f32 (relaxed SIMD ${run.relaxedSimd}): ${(share * 100).toFixed(3)} % of pixels alike`);
  }
  assert.ok(new Set(relaxed.big).size >= 2, 'the fixture paints more than one label');
  assert.match(relaxed.badOption, /relaxedSimd must be true or false, not "yes"/);
});
