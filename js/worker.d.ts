// groupseg/worker: the Segmenter API in a Web Worker the package starts itself.
import type { LoadOptions, Segmentation as MainThreadSegmentation, SegmenterMethods } from './index.js';

export { paintLabels, paintGroups, CACHE_NAME, DEMO_MODEL, isCached } from './index.js';
export type {
  LoadOptions, EncodeOptions, SegmentOptions, ClassifyOptions, DetectOptions, BoxOptions, GroundOptions, GroundingOptions,
  GroupsOptions, CocoOptions, ImageInput, Detection, Grounding, Groups, TemplatePreset, Progress, Box, Phrase, StageGroups,
  ClassSummary, PaintOptions, Backend, SegmenterMethods, CocoFile, CocoRle,
} from './index.js';

/** A segmentation computed in the worker: the main thread's type (its detect, ground and toCoco
 * run in the worker). */
export interface Segmentation extends MainThreadSegmentation {}

/** A photo encoded in the worker. */
export declare class EncodedImage {
  readonly width: number;
  readonly height: number;
  readonly geometry: { shortSide?: number; window?: number; stride?: number };
  dispose(): void;
}

export declare class Segmenter {
  /** Starts the worker and loads the model there; `onProgress` runs on this thread. */
  static load(options?: LoadOptions): Promise<Segmenter>;
  static clearCache(): Promise<void>;
}
export interface Segmenter extends SegmenterMethods<Segmentation, EncodedImage> {}
