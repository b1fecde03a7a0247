// Every operation with its own options type, on the main thread and in the worker: compiled by
// types.test.mjs against the built package's declarations.
import { Segmenter, Segmentation, DetectOptions } from '../../../pkg/index.js';
import * as InWorker from '../../../pkg/worker.js';

export async function everyOperation(s: Segmenter, w: InWorker.Segmenter, photo: Blob) {
  const r: Segmentation = await s.segment(photo, 'cat, sofa', { refine: true, backgroundThreshold: null });
  const encoded = await s.encode(photo, { shortSide: 448 });
  const again = await s.segment(encoded, ['cat'], { templates: 'nvlabs' });
  const boxes = await r.detect({ threshold: 0.2, topK: 3, nmsIou: 0.4 });
  const grounded = await again.ground('a cat', { minArea: 0.01 });
  const coco = await r.toCoco({ fileName: 'a.png' });
  const both = await s.toCoco([{ segmentation: r, fileName: 'a.png' }]);
  const ranked = await s.classify(photo, 'cat, dog', { templates: 'imagenet', topK: 1 });
  const options: DetectOptions = { refine: false, threshold: 0.3 };
  const found = await s.detect(photo, 'cat', options);
  const phrases = await s.ground(photo, 'a cat on a sofa', { threshold: 0.1, stride: 224 });
  const groups = await s.groups(encoded, { window: 448 });
  // The worker's API has the same types.
  const wr: InWorker.Segmentation = await w.segment(photo, 'cat');
  const sameShape: Segmentation = wr;
  const workerBoxes = await wr.detect({ topK: 1 });
  const workerCoco = await w.toCoco([{ segmentation: wr, fileName: 'b.png' }]);
  const labels: string[] = await w.phraseLabels('a cat');
  // Typed reports and what the module computed for drawing.
  const where: 'gpu' | 'cpu' = s.capabilities.device;
  const threads: number = w.capabilities.threads;
  const colour: number = groups.stages[0].colours[0];
  const nameAt: number = boxes[0].anchor.x + workerBoxes[0].anchor.y;
  return [where, threads, colour, nameAt, boxes, grounded, coco.annotations[0].segmentation.counts, both, ranked, found, phrases, groups, sameShape, workerBoxes, workerCoco, labels, await s.phrases('a dog')];
}
