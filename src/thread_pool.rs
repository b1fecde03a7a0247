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

/// Where rayon's threads are handed to the waiting workers. A static lives in the shared memory, so
/// every worker instantiated on it finds the pool being started here: nothing but this crosses to
/// JavaScript as an address.
static HANDOFF: Mutex<Option<Arc<Handoff>>> = Mutex::new(None);

/// The pool being started: its size, and the sending side of the hand-off.
#[wasm_bindgen]
pub struct ThreadPool {
    threads: usize,
    sender: mpsc::Sender<rayon::ThreadBuilder>,
}

#[wasm_bindgen]
impl ThreadPool {
    #[wasm_bindgen(constructor)]
    pub fn new(threads: usize) -> Result<ThreadPool, JsError> {
        if threads == 0 {
            return Err(JsError::new("threads must be at least 1"));
        }
        let mut handoff = HANDOFF.lock().map_err(|_| JsError::new("thread pool hand-off poisoned"))?;
        if handoff.is_some() {
            return Err(JsError::new("the thread pool was started already: a module instance has one"));
        }
        let (sender, receiver) = mpsc::channel();
        *handoff = Some(Arc::new(Mutex::new(receiver)));
        Ok(ThreadPool { threads, sender })
    }

    #[wasm_bindgen(getter)]
    pub fn threads(&self) -> usize {
        self.threads
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

/// A worker's life: wait for a rayon thread of the pool being started, then run it (it returns
/// when the pool ends).
#[wasm_bindgen(js_name = runThread)]
pub fn run_thread() -> Result<(), JsError> {
    let handoff = HANDOFF
        .lock()
        .map_err(|_| JsError::new("thread pool hand-off poisoned"))?
        .clone()
        .ok_or_else(|| JsError::new("no thread pool is being started: make a ThreadPool first"))?;
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
