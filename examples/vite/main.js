// The whole integration: load a model, segment a picked photo, paint the result.
// With no options, Segmenter.load() uses the shapes demo model that ships inside the package;
// pass { modelUrl: 'https://huggingface.co/nvidia/groupvit-gcc-redcaps/resolve/main/' } for photos.
import { Segmenter } from 'groupseg';

const $ = (id) => document.getElementById(id);
const segmenter = await Segmenter.load();
$('status').textContent = `Ready (${segmenter.backend}): pick a photo.`;
document.body.dataset.ready = 'true';

$('photo').onchange = async () => {
  const file = $('photo').files[0];
  if (!file) return;
  try {
    const bitmap = await createImageBitmap(file);
    const result = await segmenter.segment(bitmap, $('labels').value);
    const canvas = $('out');
    canvas.width = result.width;
    canvas.height = result.height;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(bitmap, 0, 0, result.width, result.height);
    const photo = ctx.getImageData(0, 0, result.width, result.height);
    ctx.putImageData(result.toImageData({ photo, opacity: 0.6 }), 0, 0);
    $('legend').replaceChildren(...result.summary.filter((c) => c.share > 0).map((c) => {
      const li = document.createElement('li');
      li.textContent = `${c.label}: ${(100 * c.share).toFixed(1)} %`;
      return li;
    }));
    $('status').textContent = 'Done.';
  } catch (e) {
    $('status').textContent = `Could not segment ${file.name}: ${e.message}`;
  }
};
