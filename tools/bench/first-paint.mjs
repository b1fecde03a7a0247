// A returning visitor's time to the first painted photo: the page (www/) in Debian's Chromium on a
// cross-origin isolated site, the model of the last visit in Cache Storage, a 640×480 photo given
// to the page's picker as soon as its DOM is there (a photo given while the model loads waits for
// it); timed from the navigation to the photo's label map painted, with where the time went, from
// the page's own performance marks (groupseg:load, :compile, :download, :prepare, :ready, :painted).
// Each variant (f32 and int8 weights, 1 and 2 threads) gets a fresh browser profile: a first visit
// that opens ?model=… and keeps it, then RUNS returning visits, each a new tab.
// Usage: node tools/bench/first-paint.mjs OUT   (OUT/model, OUT/model-int8, OUT/photo.png: ./build.sh bench-web's)
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { root, serve, launch, newPage } from '../../tests/browser/harness.mjs';
import { benchSite, median } from './pages.mjs';

const out = resolve(process.argv[2] ?? 'bench-out');
const RUNS = Number(process.env.FIRST_PAINT_RUNS ?? 3);
/** How long a load or a photo may take before the visit counts as stalled. */
const TIMEOUT = Number(process.env.FIRST_PAINT_TIMEOUT_MS ?? 300000);
const www = join(root, 'www');
const links = Object.fromEntries((await readdir(www)).map((n) => [n, join(www, n)]));
const site = await benchSite('first-paint', { ...links, model: join(out, 'model'), 'model-int8': join(out, 'model-int8') });
// The 640×480 photo tools/reference/reference.py writes beside the model (two 448 windows).
const photo = { name: 'photo.png', mimeType: 'image/png', buffer: await readFile(join(out, 'photo.png')) };

/** One returning visit: the page's marks (ms from the navigation) up to the first painted photo. */
async function visit(context, url) {
  const page = await newPage(context);
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  await page.setInputFiles('#photos', photo);
  try {
    await page.waitForFunction(() => performance.getEntriesByName('groupseg:painted').length, null, { timeout: TIMEOUT, polling: 50 });
  } catch (e) {
    const seen = await page.evaluate(() => ({ model: document.body.dataset.model, status: document.getElementById('status').textContent,
      result: document.querySelector('.result')?.textContent, marks: performance.getEntriesByType('mark').map((m) => m.name),
      progress: document.body.dataset.progress?.split(' ').slice(-3), bar: document.getElementById('progress-text').textContent }));
    throw new Error(`${url}: no photo painted (${JSON.stringify(seen)}; ${page.problems.join('; ')})`, { cause: e });
  }
  const marks = await page.evaluate(() => Object.fromEntries(performance.getEntriesByType('mark')
    .filter((m) => m.name.startsWith('groupseg:')).map((m) => [m.name.slice('groupseg:'.length), m.startTime])));
  marks.scripts = await page.evaluate(() => performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd);
  // The same photo again, as a second photo (encoded anew): what a photo costs once the module is warm.
  const again = await page.evaluate(() => performance.now());
  await page.setInputFiles('#photos', { ...photo, name: 'again.png' });
  await page.waitForFunction(() => performance.getEntriesByName('groupseg:painted').length > 1, null, { timeout: TIMEOUT, polling: 50 });
  marks.again = await page.evaluate((again) => performance.getEntriesByName('groupseg:painted')[1].startTime - again, again);
  const where = await page.textContent('#backend-used');
  const problems = page.problems;
  await page.close();
  if (problems.length) throw new Error(`the page reported: ${problems.join('; ')}`);
  return { ...marks, where };
}

const PHASES = [
  ['the page and its scripts', null, 'scripts'],
  ['the kept model found', 'scripts', 'load'],
  ['the worker starts', 'load', 'compile'],
  ['the WebAssembly module and threads start', 'compile', 'download'],
  ['model files from Cache Storage', 'download', 'prepare'],
  ['the model is prepared', 'prepare', 'ready'],
  ['the photo encoded, segmented, painted', 'ready', 'painted'],
];

// As a static host serves a site (GitHub Pages: `max-age=600`): the browser keeps the scripts and
// the WebAssembly module, and V8 its compiled code, between visits. FIRST_PAINT_CACHEABLE=0: a
// server that says nothing.
const cacheable = process.env.FIRST_PAINT_CACHEABLE !== '0';
const server = await serve(site, { cacheable });
const browser = await launch();
console.log(`Chromium ${browser.version()}; ${RUNS} returning visits per variant; photo 640×480; responses ${cacheable ? 'kept 10 minutes' : 'not kept'}`);
const rows = [];
try {
  for (const [weights, dir] of [['f32', 'model'], ['int8', 'model-int8']]) {
    for (const threads of [1, 2]) {
      const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
      // The first visit: a link names the model, the person keeps it.
      const first = await newPage(context);
      await first.goto(`${server.url}/?model=${encodeURIComponent(`${server.url}/${dir}/`)}&threads=${threads}`);
      await first.waitForFunction(() => ['ready', 'failed'].includes(document.body.dataset.model), null, { timeout: TIMEOUT });
      if (await first.evaluate(() => document.body.dataset.model) !== 'ready') throw new Error(`${dir}: ${await first.textContent('#status')}`);
      await first.click('#keep-model');
      await first.close();
      const visits = [];
      for (let i = 0; i < RUNS; i++) visits.push(await visit(context, `${server.url}/?threads=${threads}`));
      await context.close();
      const total = median(visits.map((v) => v.painted));
      const phases = PHASES.map(([name, from, to]) => [name, median(visits.map((v) => v[to] - (from ? v[from] : 0)))]);
      const again = median(visits.map((v) => v.again));
      rows.push({ weights, threads, total, phases, again });
      console.log(`${weights}, ${threads} thread(s): first photo painted ${(total / 1000).toFixed(2)} s after the navigation `
        + `(visits: ${visits.map((v) => (v.painted / 1000).toFixed(2)).join(', ')} s; ${visits[0].where})`);
      for (const [name, ms] of phases) console.log(`  ${name.padEnd(40)} ${ms.toFixed(0).padStart(6)} ms`);
      console.log(`  ${'(the same photo again, given to the page)'.padEnd(40)} ${again.toFixed(0).padStart(6)} ms`);
    }
  }
} finally {
  await browser.close();
  server.close();
}
console.log('\n| weights | threads | open page → first label map (s) | page | kept model found | worker | module | files | prepare | photo | the photo again |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const ms = r.phases.map(([, t]) => t.toFixed(0)).join(' | ');
  console.log(`| ${r.weights} | ${r.threads} | **${(r.total / 1000).toFixed(2)}** | ${ms} | ${r.again.toFixed(0)} |`);
}
