// One thread of the threaded module's pool (started by ./threads.js): the module instantiated on the
// shared memory, then rayon's work until the page goes.
import init, { runThread } from './groupseg_wasm.js';

self.addEventListener('message', async ({ data }) => {
  try {
    await init({ module_or_path: data.module, memory: data.memory, thread_stack_size: data.stack });
  } catch (e) {
    postMessage({ ok: false, message: String(e?.message ?? e) });
    return;
  }
  postMessage({ ok: true });
  runThread();
}, { once: true });
