//! rayon's thread pool on Web Workers, in the threaded WebAssembly module (built with atomics and a
//! shared memory; `./build.sh` builds it beside the single-threaded one). The package's
//! `threaded/threads.js` starts the workers; each instantiates this module on the shared memory and
//! enters [`run_thread`], where it waits until rayon hands it a worker thread to run. Then
//! [`ThreadPool::build`] makes them rayon's global pool, which every parallel kernel here uses.
//! Rayon's callers block while the pool works, so the module runs in a Web Worker (the package's
//! `groupseg/worker`), never on a page's main thread, which may not wait.

use std::sync::{mpsc, Arc, Mutex};

use wasm_bindgen::prelude::*;

type Handoff = Mutex<mpsc::Receiver<rayon::ThreadBuilder>>;

/// The pool being started: its size, and where rayon's threads are handed to the waiting workers.
#[wasm_bindgen]
pub struct ThreadPool {
    threads: usize,
    sender: mpsc::Sender<rayon::ThreadBuilder>,
    handoff: Arc<Handoff>,
}

#[wasm_bindgen]
impl ThreadPool {
    #[wasm_bindgen(constructor)]
    pub fn new(threads: usize) -> Result<ThreadPool, JsError> {
        if threads == 0 {
            return Err(JsError::new("threads must be at least 1"));
        }
        let (sender, receiver) = mpsc::channel();
        Ok(ThreadPool { threads, sender, handoff: Arc::new(Mutex::new(receiver)) })
    }

    #[wasm_bindgen(getter)]
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The hand-off's address in the shared memory, for the workers to pass to `runThread`. The
    /// reference it hands out stays alive for good: the workers live as long as the page.
    pub fn handoff(&self) -> usize {
        Arc::into_raw(self.handoff.clone()) as usize
    }

    /// Makes the waiting workers rayon's global pool (once per module instance).
    pub fn build(self) -> Result<(), JsError> {
        let sender = self.sender;
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .spawn_handler(move |thread| sender.send(thread).map_err(|e| std::io::Error::other(e.to_string())))
            .build_global()
            .map_err(|e| JsError::new(&format!("could not start the thread pool: {e}")))
    }
}

/// A worker's life: wait for a rayon thread, then run it (it returns when the pool ends).
#[wasm_bindgen(js_name = runThread)]
pub fn run_thread(handoff: usize) -> Result<(), JsError> {
    // SAFETY: `handoff` came from `ThreadPool::handoff`, which leaked a reference to it.
    let handoff = unsafe { &*(handoff as *const Handoff) };
    let thread = handoff
        .lock()
        .map_err(|_| JsError::new("thread pool hand-off poisoned"))?
        .recv()
        .map_err(|_| JsError::new("the thread pool was dropped before it started"))?;
    thread.run();
    Ok(())
}

/// This instance's compiled module and shared memory, for the workers to instantiate on.
#[wasm_bindgen(js_name = threadShare)]
pub fn thread_share() -> js_sys::Array {
    js_sys::Array::of2(&wasm_bindgen::module(), &wasm_bindgen::memory())
}

/// How many threads rayon's pool runs on (1 before the pool starts).
#[wasm_bindgen(js_name = threadCount)]
pub fn thread_count() -> usize {
    rayon::current_num_threads()
}
