// One progress signal for a whole load (compile, download, prepare), rising from 0 to 1.
const STAGES = { compile: [0, 0.05], download: [0.05, 0.9], prepare: [0.9, 1] };

/**
 * One progress signal for a whole load, as transformers.js's `progress_total`: `{stage, loaded,
 * total, progress}` with `progress` 0–1, never going back, 1 at the end; during the download `loaded`
 * and `total` are bytes across every file (`total` grows only while a server has not said a size),
 * with the `file` being read and whether it came from the `cached` copy.
 */
export class LoadProgress {
  #report;
  #files = new Map();
  #progress = 0;

  constructor(report) {
    this.#report = report;
  }

  stage(stage, fraction, extra = {}) {
    const [from, to] = STAGES[stage];
    this.#progress = Math.max(this.#progress, from + (to - from) * Math.min(1, Math.max(0, fraction)));
    this.#report?.({ stage, loaded: fraction, total: 1, ...extra, progress: this.#progress });
  }

  /** The files about to be fetched: the download's fraction waits until each has said its size. */
  expect(urls) {
    for (const url of urls) if (!this.#files.has(url)) this.#files.set(url, { loaded: 0, total: null });
  }

  /** A file's bytes so far (the per-file callback of `fetchBytes`). */
  file({ file, loaded, total, cached }) {
    this.#files.set(file, { loaded, total: Math.max(total, loaded) });
    let [all, sum, sized] = [0, 0, true];
    for (const f of this.#files.values()) {
      all += f.loaded;
      sum += f.total ?? 0;
      sized &&= f.total !== null;
    }
    this.stage('download', sized && sum ? all / sum : 0, { file, cached, loaded: all, total: sum });
  }
}
