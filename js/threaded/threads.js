// Starts the threaded module's rayon pool on Web Workers: each worker instantiates the same compiled
// module on the same shared memory (./thread-worker.js), says it is ready, and waits in `runThread`
// until the pool hands it a thread. Written out as `new Worker(new URL(…, import.meta.url))` so that
// bundlers (Vite, webpack 5) copy the worker.

// Each pool thread's stack, carved from the shared memory (wasm-bindgen's default is 2 MB, 4 MB of
// the heap on 2 threads). Rayon's threads run only the kernels' loops: natively they run a 448-pixel
// forward on 16 KB stacks, and WebAssembly's shadow stack holds less than a native frame.
const THREAD_STACK_BYTES = 256 * 1024;

// Workers are kept referenced: a browser may collect a worker nothing points to even while it runs.
const workers = [];

/** Ends the threads started so far (a start given up on: see `startWasm`). */
export function stopThreads() {
  for (const worker of workers.splice(0)) worker.terminate();
}

/** Starts `count` threads for the started module `m` (`./groupseg_wasm.js`, already initialised). */
export async function startThreads(m, count) {
  const pool = new m.ThreadPool(count);
  const [module, memory] = m.threadShare();
  await Promise.all(Array.from({ length: count }, (_, i) => new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./thread-worker.js', import.meta.url), { type: 'module', name: `groupseg-thread-${i}` });
    worker.addEventListener('message', ({ data }) => (data.ok ? resolve() : reject(new Error(`groupseg thread ${i}: ${data.message}`))), { once: true });
    worker.addEventListener('error', (e) => reject(new Error(`groupseg thread ${i} did not start: ${e.message ?? 'worker error'}`)), { once: true });
    worker.postMessage({ module, memory, stack: THREAD_STACK_BYTES });
    workers.push(worker);
  })));
  pool.build();
}
