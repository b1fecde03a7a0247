// The page with nothing given: it loads the built-in shapes demo, and paints a generated scene as the
// native CLI does (which uses the same demo when given no model), on the CPU path and on WebGPU
// (SwiftShader). Changing the labels re-paints without running the image encoder again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serve, launch, newPage, root, fixtures, outDir, dropPhoto, modelSettled, compareMask, cli, done } from './harness.mjs';

let server, browser;
before(async () => { server = await serve(); browser = await launch(); });
after(async () => { await browser?.close(); server?.close(); });

const scenes = join(fixtures, 'shapes-eval');
const meta = JSON.parse(await readFile(join(scenes, 'labels.json'), 'utf8'));

/** Held-out scene `i`, drawn 4× larger (smoothly) in the browser so that a person can see it, as a PNG. */
async function bigScene(page, i) {
  const b64 = (await readFile(join(scenes, `${String(i).padStart(3, '0')}.png`))).toString('base64');
  const png = await page.evaluate(async (b64) => {
    const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
    const canvas = new OffscreenCanvas(bitmap.width * 4, bitmap.height * 4);
    canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const blob = await canvas.convertToBlob({ type: 'image/png' });
    return btoa(String.fromCharCode(...new Uint8Array(await blob.arrayBuffer())));
  }, b64);
  const path = join(outDir, `scene-${i}.png`);
  await writeFile(path, Buffer.from(png, 'base64'));
  return path;
}

/** The CLI's mask for `photo` with the built-in demo; its URL on the test server. */
function cliMask(photo, labels, name) {
  const out = join(outDir, name);
  execFileSync(cli(), ['segment', photo, '--labels', labels, '--backend', 'cpu', '--out', out], { stdio: 'inherit' });
  const stem = photo.split('/').pop().replace(/\.png$/, '');
  return `/out/${name}/${stem}.mask.png`;
}

async function demoPage(backend) {
  const page = await newPage(browser);
  await page.goto(`${server.url}/?backend=${backend}`);
  await modelSettled(page, 'demo');
  assert.match(await page.textContent('#status'), /ready/);
  assert.match(await page.textContent('#backend-used'), /Shapes demo/);
  return page;
}

for (const [backend, ran, tolerance] of [['cpu', /CPU/, 0], ['webgpu', /GPU: .* through WebGPU/, 0.002]]) {
  test(`with no model given, the page paints a scene with the shapes demo as the CLI does (${backend})`, async () => {
    const page = await demoPage(backend);
    assert.match(await page.textContent('#backend-used'), ran);
    assert.match(await page.inputValue('#labels'), /red circle/, 'labels suited to the demo');
    const labels = meta.scenes[1].labels.join(', ');
    const photo = await bigScene(page, 1);
    const mask = cliMask(photo, labels, `cli-demo-${backend}`);
    await page.fill('#labels', labels);
    await dropPhoto(page, photo, 'scene.png');
    await done(page);
    await page.screenshot({ path: join(outDir, `page-demo-${backend}.png`), fullPage: true });
    // The legend lists the classes painted, each one of the labels or background.
    const rows = await page.locator('.legend .chip').allTextContents();
    assert.ok(rows.length > 0, 'a legend');
    for (const row of rows) assert.ok(['background', ...meta.scenes[1].labels].some((l) => row.startsWith(`${l} `)), row);
    const diff = await compareMask(page, mask);
    assert.equal(diff.size, undefined, `mask sizes differ: ${diff.size}`);
    // WebGPU sums in another order than the CPU: a pixel on a near tie may flip, no more.
    assert.ok(diff.differing <= tolerance * diff.pixels, `${diff.differing} of ${diff.pixels} pixels differ from the CLI's mask`);
    console.log(`${backend}: ${diff.differing} of ${diff.pixels} pixels differ from the CLI's mask`);
    assert.deepEqual(page.problems, []);
    await page.close();
  });
}

/**
 * Each class of the scene's true mask (`NNN-mask.png`: global class ids) against what the page
 * painted over it, read from the result's mask view through the legend's colours: for every true
 * class, the share of its pixels painted with its own label (background included). `nth`: which
 * result, newest first.
 */
async function paintedAgainstTruth(page, i, nth = 0) {
  const result = page.locator('.result').nth(nth);
  await result.locator('input[value=mask]').click();
  const mask = `/fixtures/shapes-eval/${String(i).padStart(3, '0')}-mask.png`;
  return result.evaluate(async (box, { mask, classes }) => {
    const canvas = box.querySelector('canvas');
    const painted = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const byColour = new Map([...box.querySelectorAll('.legend .chip')].map((row) => {
      const rgb = row.querySelector('.swatch').style.background.match(/\d+/g).join(',');
      return [rgb, row.textContent.replace(/ [\d.]+ %.*$/, '')];
    }));
    const bitmap = await createImageBitmap(await (await fetch(mask)).blob());
    const c = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d');
    c.drawImage(bitmap, 0, 0);
    const truth = c.getImageData(0, 0, bitmap.width, bitmap.height).data;
    const scale = canvas.width / bitmap.width;
    const hits = {};
    for (let y = 0; y < canvas.height; y++) {
      for (let x = 0; x < canvas.width; x++) {
        const t = classes[truth[4 * (Math.floor(y / scale) * bitmap.width + Math.floor(x / scale))]];
        const p = 4 * (y * canvas.width + x);
        const label = byColour.get(`${painted[p]},${painted[p + 1]},${painted[p + 2]}`);
        hits[t] ??= { right: 0, pixels: 0 };
        hits[t].pixels++;
        if (label === t) hits[t].right++;
      }
    }
    return Object.fromEntries(Object.entries(hits).map(([k, v]) => [k, v.right / v.pixels]));
  }, { mask, classes: meta.classes });
}

