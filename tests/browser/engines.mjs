// The three browser engines behind one small driver, so a test can run on each: Chromium (Debian's,
// through playwright-core), Firefox (Debian's firefox-esr, through puppeteer-core over WebDriver
// BiDi) and WebKitGTK (Safari's engine: Debian's WebKitWebDriver, plain W3C WebDriver over HTTP,
// under Xvfb). A page offers what every engine can do: go to a URL, evaluate an async function with
// an argument, take a screenshot, and say its console errors where the engine reports them.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import puppeteer from 'puppeteer-core';
import { launch, newPage } from './harness.mjs';

export const ENGINES = ['chromium', 'firefox', 'webkit'];

const FIREFOX = '/usr/bin/firefox-esr';
const WEBKIT_DRIVER = '/usr/bin/WebKitWebDriver';
const MINIBROWSER = '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';

/** Starts `name`: `{name, version, newPage(), close()}`. */
export async function openEngine(name) {
  if (name === 'chromium') return chromiumEngine();
  if (name === 'firefox') return firefoxEngine();
  if (name === 'webkit') return webkitEngine();
  throw new Error(`no engine ${name}`);
}

async function chromiumEngine() {
  const browser = await launch();
  return {
    name: 'chromium',
    version: `Chromium ${browser.version()}`,
    // Chromium reports console errors and uncaught exceptions.
    reportsProblems: true,
    async newPage() {
      const page = await newPage(browser);
      return {
        problems: page.problems,
        goto: (url) => page.goto(url),
        evaluate: (fn, arg) => page.evaluate(fn, arg),
        screenshot: (path) => page.screenshot({ path, fullPage: true }),
        close: () => page.close(),
      };
    },
    close: () => browser.close(),
  };
}

async function firefoxEngine() {
  if (!existsSync(FIREFOX)) throw new Error(`${FIREFOX} is missing: ./build.sh test installs Debian's firefox-esr`);
  const browser = await puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX, headless: true });
  return {
    name: 'firefox',
    version: `Firefox ${(await browser.version()).replace(/^firefox\//i, '')}`,
    reportsProblems: true,
    async newPage() {
      const page = await browser.newPage();
      await page.setViewport({ width: 1100, height: 900 });
      const problems = [];
      page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
      page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
      return {
        problems,
        goto: (url) => page.goto(url),
        evaluate: (fn, arg) => page.evaluate(fn, arg),
        screenshot: (path) => page.screenshot({ path, fullPage: true }),
        close: () => page.close(),
      };
    },
    close: () => browser.close(),
  };
}

/** A free TCP port on 127.0.0.1. */
async function freePort() {
  const server = createServer();
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

async function webkitEngine() {
  if (!existsSync(WEBKIT_DRIVER) || !existsSync(MINIBROWSER)) {
    throw new Error(`${WEBKIT_DRIVER} or ${MINIBROWSER} is missing: ./build.sh test installs Debian's webkit2gtk-driver`);
  }
  const children = [];
  const env = { ...process.env };
  if (!env.DISPLAY) {
    // WebKitGTK draws even headless: a virtual X display of its own.
    const display = `:${90 + (process.pid % 9)}`;
    children.push(spawn('Xvfb', [display, '-screen', '0', '1280x1000x24', '-nolisten', 'tcp'], { stdio: 'ignore' }));
    env.DISPLAY = display;
    await sleep(500);
  }
  const port = await freePort();
  const driver = spawn(WEBKIT_DRIVER, [`--port=${port}`], { env, stdio: 'ignore' });
  children.push(driver);
  const base = `http://127.0.0.1:${port}`;
  const call = async (method, path, body) => {
    const res = await fetch(`${base}${path}`, { method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body) });
    const json = await res.json();
    if (json.value?.error) throw new Error(`WebKitWebDriver ${path}: ${json.value.error}: ${json.value.message}`);
    return json.value;
  };
  let ready = false;
  for (let i = 0; i < 100 && !ready; i++) {
    ready = await fetch(`${base}/status`).then((r) => r.ok, () => false);
    if (!ready) await sleep(100);
  }
  if (!ready) throw new Error('WebKitWebDriver did not start');
  const sessions = [];
  const stop = async () => {
    for (const id of sessions) await call('DELETE', `/session/${id}`).catch(() => {});
    for (const c of children) c.kill();
  };
  let version = 'WebKitGTK';
  return {
    name: 'webkit',
    get version() { return version; },
    // W3C WebDriver has no console log: console errors are not seen here (exceptions inside
    // evaluated functions still fail them).
    reportsProblems: false,
    async newPage() {
      const session = await call('POST', '/session', {
        capabilities: { alwaysMatch: { browserName: 'MiniBrowser', 'webkitgtk:browserOptions': { binary: MINIBROWSER, args: ['--automation'] } } },
      });
      const id = session.sessionId;
      sessions.push(id);
      version = `WebKitGTK ${session.capabilities.browserVersion}`;
      await call('POST', `/session/${id}/timeouts`, { script: 600_000, pageLoad: 120_000 });
      await call('POST', `/session/${id}/window/rect`, { width: 1100, height: 900 }).catch(() => {});
      return {
        problems: [],
        goto: (url) => call('POST', `/session/${id}/url`, { url }),
        async evaluate(fn, arg) {
          // The function's source evaluated in the page, its promise settled into the callback.
          const script = `const done = arguments[arguments.length - 1];
            const fn = (0, eval)('(' + arguments[0] + ')');
            Promise.resolve().then(() => fn(arguments[1])).then((value) => done({ ok: true, value }),
              (e) => done({ ok: false, message: String((e && e.message) || e) }));`;
          const out = await call('POST', `/session/${id}/execute/async`, { script, args: [fn.toString(), arg ?? null] });
          if (!out.ok) throw new Error(out.message);
          return out.value;
        },
        async screenshot(path) {
          await writeFile(path, Buffer.from(await call('GET', `/session/${id}/screenshot`), 'base64'));
        },
        async close() {
          await call('DELETE', `/session/${id}`).catch(() => {});
          sessions.splice(sessions.indexOf(id), 1);
        },
      };
    },
    close: stop,
  };
}
