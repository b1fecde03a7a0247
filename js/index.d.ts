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

/** One signal for a whole load (`progress` 0–1, monotone, 1 at the end). */
export interface Progress {
  /** compile: the wasm module; download: the checkpoint's files; prepare: the model built (and uploaded). */
  stage: 'compile' | 'download' | 'prepare';
  /** During the download: bytes so far across every file; in the other stages, 0 or 1 of 1. */
  loaded: number;
  /** Bytes of every file whose server said its size (grows while one has not). */
  total: number;
  progress: number;
  /** During the download: URL of the file just read, and whether it came from Cache Storage. */
  file?: string;
  cached?: boolean;
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
  /** Keep the weights converted to int8 (about a quarter of the bytes, in memory too) or f16 (half
   * the download), in memory and in Cache Storage; the first load converts them in the page as they
   * download. Label maps may differ slightly from the original's. `null`: as they are. Default
   * 'auto': as they are, but as int8 where the device reports 4 GB of memory or less
   * (`navigator.deviceMemory`) or the module cannot make room for them as they are (`notes` says so). */
  keepAs?: 'auto' | 'int8' | 'f16' | null;
  /** Where `groupseg_wasm_bg.wasm` (the single-threaded module) is, if not beside this module; or its
   * relaxed-SIMD build, `groupseg_wasm_relaxed_bg.wasm`. */
  wasmUrl?: string | URL;
  /** Threads for the WebAssembly path (default: `navigator.hardwareConcurrency`). More than one needs a
   * cross-origin isolated page (COOP `same-origin` + COEP `require-corp`) and a worker (`groupseg/worker`);
   * otherwise one, and `notes` says why. The first load in a page or worker fixes it. */
  threads?: number;
  /** Run the module built with relaxed SIMD, whose matrix products use fused multiply-adds (default:
   * where the browser has it, e.g. Chromium; faster, but its last bits may differ between machines).
   * false: the plain SIMD module, the same numbers on every machine. The first load fixes it. */
  relaxedSimd?: boolean;
  /** Refuse a weights file over this many bytes (default and most: 2 GiB, what a WebAssembly memory
   * can hold beside the model's work): before the download when its size is announced, else as it
   * passes the cap. A page for phones may set less. */
  maxWeightsBytes?: number;
}

/** The size options, fixed when a photo is encoded (`encode`, `groups`). Each operation takes its
 * own options type and refuses an option it does not take, by name. */
export interface EncodeOptions {
  /** The photo's short side is resized to this before segmenting (default: twice the model's
   * training size, 448 for the published checkpoints). */
  shortSide?: number;
  /** Sliding window side (default: twice the training size, 448) and stride (default: the training
   * size, 224), in resized pixels. */
  window?: number;
  stride?: number;
}

export type GroupsOptions = EncodeOptions;

/** `segment`'s options: the size options (unless the photo is already encoded) and labelling. */
export interface SegmentOptions extends EncodeOptions {
  /** Pixels whose best label scores lower are background (default: the model's, 0.95 for the
   * published checkpoints); null: no background. */
  backgroundThreshold?: number | null;
  /** Refine the labels' scores over the photo's colours before background is decided
   * (pixel-adaptive mask refinement, as TCL does after GroupViT), so masks follow the photo's edges
   * instead of the model's patch grid (default: the model's, else true). Runs on each labelling:
   * an encoded photo re-labelled stays fast. */
  refine?: boolean;
  /** Refinement passes, 1–50 (default 10). */
  refineIterations?: number;
  /** The groups also compete with the empty prompt, and what it takes is background (default
   * false; `ground` turns it on, since a softmax over one or two phrases alone takes the whole
   * photo). */
  nothingPrompt?: boolean;
  /** Prompt templates with `{}` for the label, averaged, or a preset: 'single' (the default, "a
   * photo of a {}."), 'nvlabs' (NVlabs' 7), 'imagenet' (CLIP's 80). A label that is already a
   * sentence ("a cat on a sofa") is its own prompt. */
  templates?: string[] | TemplatePreset;
}

export type TemplatePreset = 'single' | 'nvlabs' | 'imagenet';

/** `classify`'s options. */
export interface ClassifyOptions {
  /** As `SegmentOptions.templates`. */
  templates?: string[] | TemplatePreset;
  /** Only the best this many labels (default all). */
  topK?: number;
}

/** `Segmentation.ground`'s options: which regions may box a phrase. */
export interface GroundingOptions {
  /** Regions scoring under this (0–1) are dropped (default 0.1). */
  threshold?: number;
  /** Regions under this share of the photo are dropped (default 0.001). */
  minArea?: number;
}

