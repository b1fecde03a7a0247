// The page's modes beside Segment, on one held-out shapes scene with the built-in demo (CPU path):
// Detect, Ground, Classify and Groups each give what the native CLI gives for the same photo, and show
// it (screenshots in test-out/page-<mode>.png).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serve, launch, newPage, fixtures, outDir, dropPhoto, modelSettled, cli, done } from './harness.mjs';

let server, browser;
before(async () => { server = await serve(); browser = await launch(); });
after(async () => { await browser?.close(); server?.close(); });

const meta = JSON.parse(await readFile(join(fixtures, 'shapes-eval', 'labels.json'), 'utf8'));
// Held-out scene 38: a red triangle, a purple star and a pink circle (then two distractor labels).
const SCENE = 38;
const labels = meta.scenes[SCENE].labels;
const phrases = labels.slice(0, -2);
const caption = `a ${phrases[0]} next to a ${phrases[1]} and a ${phrases[2]}, not a green cross`;

/** The scene drawn 4× larger (nearest neighbour), as a PNG file both the page and the CLI read. */
async function bigScene(page) {
  const b64 = (await readFile(join(fixtures, 'shapes-eval', `${SCENE}`.padStart(3, '0') + '.png'))).toString('base64');
  const png = await page.evaluate(async (b64) => {
    const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
    const canvas = new OffscreenCanvas(bitmap.width * 4, bitmap.height * 4);
    const ctx = canvas.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const blob = await canvas.convertToBlob({ type: 'image/png' });
    return btoa(String.fromCharCode(...new Uint8Array(await blob.arrayBuffer())));
  }, b64);
  const path = join(outDir, 'family-scene.png');
  await writeFile(path, Buffer.from(png, 'base64'));
  return path;
}

/** Runs the CLI (built-in demo, CPU) and gives its stdout. */
const groupseg = (args) => execFileSync(cli(), [...args, '--backend', 'cpu'], { encoding: 'utf8' });

/** Switches the page to `mode` and waits for the photo to be shown in it. */
async function switchTo(page, mode) {
  await page.check(`input[name=mode][value=${mode}]`);
  await page.waitForSelector(`.result[data-mode=${mode}]`, { timeout: 120_000 });
  await done(page);
  await page.screenshot({ path: join(outDir, `page-${mode}.png`), fullPage: true });
  await page.locator('.result').screenshot({ path: join(outDir, `result-${mode}.png`) });
}