// A held-out scene (seed 38, never seen in training): a red triangle, a purple star and a pink
// circle on a checkered background, labelled with its three phrases and two distractors.
const SCENE = 38;

test('with no model given, the page paints each shape of a held-out scene with its own phrase', async () => {
  // NVlabs' inference (refinement off): with it on, this scene's star keeps 30 % of its pixels (the
  // README's picture); the refined default is scored over 40 scenes in truth.test.mjs.
  const page = await demoPage('cpu');
  const labels = meta.scenes[SCENE].labels;
  await page.fill('#labels', labels.join(', '));
  await page.evaluate(() => { document.getElementById('refine').checked = false; });
  await dropPhoto(page, await bigScene(page, SCENE), 'scene.png');
  await done(page);
  await page.screenshot({ path: join(outDir, 'page-demo-segments.png'), fullPage: true });
  const shares = await paintedAgainstTruth(page, SCENE);
  console.log('share of each true class painted with its own label, unrefined:', JSON.stringify(shares));
  assert.ok(Object.keys(shares).length === 4, `background and three shapes: ${JSON.stringify(shares)}`);
  for (const [label, share] of Object.entries(shares)) {
    assert.ok(share >= 0.5, `${label}: only ${(100 * share).toFixed(0)} % of its pixels painted as ${label}`);
  }
  assert.deepEqual(page.problems, []);
  await page.close();

  // The page as it opens (refinement on), for the README's picture: shares logged, not asserted.
  const refined = await demoPage('cpu');
  await refined.fill('#labels', labels.join(', '));
  await dropPhoto(refined, join(outDir, `scene-${SCENE}.png`), 'scene.png');
  await done(refined);
  console.log('share of each true class painted with its own label, refined:', JSON.stringify(await paintedAgainstTruth(refined, SCENE)));
  await refined.locator('.result input[value=overlay]').click();
  await refined.locator('.result').screenshot({ path: join(outDir, 'result-demo-segments.png') });
  assert.deepEqual(refined.problems, []);
  await refined.close();
});

test('the sample scenes button paints three held-out scenes, each shape with its own phrase', async () => {
  const page = await demoPage('cpu');
  assert.ok(await page.isVisible('#samples'), 'offered with the shapes demo');
  await page.click('#samples');
  await done(page);
  const sample = JSON.parse(await readFile(join(root, 'www', 'samples', 'samples.json'), 'utf8'));
  assert.equal(await page.inputValue('#labels'), sample.labels.join(', '));
  await page.screenshot({ path: join(outDir, 'page-samples.png'), fullPage: true });
  const names = await page.locator('.result > div:first-child').allTextContents();
  assert.equal(names.length, 3, JSON.stringify(names));
  for (const [nth, name] of names.entries()) {
    const seed = Number(name.match(/scene-(\d+)\.png/)[1]);
    const shares = await paintedAgainstTruth(page, seed, nth);
    console.log(`scene ${seed}: share of each true class painted with its own label:`, JSON.stringify(shares));
    assert.equal(Object.keys(shares).length, meta.scenes[seed].labels.length - 1, JSON.stringify(shares));
    for (const [label, share] of Object.entries(shares)) {
      assert.ok(share >= 0.5, `scene ${seed}, ${label}: only ${(100 * share).toFixed(0)} % painted as ${label}`);
    }
  }
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('new labels re-paint a photo without running the image encoder again', async () => {
  const page = await demoPage('cpu');
  const photo = await bigScene(page, 2);
  const [first, second] = [meta.scenes[2].labels, [...meta.scenes[2].labels].reverse().slice(1)].map((l) => l.join(', '));
  await page.fill('#labels', first);
  await dropPhoto(page, photo, 'scene.png');
  await done(page);
  assert.doesNotMatch(await page.textContent('.took'), /labels only/);
  await page.fill('#labels', second);
  await page.press('#labels', 'Tab'); // leaving the field commits the labels
  await page.waitForFunction(() => /labels only/.test(document.querySelector('.took')?.textContent ?? ''), null,
    { timeout: 60_000 });
  await done(page);
  // Same picture as segmenting afresh with the new labels.
  const diff = await compareMask(page, cliMask(photo, second, 'cli-relabel'));
  assert.equal(diff.differing, 0, `${diff.differing} of ${diff.pixels} pixels differ from a fresh segmentation`);
  await page.screenshot({ path: join(outDir, 'page-relabel.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
  await page.close();
});

test('the page fits a phone screen: no sideways scrolling, the result within the width', async () => {
  const page = await newPage(browser, { width: 390, height: 844 });
  await page.goto(`${server.url}/?backend=cpu`);
  await modelSettled(page, 'demo');
  await dropPhoto(page, await bigScene(page, 4), 'scene.png');
  await done(page);
  const { scroll, width, canvas } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
    canvas: document.querySelector('.result canvas').getBoundingClientRect().right,
  }));
  await page.screenshot({ path: join(outDir, 'page-phone.png'), fullPage: true });
  assert.ok(scroll <= width, `the page is ${scroll} px wide on a ${width} px screen`);
  assert.ok(canvas <= width, `the result reaches ${canvas} px on a ${width} px screen`);
  assert.deepEqual(page.problems, []);
  await page.close();
});
