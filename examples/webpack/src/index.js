// A webpack app segmenting a picked photo with groupseg, off the main thread: `groupseg/worker` runs
// the model in a Web Worker the package starts itself. With no options, Segmenter.load() uses the
// shapes demo that ships inside the package; pass { modelUrl } for a real checkpoint.
import { Segmenter } from 'groupseg/worker';

const $ = (id) => document.getElementById(id);

Segmenter.load({ onProgress: (p) => { $('progress').value = p.progress; } }).then((segmenter) => {
  $('status').textContent = `Ready (${segmenter.backend}, ${segmenter.threads} thread${segmenter.threads === 1 ? '' : 's'}): pick a photo.`;
  document.body.dataset.ready = 'true';
  $('photo').onchange = async () => {
    const file = $('photo').files[0];
    if (!file) return;
    try {
      const bitmap = await createImageBitmap(file);
      const result = await segmenter.segment(bitmap, $('labels').value);
      const canvas = $('out');
      Object.assign(canvas, { width: result.width, height: result.height });
      const ctx = canvas.getContext('2d');
      ctx.drawImage(bitmap, 0, 0, result.width, result.height);
      ctx.putImageData(result.toImageData({ photo: ctx.getImageData(0, 0, result.width, result.height), opacity: 0.6 }), 0, 0);
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
}, (e) => { $('status').textContent = `Could not load the model: ${e.message}`; });
