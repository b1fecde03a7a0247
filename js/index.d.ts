/** Anything `segment` and `classify` take as a photo. */
export type ImageInput =
  | Blob
  | ArrayBuffer
  | Uint8Array
  | ImageData
  | ImageBitmap
  | HTMLImageElement
  | HTMLCanvasElement
  | OffscreenCanvas
  | HTMLVideoElement;

export type Backend = 'auto' | 'webgpu' | 'cpu';

export interface Progress {
  /** URL of the file being fetched. */
  file: string;
  loaded: number;
  /** 0 when the server did not say. */
  total: number;
  /** Served from Cache Storage. */
  cached: boolean;
}

export interface LoadOptions {
  /**
   * Folder URL of a GroupViT checkpoint, e.g. `https://huggingface.co/nvidia/groupvit-gcc-redcaps/resolve/main/`,
   * or a file name → URL map. With neither `modelUrl` nor `files`: the built-in shapes demo.
   */
  modelUrl?: string | Record<string, string>;
  /** Or the checkpoint's files: config.json, model.safetensors or pytorch_model.bin, tokenizer.json, preprocessor_config.json. */
  files?: FileList | File[] | Record<string, Blob> | Map<string, Blob>;
  /** Default 'auto': a hardware GPU through WebGPU, else WebAssembly. */
  backend?: Backend;
  onProgress?: (p: Progress) => void;
  /** Keep downloads in Cache Storage (default true). */
  cache?: boolean;
  /** Where `groupseg_wasm_bg.wasm` is, if not beside this module. */
  wasmUrl?: string | URL;
}

export interface SegmentOptions {
  /** Pixels whose best label scores lower are background (default: the model's, 0.95 for the
   * published checkpoints); null: no background. */
  backgroundThreshold?: number | null;
  /** The photo's short side is resized to this before segmenting (default: twice the model's
   * training size, 448 for the published checkpoints). */
  shortSide?: number;
  /** Sliding window side (default: twice the training size, 448) and stride (default: the training
   * size, 224), in resized pixels. */
  window?: number;
  stride?: number;
  /** Prompt templates with `{}` for the label, averaged (default ["a photo of a {}."]). */
  templates?: string[];
}

export interface ClassSummary {
  label: string;
  /** Fraction of the photo's pixels. */
  share: number;
  /** Mean score (0–1) over its pixels. */
  meanScore: number;
  /** [x0, y0, x1, y1], exclusive ends; null when the class has no pixel. */
  bbox: [number, number, number, number] | null;
}

export interface PaintOptions {
  /** Paint over this photo (same size) instead of on transparency. */
  photo?: ImageData | null;
  /** Strength of the class colours, 0–1 (default 1). */
  opacity?: number;
  /** Paint the background class too (default false). */
  background?: boolean;
}

export declare class Segmentation {
  readonly width: number;
  readonly height: number;
  /** Class names; labels[0] is "background". */
  readonly labels: string[];
  /** Class index per pixel, row-major. */
  readonly labelMap: Uint16Array;
  /** Score of the winning class per pixel. */
  readonly scores: Float32Array;
  /** RGB per class, 3 bytes a class. */
  readonly colours: Uint8Array;
  readonly summary: ClassSummary[];
  labelAt(x: number, y: number): string;
  /** The label map in colour (background transparent), blended over `photo` when given. */
  toImageData(options?: PaintOptions): ImageData;
}

/** A photo already through the image encoder: segment it again by new labels in milliseconds. */
export declare class EncodedImage {
  readonly width: number;
  readonly height: number;
  /** The size options it was encoded with. */
  readonly geometry: { shortSide?: number; window?: number; stride?: number };
  dispose(): void;
}

export declare class Segmenter {
  /** With no options: the built-in shapes demo model, on 'auto'. */
  static load(options?: LoadOptions): Promise<Segmenter>;
  static clearCache(): Promise<void>;
  /** "GPU: …" or "CPU (why not the GPU)". */
  readonly backend: string;
  /** What the load did without, e.g. "model.safetensors could not be kept in the browser's Cache Storage …". */
  readonly notes: string[];
  /** `image` may be an `EncodedImage` from `encode`: then only the labels' part runs. */
  segment(image: ImageInput | EncodedImage, labels: string | string[], options?: SegmentOptions): Promise<Segmentation>;
  /** Runs the image encoder once; size options are fixed here, labels and threshold are not. */
  encode(image: ImageInput, options?: SegmentOptions): Promise<EncodedImage>;
  /** Most probable first; `templates` averages several prompts (default ["a photo of a {}."]). */
  classify(image: ImageInput, labels: string | string[], options?: { templates?: string[] }): Promise<{ label: string; probability: number }[]>;
  dispose(): void;
}

/** Paints any `{width, height, labelMap, colours}` (a Segmentation, or one posted from a worker). */
export declare function paintLabels(
  labels: { width: number; height: number; labelMap: Uint16Array; colours: Uint8Array },
  options?: PaintOptions,
): ImageData;

/** Labels as the library reads them: split at commas, trimmed, repeats dropped (after `load`). */
export declare function parseLabels(labels: string | string[]): string[];

export declare const CACHE_NAME: string;

/**
 * The shapes demo model shipped with the package (file name → URL): a small GroupViT trained on
 * generated scenes that knows only coloured shapes ("red circle, blue star, green bar").
 */
export declare const DEMO_MODEL: Record<string, string>;

/** Whether the checkpoint at `modelUrl` is in Cache Storage, so that it loads offline. */
export declare function isCached(modelUrl: string): Promise<boolean>;
