// Options an operation does not take: each line must be a type error (types.test.mjs counts them).
import { Segmenter } from '../../../pkg/index.js';

export async function wrongOptions(s: Segmenter, photo: Blob) {
  await s.segment(photo, 'cat', { topK: 1 });
  await s.classify(photo, 'cat', { refine: true });
  const r = await s.segment(photo, 'cat');
  await r.detect({ refine: true });
  await s.encode(photo, { threshold: 0.5 });
}
