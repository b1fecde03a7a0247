//! Work on rayon's pool (in WebAssembly: the threaded module's Web Workers, or one thread): a
//! forward pass run on a pool thread with the others kept busy, and row loops split across it.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

/// Runs `f` on one of rayon's pool threads while the caller waits (a forward pass, from the CLI,
/// the page's worker or a benchmark). The kernels' parallel loops inside then share work with the
/// other pool threads directly, and the stretches between them run on a pool thread's core,
/// instead of each loop being handed over from a third thread that sleeps until it ends: that
/// hand-over and wake-up cost 7 % of a 224-pixel forward on our 2-core machine. Meanwhile the other
/// pool threads [`keep_busy`] rather than sleep between the loops.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let done = AtomicBool::new(false);
    let mut out = None;
    rayon::scope(|s| {
        let (forward, done) = (rayon::current_thread_index(), &done);
        for _ in 1..rayon::current_num_threads() {
            s.spawn(move |_| keep_busy(done, forward));
        }
        // Set on the way out even if `f` panics, so the scope can end and pass the panic on.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _done = Done(done);
        out = Some(f());
    });
    out.expect("rayon::scope runs its closure before returning")
}

thread_local! {
    /// Whether this thread is inside [`keep_busy`].
    static KEEPING_BUSY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Until `done`, runs the pool's pending work as it appears, spinning in between. An idle rayon
/// thread soon sleeps, and a parallel loop then waits ~40 µs for it to wake (measured here: a loop
/// of two 100 µs halves after a 50 µs single-threaded stretch took 141 µs), and a forward pass has
/// a hundred such loops. Returns at once on the forward pass's own thread (which may take this job
/// itself while it waits, and would then never finish to set `done`) and on a thread already
/// keeping busy.
fn keep_busy(done: &AtomicBool, forward: Option<usize>) {
    if rayon::current_thread_index() == forward || KEEPING_BUSY.get() {
        return;
    }
    KEEPING_BUSY.set(true);
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            for _ in 0..32 {
                std::hint::spin_loop();
            }
        }
    }
    KEEPING_BUSY.set(false);
}

/// Rows per parallel task: below ~16k elements a task costs more than it saves.
pub(crate) fn chunk_len(len: usize, row: usize) -> usize {
    let row = row.max(1);
    let rows = (len / row).max(1);
    let tasks = rayon::current_num_threads().max(1);
    (rows.div_ceil(tasks) * row).max((1 << 14) / row * row).max(row)
}

/// Runs `f` over chunks of `data` (whole rows of `row` elements) on rayon's pool.
pub(crate) fn par_rows_mut(data: &mut [f32], row: usize, f: impl Fn(&mut [f32]) + Sync) {
    let chunk = chunk_len(data.len(), row);
    data.par_chunks_mut(chunk).for_each(|d| f(d));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The other pool threads keep busy inside `on_pool`, yet its loops' work is all done, and a
    /// panic inside reaches the caller rather than leaving them spinning.
    #[test]
    fn on_pool_runs_parallel_loops_and_passes_panics_on() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            for _ in 0..50 {
                let sum: u64 = on_pool(|| (0..10_000u64).into_par_iter().map(|i| i * i).sum());
                assert_eq!(sum, (0..10_000u64).map(|i| i * i).sum::<u64>());
            }
            let caught = std::panic::catch_unwind(|| on_pool(|| -> u32 { panic!("inside the forward") }));
            assert!(caught.is_err());
            assert_eq!(on_pool(|| 7), 7, "the pool works after a panic");
        });
    }
}
