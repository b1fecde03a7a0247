// groupseg/worker: the Segmenter API in a Web Worker the package starts itself.
import type {
  LoadOptions, SegmentOptions, DetectOptions, ImageInput, Detection, Grounding, Groups, TemplatePreset,
  Segmentation as MainThreadSegmentation, Phrase,
} from './index.js';

export { paintLabels, paintGroups, groupColour, CACHE_NAME, DEMO_MODEL, isCached } from './index.js';
export type {
  LoadOptions, SegmentOptions, DetectOptions, ImageInput, Detection, Grounding, Groups, TemplatePreset, Progress, Box,
  Phrase, StageGroups, ClassSummary, PaintOptions, Backend,
} from './index.js';

/** A segmentation computed in the worker: the same fields and helpers; detect and ground run in the worker. */
export interface Segmentation extends Omit<MainThreadSegmentation, 'detect' | 'ground'> {
  detect(options?: DetectOptions): Promise<Detection[]>;
  ground(caption: string, options?: DetectOptions): Promise<Grounding[]>;
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
  readonly backend: string;
  readonly notes: string[];
  /** Threads the WebAssembly path runs on in the worker (more than one on a cross-origin isolated page). */
  readonly threads: number;
  segment(image: ImageInput | EncodedImage, labels: string | string[], options?: SegmentOptions): Promise<Segmentation>;
  encode(image: ImageInput, options?: SegmentOptions): Promise<EncodedImage>;
  classify(image: ImageInput, labels: string | string[], options?: { templates?: string[] | TemplatePreset; topK?: number }): Promise<{ label: string; score: number }[]>;
  detect(image: ImageInput | EncodedImage, labels: string | string[], options?: SegmentOptions & DetectOptions): Promise<Detection[]>;
  ground(image: ImageInput | EncodedImage, caption: string, options?: SegmentOptions & DetectOptions): Promise<Grounding[]>;
  groups(image: ImageInput | EncodedImage, options?: SegmentOptions): Promise<Groups>;
  /** A caption's phrases, as `phrasesOf` finds them. */
  phrases(caption: string): Promise<Phrase[]>;
  /** The labels a caption is segmented by, as `phraseLabels` gives them. */
  phraseLabels(caption: string): Promise<string[]>;
  /** Frees the model and stops the worker. */
  dispose(): void;
}
