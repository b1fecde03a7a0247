// The page's COCO download, opened by pycocotools (tools/coco/check.py): the shapes demo segments
// three held-out scenes in the page, the "COCO file" button downloads them as one file, and its
// masks are the CLI's for the same photos and labels (whose masks tests/coco.rs checks against the
// label maps pixel for pixel).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serve, launch, newPage, root, fixtures, outDir, dropPhoto, modelSettled, cli, done } from './harness.mjs';

let server, browser;
before(async () => { server = await serve(); browser = await launch(); });
after(async () => { await browser?.close(); server?.close(); });

/** The Python with pycocotools that `./build.sh test` installs. */
function cocoPython() {
  const python = process.env.GROUPSEG_COCO_PYTHON ?? join(root, '.venv-coco', 'bin', 'python');
  if (!existsSync(python)) throw new Error(`${python} is missing: ./build.sh test installs pycocotools there`);
  return python;
}

test('the page downloads a COCO file of its segmented photos that pycocotools opens, masks as the CLI\'s', async () => {
  // The three scenes' own phrases.
  const labels = 'purple triangle, green cross, orange ring, orange star, pink cross, pink bar, yellow triangle, blue cross';
  const dir = join(outDir, 'coco-photos');
  await mkdir(dir, { recursive: true });
  const names = ['000.png', '001.png', '006.png'];
  for (const n of names) await copyFile(join(fixtures, 'shapes-eval', n), join(dir, `scene-${n}`));

  const page = await newPage(browser);
  await page.goto(`${server.url}/?backend=cpu`);
  await modelSettled(page, 'demo');
  assert.equal(await page.isVisible('#coco'), false, 'no COCO file before a photo is segmented');
  await page.fill('#labels', labels);
  for (const n of names) {
    await dropPhoto(page, join(dir, `scene-${n}`), `scene-${n}`);
    await done(page);
  }
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#coco')]);
  assert.equal(download.suggestedFilename(), 'groupseg-coco.json');
  const pageFile = join(outDir, 'page-coco.json');
  await download.saveAs(pageFile);
  assert.match(await page.textContent('#status'), /COCO file: 3 photos, \d+ annotations/);
  await page.screenshot({ path: join(outDir, 'page-coco.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
  await page.close();

  const file = JSON.parse(await readFile(pageFile, 'utf8'));
  assert.deepEqual(file.categories.map((c) => c.name), labels.split(', '));
  // The page shows the newest photo first; the file keeps the order they were given.
  assert.deepEqual(file.images.map((i) => i.file_name), names.map((n) => `scene-${n}`));

  const cliFile = join(outDir, 'cli-coco.json');
  execFileSync(cli(), ['segment', dir, '--labels', labels, '--backend', 'cpu', '--out', join(outDir, 'cli-coco'), '--coco', cliFile],
    { stdio: 'inherit' });
  const said = execFileSync(cocoPython(), [join(root, 'tools', 'coco', 'check.py'), 'same', pageFile, cliFile], { encoding: 'utf8' });
  console.log(said.trim());
  assert.match(said, /3 photos, [1-9]\d* masks the same in both files/);
});