/** `Segmentation.detect`'s options. */
export interface BoxOptions extends GroundingOptions {
  /** At most this many, best first (default all). */
  topK?: number;
  /** A box overlapping a better one (any label) by more than this IoU is dropped (default 0.5). */
  nmsIou?: number;
}

/** `detect`'s options: `segment`'s and the boxes'. */
export interface DetectOptions extends SegmentOptions, BoxOptions {}

/** `ground`'s options: `segment`'s and the grounding's. */
export interface GroundOptions extends SegmentOptions, GroundingOptions {}

/** What a loaded Segmenter runs on. */
export interface Capabilities {
  /** Where the image encoder runs. */
  device: 'gpu' | 'cpu';
  /** On the GPU: the adapter, e.g. "SwiftShader Device (Subzero) through WebGPU, software emulation". */
  adapter: string | null;
  /** Whether that adapter emulates a GPU on the CPU. */
  software: boolean;
  /** On the CPU: why not the GPU, in one sentence, when one was asked for (backend 'auto' or 'webgpu'). */
  whyNotGpu: string | null;
  /** Threads the WebAssembly path runs on, and why one when it is one (the page is not cross-origin
   * isolated, no SharedArrayBuffer, the main thread, no nested workers, or fewer cores). */
  threads: number;
  whyOneThread: string | null;
  /** Whether the module runs with relaxed SIMD's fused multiply-adds. */
  relaxedSimd: boolean;
  /** The WebAssembly module loaded. */
  module: 'threaded' | 'single-threaded';
}

/** Pixel edges in the photo: `xmax` is one past the last column, as transformers.js's boxes. */
export interface Box {
  xmin: number;
  ymin: number;
  xmax: number;
  ymax: number;
}

/** transformers.js's zero-shot-object-detection item. */
export interface Detection {
  label: string;
  /** The region's mean score, 0–1. */
  score: number;
  box: Box;
  /** The region's pixel nearest its centroid: where its name fits inside it (a ring's middle is not
   * the ring). */
  anchor: { x: number; y: number };
}

export interface Grounding {
  phrase: string;
  /** `caption.slice(start, end) === phrase`. */
  start: number;
  end: number;
  /** 0 where the phrase is found nowhere. */
  score: number;
  box: Box | null;
}

export interface Phrase {
  text: string;
  /** What is segmented for it: the phrase without its opening determiners. */
  label: string;
  start: number;
  end: number;
}

export interface StageGroups {
  /** Per pixel, row-major: window × groupsPerWindow + group. */
  map: Uint32Array;
  groupsPerWindow: number;
  /** Distinct groups the photo shows. */
  count: number;
  /** RGB per group id, 3 bytes an id (as the CLI paints groups; `paintGroups` uses them). */
  colours: Uint8Array;
}

export interface Groups {
  width: number;
  height: number;
  /** One per grouping block, first to last. */
  stages: StageGroups[];
}

export interface ClassSummary {
  label: string;
  /** Fraction of the photo's pixels. */
  share: number;
  /** Mean score (0–1) over its pixels. */
  meanScore: number;
  /** [x0, y0, x1, y1], exclusive ends; null when the class has no pixel. */
  bbox: [number, number, number, number] | null;
  /** The same box as {xmin, ymin, xmax, ymax}, the shape of detection boxes. */
  box: Box | null;
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
  /** The class index of a label name (or index); throws naming the labels when it is not one. */
  classOf(label: string | number): number;
  /** One label's pixels: opaque in its colour (or `colour`) there, transparent elsewhere. */
  mask(label: string | number, options?: { colour?: [number, number, number] }): ImageData;
  /** The photo's pixels of one label on transparency; `photo` is drawn at the segmentation's size. */
  cutout(label: string | number, photo: ImageData | ImageBitmap | HTMLCanvasElement | OffscreenCanvas | HTMLImageElement): ImageData;
  /** Its objects' boxes, best first. */
  detect(options?: BoxOptions): Promise<Detection[]>;
  /** Where each phrase of `caption` is, in a segmentation by `phraseLabels(caption)`. */
  ground(caption: string, options?: GroundingOptions): Promise<Grounding[]>;
  /** The label map in colour (background transparent), blended over `photo` when given. */
  toImageData(options?: PaintOptions): ImageData;
  /** A COCO file of this photo: one annotation per label with pixels, masks run-length encoded. */
  toCoco(options?: CocoOptions): Promise<CocoFile>;
}

export interface CocoOptions {
  /** The photo's name in the file (default "photo.png"). */
  fileName?: string;
}

/** A mask in COCO's compressed run-length encoding (column by column), as pycocotools writes it. */
export interface CocoRle {
  /** [height, width] */
  size: [number, number];
  counts: string;
}

