// groupseg/worker: the Segmenter API in a Web Worker the package starts itself.
import type {
  LoadOptions, SegmentOptions, DetectOptions, ImageInput, Detection, Grounding, Groups, TemplatePreset,
  Segmentation as MainThreadSegmentation, Phrase, SegmenterMethods, CocoOptions, CocoFile,
} from './index.js';

export { paintLabels, paintGroups, groupColour, CACHE_NAME, DEMO_MODEL, isCached } from './index.js';
export type {
  LoadOptions, SegmentOptions, DetectOptions, ImageInput, Detection, Grounding, Groups, TemplatePreset, Progress, Box,
  Phrase, StageGroups, ClassSummary, PaintOptions, Backend, SegmenterMethods, CocoOptions, CocoFile, CocoRle,
} from './index.js';

/** A segmentation computed in the worker: the same fields and helpers; detect and ground run in the worker. */
export interface Segmentation extends Omit<MainThreadSegmentation, 'detect' | 'ground' | 'toCoco'> {
  detect(options?: DetectOptions): Promise<Detection[]>;
  ground(caption: string, options?: DetectOptions): Promise<Grounding[]>;
  toCoco(options?: CocoOptions): Promise<CocoFile>;
}

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
export interface Segmenter extends SegmenterMethods<Segmentation, EncodedImage> {
  /** A caption's phrases, as `phrasesOf` finds them. */
  phrases(caption: string): Promise<Phrase[]>;
  /** The labels a caption is segmented by, as `phraseLabels` gives them. */
  phraseLabels(caption: string): Promise<string[]>;
}
