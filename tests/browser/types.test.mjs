// The package's API by operation, as a user meets it: each operation takes its own options type
// (TypeScript, compiled against the built package's declarations, main thread and worker alike), and
// at run time an option an operation does not take is refused by name rather than ignored.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { serve, launch, newPage, root } from './harness.mjs';

let server, browser;
before(async () => { server = await serve(); browser = await launch(); });
after(async () => { await browser?.close(); server?.close(); });

const tsc = (file) => spawnSync(process.execPath, [
  join(root, 'tests', 'browser', 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '--strict', '--module', 'nodenext',
  '--moduleResolution', 'nodenext', '--target', 'es2022', '--lib', 'es2022,dom', '--skipLibCheck', 'false',
  join(root, 'tests', 'browser', 'types', file),
], { encoding: 'utf8' });

test('every operation compiles with its own options type, in the worker too', () => {
  const run = tsc('use.ts');
  assert.equal(run.status, 0, run.stdout + run.stderr);
});

test('an option another operation takes is a type error', () => {
  const run = tsc('wrong.ts');
  const errors = run.stdout.split('\n').filter((l) => l.includes('error TS'));
  assert.equal(errors.length, 4, run.stdout);
  for (const [option, line] of [['topK', 5], ['refine', 6], ['refine', 8], ['threshold', 9]]) {
    assert.ok(errors.some((e) => e.includes(`wrong.ts(${line},`) && e.includes(`'${option}'`)), `${option} on line ${line}:\n${run.stdout}`);
  }
});

test('at run time an option an operation does not take is refused by name', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/`);
  const said = await page.evaluate(async () => {
    const { Segmenter } = await import('/pkg/index.js');
    const s = await Segmenter.load({ backend: 'cpu' });
    const photo = new ImageData(new Uint8ClampedArray(64 * 64 * 4).fill(200), 64, 64);
    const refused = (p) => p.then(() => 'ran', (e) => e.message);
    const r = await s.segment(photo, 'red circle');
    const out = {
      segment: await refused(s.segment(photo, 'red circle', { topK: 2 })),
      detect: await refused(r.detect({ refine: false })),
      classify: await refused(s.classify(photo, 'red circle', { threshold: 0.5 })),
      ok: (await s.detect(photo, 'red circle', { refine: false, topK: 1, threshold: 0 })).length <= 1,
    };
    s.dispose();
    return out;
  });
  assert.match(said.segment, /^segment has no option "topK" \(classify, detect, Segmentation\.detect take it\); it takes shortSide, window, stride/);
  assert.match(said.detect, /^Segmentation\.detect has no option "refine" \(segment, detect, ground take it\)/);
  assert.match(said.classify, /^classify has no option "threshold"/);
  assert.equal(said.ok, true, 'detect splits its options between segmenting and boxes');
  assert.deepEqual(page.problems, []);
  await page.close();
});
