// The package's worker entry (`groupseg/worker`): the same answers as the main-thread API, from a
// worker the package starts itself, with results transferred back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serve, launch, newPage, fixtures } from './harness.mjs';

let server, browser;
before(async () => { server = await serve(); browser = await launch(); });
after(async () => { await browser?.close(); server?.close(); });

const meta = JSON.parse(await readFile(join(fixtures, 'shapes-eval', 'labels.json'), 'utf8'));

test('groupseg/worker gives the main-thread API\'s label map, boxes, grounding and ranking', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/`);
  const b64 = (await readFile(join(fixtures, 'shapes-eval', '038.png'))).toString('base64');
  const labels = meta.scenes[38].labels;
  const caption = `a ${labels[0]} next to a ${labels[1]}`;
  const r = await page.evaluate(async ({ b64, labels, caption }) => {
    const main = await import('/pkg/index.js');
    const inWorker = await import('/pkg/worker.js');
    const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const blob = new Blob([bytes], { type: 'image/png' });
    const bitmap = await createImageBitmap(blob);
    const stages = [];
    const a = await main.Segmenter.load({ backend: 'cpu' });
    const b = await inWorker.Segmenter.load({ backend: 'cpu', onProgress: (p) => stages.push(p.stage) });
    const [sa, sb] = [await a.segment(blob, labels), await b.segment(bitmap, labels)];
    const encoded = await b.encode(bitmap);
    const again = await b.segment(encoded, labels);
    const groups = await b.groups(encoded);
    encoded.dispose();
    const out = {
      backend: b.backend,
      stages: [...new Set(stages)],
      sameMap: sa.labelMap.length === sb.labelMap.length && sa.labelMap.every((v, i) => v === sb.labelMap[i]),
      sameEncoded: again.labelMap.every((v, i) => v === sb.labelMap[i]),
      bitmapStillUsable: bitmap.width > 0,
      typed: sb.labelMap instanceof Uint16Array && groups.stages[0].map instanceof Uint32Array,
      maskPixels: sb.mask(labels[0]).data.filter((v, i) => i % 4 === 3 && v === 255).length,
      mainMaskPixels: sa.mask(labels[0]).data.filter((v, i) => i % 4 === 3 && v === 255).length,
      detect: [JSON.stringify(await a.detect(blob, labels)), JSON.stringify(await b.detect(blob, labels)), JSON.stringify(await sb.detect())],
      ground: [JSON.stringify(await a.ground(blob, caption)), JSON.stringify(await b.ground(blob, caption))],
      classify: [JSON.stringify(await a.classify(blob, labels)), JSON.stringify(await b.classify(blob, labels))],
      groups: groups.stages.map((s) => s.count),
      memory: [await a.memory(), await b.memory()],
    };
    b.dispose();
    out.afterDispose = await b.segment(blob, labels).then(() => 'resolved', (e) => e.message);
    a.dispose();
    return out;
  }, { b64, labels, caption });
  assert.equal(r.backend, 'CPU');
  assert.deepEqual(r.stages, ['compile', 'download', 'prepare']);
  assert.ok(r.sameMap, 'the same label map');
  assert.ok(r.sameEncoded, 'an encoding in the worker labels the same');
  assert.ok(r.bitmapStillUsable, 'the caller\'s bitmap stays usable');
  assert.ok(r.typed, 'typed arrays come back');
  assert.ok(r.maskPixels > 100 && r.maskPixels === r.mainMaskPixels, `${r.maskPixels} vs ${r.mainMaskPixels}`);
  assert.equal(r.detect[0], r.detect[1]);
  assert.equal(r.detect[0], r.detect[2]);
  assert.equal(r.ground[0], r.ground[1]);
  assert.equal(r.classify[0], r.classify[1]);
  assert.ok(r.groups[0] >= 4, JSON.stringify(r.groups));
  // The demo's weights (1.75 M parameters in f32) are held in a heap that holds them and more.
  for (const m of r.memory) {
    assert.equal(m.weights.cpu, r.memory[0].weights.cpu, JSON.stringify(r.memory));
    assert.ok(m.weights.cpu > 1.75e6 * 4 && m.weights.gpu === 0 && m.heap > m.weights.cpu, JSON.stringify(m));
  }
  assert.match(r.afterDispose, /disposed/);
  assert.deepEqual(page.problems, []);
  await page.close();
});
