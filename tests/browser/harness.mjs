// What every browser test needs: the page and the fixtures served on 127.0.0.1, and Debian's
// Chromium started headless with WebGPU (SwiftShader) enabled.
import { createServer } from 'node:http';
import { existsSync } from 'node:fs';
import { readFile, mkdir, stat } from 'node:fs/promises';
import { extname, join, normalize, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const fixtures = join(root, 'tests', 'fixtures');
/** Screenshots and other artefacts, to look at after a run. */
export const outDir = join(root, 'test-out');

const types = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
  '.json': 'application/json', '.png': 'image/png', '.txt': 'text/plain', '.css': 'text/css',
};

/**
 * Serves `site` (default `www/`) at `/`, `tests/fixtures/` at `/fixtures/` and `test-out/` at `/out/`;
 * resolves to the base URL. Cross-origin isolated (COOP + COEP, as `./build.sh serve` and the README
 * ask of a site), so the page gets threads, unless `isolated: false`; `hang(path)` picks requests
 * left unanswered, `hold(path)` those answered once the promise it gives settles. With `cacheable`,
 * responses may be kept ten minutes, as static hosts say (GitHub Pages: `max-age=600`); by default
 * they say nothing, so every visit asks again.
 */
export async function serve(site = join(root, 'www'), { isolated = true, hang = () => false, hold = () => null, cacheable = false } = {}) {
  const isolation = isolated ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } : {};
  const requests = [];
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    requests.push(path);
    // A request `hang(path)` picks is never answered (a stalled load), until the server closes.
    if (hang(path)) return;
    await hold(path);
    const [base, rel] = path.startsWith('/fixtures/') ? [fixtures, path.slice('/fixtures/'.length)]
      : path.startsWith('/out/') ? [outDir, path.slice('/out/'.length)]
        : [site, path === '/' ? 'index.html' : path.slice(1)];
    const file = normalize(join(base, rel));
    if (!file.startsWith(base)) { res.writeHead(403).end(); return; }
    try {
      const body = await readFile(file);
      // Sizes said up front, as static servers and the Hugging Face hub do.
      const caching = cacheable ? { 'cache-control': 'max-age=600', 'last-modified': (await stat(file)).mtime.toUTCString() } : {};
      res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream', 'content-length': body.length, ...isolation, ...caching }).end(body);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}`);
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${server.address().port}`, requests, close: () => { server.close(); server.closeAllConnections(); } };
}

/**
 * Chromium with the flags this machine needs (no network chatter, a fresh profile) and
 * `--enable-unsafe-webgpu`, without which `navigator.gpu.requestAdapter()` gives null headless.
 */
export async function launch(extraArgs = []) {
  await mkdir(outDir, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--no-first-run', '--disable-quic', '--enable-unsafe-webgpu', ...extraArgs,
    ],
  });
}

/** A new page whose console errors and uncaught exceptions are collected in `page.problems`. */
export async function newPage(browser, viewport = { width: 1100, height: 900 }) {
  const page = await browser.newPage({ viewport });
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`uncaught: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') page.problems.push(`console: ${m.text()}`); });
  return page;
}

/** One tensor of a safetensors file, as a typed array (the fixtures' expected outputs). */
export async function safetensor(path, name) {
  const bytes = await readFile(path);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8'));
  const t = header[name];
  if (!t) throw new Error(`${path} has no tensor ${name}`);
  const [start, end] = t.data_offsets;
  const data = bytes.subarray(8 + headerLen + start, 8 + headerLen + end);
  const copy = new Uint8Array(data).buffer;
  const arrays = { I32: Int32Array, I64: BigInt64Array, F32: Float32Array };
  return { shape: t.shape, data: new arrays[t.dtype](copy) };
}

/** Chooses the tiny fixture model's files in the page's file picker and waits for it to load. */
export async function loadFixtureModel(page, model = 'tiny-3stage') {
  await page.waitForFunction(() => document.getElementById('status').textContent !== '');
  const dir = join(fixtures, model);
  await page.setInputFiles('#model', ['config.json', 'model.safetensors', 'tokenizer.json', 'preprocessor_config.json']
    .map((f) => join(dir, f)));
  await modelSettled(page, 'files');
  const status = await page.textContent('#status');
  if (!/ready/.test(status)) throw new Error(status);
}

/** Drops a file on the page's drop zone through a real drop event. */
export async function dropPhoto(page, path, name, type = 'image/png') {
  const b64 = (await readFile(path)).toString('base64');
  const dataTransfer = await page.evaluateHandle(({ b64, name, type }) => {
    const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], name, { type }));
    return dt;
  }, { b64, name, type });
  await page.dispatchEvent('#drop', 'drop', { dataTransfer });
}

/** Waits until the page's model load (from `source`: demo, url or files) has finished, well or not. */
export async function modelSettled(page, source = null) {
  await page.waitForFunction((source) => ['ready', 'failed'].includes(document.body.dataset.model)
    && (!source || document.body.dataset.source === source), source, { timeout: 120_000 });
}

/**
 * Compares the first result's mask view (the page's "mask" radio) with a mask PNG at `url`:
 * `{differing, pixels, colours}` (colours: distinct colours in the reference), or `{size}` when the
 * sizes differ.
 */
export async function compareMask(page, url) {
  await page.click('.result input[value=mask]');
  return page.evaluate(async (url) => {
    const canvas = document.querySelector('.result canvas');
    const ours = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const bitmap = await createImageBitmap(await (await fetch(url)).blob());
    const c = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d');
    c.drawImage(bitmap, 0, 0);
    const cli = c.getImageData(0, 0, bitmap.width, bitmap.height).data;
    if (bitmap.width !== canvas.width || bitmap.height !== canvas.height) return { size: [bitmap.width, bitmap.height] };
    let differing = 0;
    const colours = new Set();
    for (let i = 0; i < cli.length; i += 4) {
      if (cli[i] !== ours[i] || cli[i + 1] !== ours[i + 1] || cli[i + 2] !== ours[i + 2]) differing++;
      colours.add(`${cli[i]},${cli[i + 1]},${cli[i + 2]}`);
    }
    return { differing, pixels: cli.length / 4, colours: colours.size };
  }, url);
}

/** The CLI built by `cargo test` (or a release build). */
export function cli() {
  const found = ['debug', 'release'].map((p) => join(root, 'target', p, 'groupseg')).find(existsSync);
  if (!found) throw new Error('build the CLI first (cargo build)');
  return found;
}

/** Waits until the page has segmented everything it was given. */
export const done = (page) => page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null,
  { timeout: 180_000 });
