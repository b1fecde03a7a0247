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
    // The allocator's count: the weights are live, and the heap holds the most ever live.
    assert.ok(m.live >= m.weights.cpu && m.peakLive >= m.live && m.heap >= m.peakLive, JSON.stringify(m));
  }
  assert.match(r.afterDispose, /disposed/);
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('weights from Cache Storage or a File leave the token table on disk: its rows are read as labels need them, with the same answers', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/`);
  const b64 = (await readFile(join(fixtures, 'shapes-eval', '038.png'))).toString('base64');
  const r = await page.evaluate(async (b64) => {
    const { Segmenter } = await import('/pkg/index.js');
    const modelUrl = `${location.origin}/fixtures/tiny-2stage/`;
    const photo = new Blob([Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0))], { type: 'image/png' });
    const labelSets = [['red circle', 'blue star', 'grey'], ['a green square', 'red star']];
    await Segmenter.clearCache();
    const file = async (name) => new File([await (await fetch(`${modelUrl}${name}`)).blob()], name);
    const loads = {
      held: () => Segmenter.load({ modelUrl, backend: 'cpu', cache: false }),
      download: () => Segmenter.load({ modelUrl, backend: 'cpu' }),
      cached: () => Segmenter.load({ modelUrl, backend: 'cpu' }),
      int8: () => Segmenter.load({ modelUrl, backend: 'cpu', keepAs: 'int8' }),
      files: async () => Segmenter.load({ backend: 'cpu', files: await Promise.all(['config.json', 'tokenizer.json', 'preprocessor_config.json', 'model.safetensors'].map(file)) }),
    };
    const out = {};
    for (const [name, load] of Object.entries(loads)) {
      const s = await load();
      const loaded = await s.memory();
      const answers = [];
      for (const labels of labelSets) {
        const seg = await s.segment(photo, labels);
        answers.push({ labelMap: Array.from(seg.labelMap), scores: Array.from(seg.scores), classify: await s.classify(photo, labels) });
      }
      out[name] = { loaded, after: await s.memory(), answers: JSON.stringify(answers) };
      if (name !== 'int8') s.dispose();
      else out.int8Segmenter = s;
    }
    // The kept copy taken out of Cache Storage under a loaded model: its rows already read still
    // serve; a label needing another row either reads it or says to load the model again.
    const s = out.int8Segmenter;
    delete out.int8Segmenter;
    await Segmenter.clearCache();
    out.afterClear = {
      known: await s.segment(photo, labelSets[0]).then(() => 'segmented', (e) => e.message),
      unknown: await s.segment(photo, ['purple hexagon']).then(() => 'segmented', (e) => e.message),
    };
    s.dispose();
    return out;
  }, b64);
  const { held, download, cached, int8, files } = r;
  console.log(`tiny f32 checkpoint: held ${held.loaded.weights.cpu} B; left in the file ${cached.loaded.weights.inFile} B, `
    + `${cached.loaded.weights.cpu} B held, ${cached.after.weights.cpu - cached.loaded.weights.cpu} B of rows read; after clearCache: ${JSON.stringify(r.afterClear)}`);
  assert.equal(held.loaded.weights.inFile, 0, JSON.stringify(held.loaded));
  for (const [name, m] of Object.entries({ download, cached, int8, files })) {
    assert.ok(m.loaded.weights.inFile > 0, `${name}: ${JSON.stringify(m.loaded)}`);
    // Rows were read for the labels, a few of the table's.
    const rows = m.after.weights.cpu - m.loaded.weights.cpu;
    assert.ok(rows > 0 && rows < m.loaded.weights.inFile / 10, `${name}: ${JSON.stringify(m)}`);
  }
  for (const [name, m] of Object.entries({ download, cached, files })) {
    assert.equal(m.loaded.weights.cpu + m.loaded.weights.inFile, held.loaded.weights.cpu, JSON.stringify([held.loaded, m.loaded]));
    const at = [...m.answers].findIndex((c, i) => c !== held.answers[i]);
    assert.ok(at < 0, `${name}: answers differ from the held table's at ${held.answers.slice(at - 80, at + 40)} vs ${m.answers.slice(at - 80, at + 40)}`);
  }
  assert.equal(r.afterClear.known, 'segmented');
  assert.ok(r.afterClear.unknown === 'segmented' || /load the model again/.test(r.afterClear.unknown), r.afterClear.unknown);
  assert.deepEqual(page.problems, []);
  await page.close();
});