test('detect, ground, classify and groups on the page give what the CLI gives, on one scene', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/?backend=cpu`);
  await modelSettled(page, 'demo');
  const photo = await bigScene(page);
  await page.fill('#labels', labels.join(', '));
  await dropPhoto(page, photo, 'scene.png');
  await done(page);
  // Names written on the regions (NVlabs' input_pred_label): the canvas changes where they go.
  const pixels = () => page.$eval('.result canvas', (c) => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data));
  const plain = await pixels();
  await page.check('.result input.names');
  await page.waitForSelector('.result canvas[data-names=drawn]');
  const named = await pixels();
  const changed = plain.filter((v, i) => v !== named[i]).length;
  assert.ok(changed > 0, 'names are drawn');
  await page.locator('.result').screenshot({ path: join(outDir, 'result-segment.png') });

  // Detect: every object of the scene, each box as the CLI draws it.
  await switchTo(page, 'detect');
  const out = join(outDir, 'family-cli');
  groupseg(['detect', photo, '--labels', labels.join(', '), '--out', out]);
  const want = JSON.parse(await readFile(join(out, 'family-scene.detections.json'), 'utf8'));
  const rows = await page.$$eval('.found [data-label]', (els) => els.map((e) => ({ label: e.dataset.label, box: JSON.parse(e.dataset.box) })));
  assert.deepEqual(rows, want.map((d) => ({ label: d.label, box: d.box })));
  assert.deepEqual(rows.map((r) => r.label).sort(), [...phrases].sort(), 'the three shapes, nothing else');

  // Ground: each phrase of the caption boxed as the CLI boxes it; the absent one marked as nowhere.
  await switchTo(page, 'ground');
  await page.fill('#caption', caption);
  await page.press('#caption', 'Tab'); // leaving the field commits the caption
  await page.waitForFunction(() => /green cross/.test(document.querySelector('.caption')?.textContent ?? ''), null, { timeout: 60_000 });
  await done(page);
  await page.screenshot({ path: join(outDir, 'page-ground.png'), fullPage: true });
  groupseg(['ground', photo, '--caption', caption, '--out', out]);
  const grounded = JSON.parse(await readFile(join(out, 'family-scene.grounding.json'), 'utf8'));
  const marks = await page.$$eval('.caption mark', (els) => els.map((e) => ({
    phrase: e.dataset.phrase, text: e.textContent, box: JSON.parse(e.dataset.box), nowhere: e.classList.contains('nowhere'),
  })));
  assert.deepEqual(marks.map((m) => m.phrase), grounded.map((g) => g.phrase));
  assert.deepEqual(marks.map((m) => m.box), grounded.map((g) => g.box));
  assert.deepEqual(marks.map((m) => m.nowhere), grounded.map((g) => g.box === null));
  assert.deepEqual(marks.map((m) => m.text), marks.map((m) => m.phrase), 'each mark holds its phrase\'s words');
  assert.equal(marks.at(-1).phrase, 'a green cross');
  assert.ok(marks.at(-1).nowhere, 'the green cross is nowhere');
  // Hovering a phrase lights it (and paints only its region); hovering its region lights the phrase.
  await page.hover('.caption mark >> nth=1');
  assert.equal(await page.$eval('.caption mark:nth-of-type(2)', (e) => e.classList.contains('lit')), true);
  await page.screenshot({ path: join(outDir, 'page-ground-hover.png'), fullPage: true });
  await page.locator('.result').screenshot({ path: join(outDir, 'result-ground.png') });
  // The middle of the circle's box lies in its region (the star's need not: the shipped model gives
  // the star's centre to the circle).
  const box = grounded[2].box;
  const canvas = page.locator('.result[data-mode=ground] canvas');
  const shown = await canvas.boundingBox();
  const scale = shown.width / (await canvas.evaluate((c) => c.width));
  await page.mouse.move(shown.x + ((box.xmin + box.xmax) / 2) * scale, shown.y + ((box.ymin + box.ymax) / 2) * scale);
  const lit = await page.$$eval('.caption mark.lit', (els) => els.map((e) => e.dataset.phrase));
  assert.deepEqual(lit, [grounded[2].phrase]);

  // Classify: the same ranking and probabilities as the CLI's.
  await switchTo(page, 'classify');
  const cliRanked = JSON.parse(groupseg(['classify', photo, '--labels', labels.join(', '), '--json']))[0].labels;
  const pageRanked = await page.$$eval('.ranked [data-label]', (els) => els.map((e) => ({ label: e.dataset.label, score: Number(e.dataset.score) })));
  assert.deepEqual(pageRanked.map((r) => r.label), cliRanked.map((r) => r.label));
  for (const [p, c] of pageRanked.map((r, i) => [r, cliRanked[i]])) assert.ok(Math.abs(p.score - c.score) < 1e-5, `${p.label}: ${p.score} vs ${c.score}`);
  assert.ok(phrases.includes(pageRanked[0].label), `most likely one of the scene's shapes, not ${pageRanked[0].label}`);

  // Groups: as many groups per grouping block as the CLI finds.
  await switchTo(page, 'groups');
  const cliGroups = groupseg(['groups', photo, '--out', out]).match(/stage \d+: \d+ groups/g);
  const pageGroups = await page.$$eval('.result[data-mode=groups] .controls label', (els) => els.map((e) => e.textContent.trim()));
  assert.deepEqual(pageGroups.map((t) => t.replace(/grouping block (\d+): (\d+) groups/, 'stage $1: $2 groups')), cliGroups);
  assert.ok(Number(cliGroups[0].match(/(\d+) groups/)[1]) >= 4, 'background and three shapes at least');

  assert.deepEqual(page.problems, []);
  await page.close();
});
