// Options, one set per operation: each operation takes its own and refuses any other by name
// (one bag for every operation let `segment` ignore `topK` silently).

/** The size options, fixed when a photo is encoded. */
export const GEOMETRY = ['shortSide', 'window', 'stride'];

const LABELLING = ['backgroundThreshold', 'refine', 'refineIterations', 'templates', 'nothingPrompt'];
const SEGMENT = [...GEOMETRY, ...LABELLING];
const BOXES = ['threshold', 'topK', 'minArea', 'nmsIou'];
const GROUNDING = ['threshold', 'minArea'];

/** What each operation takes. */
const TAKES = {
  segment: SEGMENT,
  encode: GEOMETRY,
  classify: ['templates', 'topK'],
  detect: [...SEGMENT, ...BOXES],
  ground: [...SEGMENT, ...GROUNDING],
  groups: GEOMETRY,
  'Segmentation.detect': BOXES,
  'Segmentation.ground': GROUNDING,
  'Segmentation.toCoco': ['fileName'],
};

/**
 * `options` for operation `op`, without the keys left undefined (the module reads `null` as
 * "none", as documented); an option the operation does not take is refused by name.
 */
export function optionsFor(op, options) {
  const takes = TAKES[op];
  const out = {};
  for (const [k, v] of Object.entries(options ?? {})) {
    if (v === undefined) continue;
    if (!takes.includes(k)) {
      const others = Object.keys(TAKES).filter((o) => TAKES[o].includes(k));
      throw new Error(`${op} has no option ${JSON.stringify(k)}${others.length ? ` (${others.join(', ')} ${others.length > 1 ? 'take' : 'takes'} it)` : ''}; it takes ${takes.join(', ')}`);
    }
    out[k] = v;
  }
  return out;
}

/** Only the keys of `options` that `op` takes (an operation handing its options on to a part). */
export function partFor(op, options) {
  return Object.fromEntries(Object.entries(options ?? {}).filter(([k]) => TAKES[op].includes(k)));
}
