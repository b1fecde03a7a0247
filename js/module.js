// The wasm module: which build a realm (page or worker) starts (threaded or not, relaxed SIMD or
// not), started once, and its exports for the other modules.
// The wasm module's exports once started: the threaded build (rayon's pool on Web Workers) or the
// single-threaded one. One per JS realm (page or worker): the first load picks it.
let wasm = null;
let wasmStart = null;

/** Why this realm cannot run the threaded module, or null if it can: each of the three things
 * threads need, checked apart (an engine may isolate the page and still give no shared memory). */
function whyNoThreads() {
  if (!globalThis.crossOriginIsolated) {
    return 'threads need a cross-origin isolated page (headers Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)';
  }
  if (typeof SharedArrayBuffer === 'undefined') {
    return 'this browser gives no shared memory (SharedArrayBuffer), even to a cross-origin isolated page';
  }
  if (typeof WorkerGlobalScope === 'undefined') {
    return "threads run only off the page's main thread, which may not wait: use groupseg/worker";
  }
  if (typeof Worker === 'undefined') {
    return 'this browser cannot start workers from a worker, which the threads are';
  }
  return null;
}

// The smallest module using f32x4.relaxed_madd: it validates only where the engine has relaxed
// SIMD (Chromium since 114), whose fused multiply-adds make the matrix products faster.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 28, 1, 26, 0,
  67, 0, 0, 0, 0, 253, 19, 67, 0, 0, 0, 0, 253, 19, 67, 0, 0, 0, 0, 253, 19, 253, 133, 2, 11,
]);

export function hasRelaxedSimd() {
  try {
    return WebAssembly.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
}

/** How long the threaded module may take to start (compiled, instantiated on shared memory, its
 * workers started) before the package gives up on it and starts the single-threaded one: in Firefox
 * ESR that start was seen to stall for good, by chance, in fresh profiles. */
const THREADED_START_MS = 20000;

/** Starts the module once: `{threads, why, relaxedSimd}`, `why` saying what kept it to fewer threads
 * than asked. Each of the threaded and single-threaded modules comes built twice, with relaxed SIMD
 * and without (the same bindings over either). Threads past the machine's cores would each start a
 * worker and run no faster: they are clamped to the cores, saying so. */
export function startWasm(wasmUrl, threads, relaxedSimd) {
  wasmStart ??= (async () => {
    const cores = globalThis.navigator?.hardwareConcurrency || 1;
    const want = Math.min(threads ?? cores, cores);
    const relaxed = relaxedSimd !== false && hasRelaxedSimd();
    const clamped = threads > cores ? `${threads} threads were asked of ${cores} core${cores === 1 ? '' : 's'}` : null;
    let why = want > 1 ? whyNoThreads() : null;
    if (want > 1 && !why) {
      const threads = import('./threaded/threads.js');
      threads.catch(() => {}); // a failure to load it surfaces through the start
      let stalled;
      try {
        const start = (async () => {
          const m = await import('./threaded/groupseg_wasm.js');
          await m.default(relaxed ? { module_or_path: new URL('./threaded/groupseg_wasm_relaxed_bg.wasm', import.meta.url) } : undefined);
          await (await threads).startThreads(m, want);
          return m;
        })();
        const m = await Promise.race([start, new Promise((resolve) => { stalled = setTimeout(resolve, THREADED_START_MS, null); })]);
        if (!m) {
          // Given up: its workers end now, and any it would start later end as they start.
          const stop = () => threads.then((t) => t.stopThreads(), () => {});
          stop();
          start.then(stop, () => {});
          throw new Error(`they took over ${THREADED_START_MS / 1000} s to start`);
        }
        wasm = m;
        return { threads: m.threadCount(), why: clamped, relaxedSimd: m.relaxedSimd(), module: 'threaded' };
      } catch (e) {
        // E.g. a Content Security Policy without worker-src for the package: one thread still works.
        why = `the threads could not start (${e?.message ?? e})`;
      } finally {
        clearTimeout(stalled);
      }
    }
    const m = await import('./groupseg_wasm.js');
    const url = wasmUrl ?? (relaxed ? new URL('./groupseg_wasm_relaxed_bg.wasm', import.meta.url) : undefined);
    await m.default(url ? { module_or_path: url } : undefined);
    wasm = m;
    return { threads: 1, why: [clamped, why].filter(Boolean).join('; ') || null, relaxedSimd: m.relaxedSimd(), module: 'single-threaded' };
  })().catch((e) => {
    wasmStart = null; // a later load may try again
    throw e;
  });
  return wasmStart;
}

/** The started module's exports (every caller runs after a load). */
export function live() {
  if (!wasm) throw new Error('The groupseg module is not started: call Segmenter.load first');
  return wasm;
}
