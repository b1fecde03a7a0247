// What every browser test needs: the page and the fixtures served on 127.0.0.1, and Debian's
// Chromium started headless with WebGPU (SwiftShader) enabled.
import { createServer } from 'node:http';
import { readFile, mkdir } from 'node:fs/promises';
import { extname, join, normalize, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const fixtures = join(root, 'tests', 'fixtures');
/** Screenshots and other artefacts, to look at after a run. */
export const outDir = join(root, 'test-out');

const types = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
  '.json': 'application/json', '.png': 'image/png', '.txt': 'text/plain',
};

/** Serves `www/` at `/` and `tests/fixtures/` at `/fixtures/`; resolves to the base URL. */
export async function serve() {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const [base, rel] = path.startsWith('/fixtures/')
      ? [fixtures, path.slice('/fixtures/'.length)]
      : [join(root, 'www'), path === '/' ? 'index.html' : path.slice(1)];
    const file = normalize(join(base, rel));
    if (!file.startsWith(base)) { res.writeHead(403).end(); return; }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' }).end(body);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}`);
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/**
 * Chromium with the flags this machine needs (no network chatter, a fresh profile) and
 * `--enable-unsafe-webgpu`, without which `navigator.gpu.requestAdapter()` gives null headless.
 */
export async function launch() {
  await mkdir(outDir, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--no-first-run', '--disable-quic', '--enable-unsafe-webgpu',
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
