// Each engine as its users get it: Chromium, Firefox ESR and WebKitGTK (Safari's engine). What the
// package says it runs on there (GPU or why not, threads or why one, the module), and the page with
// the shapes demo painting its sample scenes. Their versions are printed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { serve, outDir } from './harness.mjs';
import { ENGINES, openEngine } from './engines.mjs';

let server, plainServer;
before(async () => { server = await serve(); plainServer = await serve(undefined, { isolated: false }); });
after(() => { server?.close(); plainServer?.close(); });

/** What each engine is expected to offer on this machine (no GPU; a cross-origin isolated page). */
const EXPECTED = {
  // A software adapter (SwiftShader) only: 'auto' keeps to the CPU and says why.
  chromium: { threads: 2, module: 'threaded', whyNotGpu: /^the only adapter, .*, is software emulation, slower than the CPU path$/ },
  // Firefox ESR on Linux has no WebGPU. Its threads are checked on a page that is not cross-origin
  // isolated, so one thread: on an isolated page the threaded module's start was seen to stall in
  // fresh Firefox profiles (see the README's Tests), which would fail this test by chance.
  firefox: { threads: 1, module: 'single-threaded', whyNotGpu: /^this browser has no WebGPU$/, whyOneThread: /cross-origin isolated/, isolated: false },
  // WebKitGTK isolates the page but gives no SharedArrayBuffer, and has no WebGPU.
  webkit: { threads: 1, module: 'single-threaded', whyNotGpu: /^this browser has no WebGPU$/, whyOneThread: /shared memory \(SharedArrayBuffer\)/ },
};

for (const engine of ENGINES) {
  test(`${engine}: the package says truly what it runs on, and the page paints the sample scenes`, async () => {
    const browser = await openEngine(engine);
    try {
      const page = await browser.newPage();
      console.log(`engine: ${browser.version}`);
      // The page: the shapes demo loads by itself; its sample scenes paint with their labels.
      const want = EXPECTED[engine];
      await page.goto(`${(want.isolated === false ? plainServer : server).url}/`);
      const painted = await page.evaluate(async () => {
        const until = async (ok, what) => {
          for (let i = 0; i < 1200 && !ok(); i++) await new Promise((r) => setTimeout(r, 100));
          if (!ok()) throw new Error(`waited two minutes for ${what}: ${document.getElementById('status').textContent}`);
        };
        await until(() => ['ready', 'failed'].includes(document.body.dataset.model), 'the model');
        document.getElementById('samples').click();
        await until(() => document.getElementById('status').textContent === 'Done.' && document.querySelectorAll('.result canvas').length === 3, 'the samples');
        return {
          model: document.body.dataset.model,
          sentence: document.getElementById('backend-used').textContent,
          results: [...document.querySelectorAll('.result')].map((r) => [...r.querySelectorAll('.legend .chip')].map((c) => c.textContent)),
        };
      });
      // Then the package in a worker of its own, once the page's model has loaded (two threaded
      // modules starting at once in one Firefox page were seen to leave one in 'compile').
      const caps = await page.evaluate(async () => {
        const { Segmenter } = await import('/pkg/worker.js');
        const s = await Segmenter.load({ backend: 'auto' });
        const out = { ...s.capabilities, backend: s.backend, notes: s.notes };
        s.dispose();
        return out;
      });
      console.log(`${engine}: ${JSON.stringify(caps)}`);
      assert.equal(caps.device, 'cpu', caps.backend);
      assert.match(caps.whyNotGpu, want.whyNotGpu);
      assert.equal(caps.threads, want.threads);
      assert.equal(caps.module, want.module);
      if (want.whyOneThread) assert.match(caps.whyOneThread, want.whyOneThread);
      else assert.equal(caps.whyOneThread, null);

      // WebDriver's screenshot is of the viewport: the results brought into it.
      await page.evaluate(async () => document.getElementById('results').scrollIntoView());
      await page.screenshot(join(outDir, `engine-${engine}-samples.png`));
      assert.equal(painted.model, 'ready');
      assert.match(painted.sentence, new RegExp(`Running on CPU .*${want.threads} thread`));
      assert.equal(painted.results.length, 3);
      for (const chips of painted.results) {
        assert.ok(chips.some((c) => !c.startsWith('background')), `a shape labelled: ${chips}`);
      }
      assert.deepEqual(page.problems, [], browser.reportsProblems ? 'console errors' : '');
      await page.close();
    } finally {
      await browser.close();
    }
  });
}