/** A COCO file (what dataset tools import and COCOeval reads), groupseg's results in it. */
export interface CocoFile {
  images: { id: number; file_name: string; width: number; height: number }[];
  /** The labels, ids from 1 in their order. */
  categories: { id: number; name: string }[];
  annotations: {
    id: number;
    image_id: number;
    category_id: number;
    segmentation: CocoRle;
    /** Pixels of the mask. */
    area: number;
    /** [x, y, width, height] */
    bbox: [number, number, number, number];
    iscrowd: 0;
    /** Mean score of the mask's pixels (0–1). */
    score: number;
  }[];
}

/** A photo already through the image encoder: segment it again by new labels in milliseconds. */
export declare class EncodedImage {
  readonly width: number;
  readonly height: number;
  /** The size options it was encoded with. */
  readonly geometry: { shortSide?: number; window?: number; stride?: number };
  dispose(): void;
}

/**
 * The Segmenter's API, on whichever thread it runs (`groupseg` here, `groupseg/worker` in a worker):
 * `S` is its Segmentation, `E` its EncodedImage.
 */
export interface SegmenterMethods<S, E> {
  /** "GPU: …" or "CPU (why not the GPU)". */
  readonly backend: string;
  /** What the load did without, e.g. "model.safetensors could not be kept in the browser's Cache Storage …". */
  readonly notes: string[];
  /** Threads the WebAssembly path runs on (more than one in a worker on a cross-origin isolated page). */
  readonly threads: number;
  /** Whether the WebAssembly module runs with relaxed SIMD (fused multiply-adds). */
  readonly relaxedSimd: boolean;
  /** What runs where, typed: the page's sentence about it is made from this. */
  readonly capabilities: Capabilities;
  /** `image` may be an `EncodedImage` from `encode`: then only the labels' part runs. */
  segment(image: ImageInput | E, labels: string | string[], options?: SegmentOptions): Promise<S>;
  /** Runs the image encoder once; size options are fixed here, labels and threshold are not. */
  encode(image: ImageInput, options?: EncodeOptions): Promise<E>;
  /** Most probable first, scores summing to 1 over all the labels. */
  classify(
    image: ImageInput,
    labels: string | string[],
    options?: ClassifyOptions,
  ): Promise<{ label: string; score: number }[]>;
  /** `segment` then `Segmentation.detect`. */
  detect(image: ImageInput | E, labels: string | string[], options?: DetectOptions): Promise<Detection[]>;
  /** Each phrase of a caption (or GLIP's "horse. red car.") grounded to its region's box. */
  ground(image: ImageInput | E, caption: string, options?: GroundOptions): Promise<Grounding[]>;
  /** The groups of every grouping block, no labels needed; from an EncodedImage without encoding again. */
  groups(image: ImageInput | E, options?: GroupsOptions): Promise<Groups>;
  /**
   * Bytes held: `heap` is the WebAssembly memory (it never shrinks, so also the most the module has
   * needed, loading included); `live` the bytes allocated in it now, `peakLive` the most ever at
   * once; `weights` the model's, in that memory (`cpu`), in GPU buffers, and left in the weights
   * file on disk (`inFile`: the token table, when the file came from Cache Storage or a File; its
   * rows are read as labels need them).
   */
  memory(): Promise<{ heap: number; live: number; peakLive: number; weights: { cpu: number; gpu: number; inFile: number } }>;
  /** A caption's phrases, as `phrasesOf` finds them. */
  phrases(caption: string): Promise<Phrase[]>;
  /** The labels a caption is segmented by, as `phraseLabels` gives them. */
  phraseLabels(caption: string): Promise<string[]>;
  /** One COCO file for several photos' segmentations of the same labels, numbered in their order. */
  toCoco(items: { segmentation: S; fileName: string }[]): Promise<CocoFile>;
  /** Frees the model (its GPU buffers too; in a worker, the worker). */
  dispose(): void;
}

export declare class Segmenter {
  /** With no options: the built-in shapes demo model, on 'auto'. */
  static load(options?: LoadOptions): Promise<Segmenter>;
  static clearCache(): Promise<void>;
}
export interface Segmenter extends SegmenterMethods<Segmentation, EncodedImage> {}

/** Paints any `{width, height, labelMap, colours}` (a Segmentation, or one posted from a worker). */
export declare function paintLabels(
  labels: { width: number; height: number; labelMap: Uint16Array; colours: Uint8Array },
  options?: PaintOptions,
): ImageData;

/** A caption's phrases (after `load`). */
export declare function phrasesOf(caption: string): Phrase[];

/** The labels a caption is segmented by: each phrase's label once (after `load`). */
export declare function phraseLabels(caption: string): string[];

/** One stage of `groups` painted: groups in colour over `photo`, boundaries white (default: the last stage). */
export declare function paintGroups(groups: Groups, stage?: number, options?: { photo?: ImageData | null; opacity?: number }): ImageData;

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
