//! Process-wide allocator tuning for programs that run the model natively (the CLI, benchmarks),
//! and in WebAssembly the allocator that counts live bytes.
//!
//! candle allocates a fresh output buffer for every op. glibc serves buffers over 128 KiB with mmap
//! and unmaps them on free, so each op pays page faults and zeroing for memory it just gave back:
//! about 12 % of a 448-pixel forward on our 2-core machine. Raising the thresholds keeps freed
//! buffers in the heap for the next op. A library must not change this for its host process, so
//! programs opt in by calling [`keep_freed_buffers`].

/// Keep large freed buffers for reuse instead of returning them to the OS (glibc only; elsewhere
/// it does nothing).
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; it is called before heavy allocation.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// In WebAssembly: the system allocator, counting the bytes live and the most ever live, so that
/// `Segmenter.memory()` can tell the model's needs from the memory's high-water mark (a
/// WebAssembly memory grows to fit the allocator's free space as it lies, and never shrinks).
#[cfg(web)]
mod counted {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub static LIVE: AtomicUsize = AtomicUsize::new(0);
    pub static PEAK: AtomicUsize = AtomicUsize::new(0);

    /// `size` more bytes live (`p` null: none, the allocation failed).
    fn handed_out(p: *mut u8, size: usize) -> *mut u8 {
        if !p.is_null() {
            PEAK.fetch_max(LIVE.fetch_add(size, Ordering::Relaxed) + size, Ordering::Relaxed);
        }
        p
    }

    struct Counted;

    // SAFETY: every call is passed to `System` unchanged; the counters only observe.
    unsafe impl GlobalAlloc for Counted {
        #[inline(never)]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: `GlobalAlloc::alloc`'s contract, passed on as it came.
            handed_out(unsafe { System.alloc(layout) }, layout.size())
        }

        #[inline(never)]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as `alloc`.
            handed_out(unsafe { System.alloc_zeroed(layout) }, layout.size())
        }

        #[inline(never)]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from `System` through these methods with this layout.
            unsafe { System.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }

        #[inline(never)]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as `dealloc`, and `new_size` as the caller gave it.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            }
            handed_out(p, new_size)
        }
    }

    #[global_allocator]
    static COUNTED: Counted = Counted;
}

/// Whether `bytes` more can be allocated now. In WebAssembly the memory grows to make room where
/// the browser lets it, and the room is left free for what comes next, so that a model too large
/// for the page is known before it loads rather than by a failed allocation midway (which ends the
/// module). The trial allocation is not counted as the most ever live: it held nothing.
pub fn reserve(bytes: usize) -> bool {
    #[cfg(web)]
    let peak = counted::PEAK.load(std::sync::atomic::Ordering::Relaxed);
    let room = Vec::<u8>::new().try_reserve_exact(bytes).is_ok();
    #[cfg(web)]
    counted::PEAK.store(peak.max(counted::LIVE.load(std::sync::atomic::Ordering::Relaxed)), std::sync::atomic::Ordering::Relaxed);
    room
}

/// What the allocator has handed out and not had back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveBytes {
    pub now: usize,
    /// The most there ever were at once.
    pub peak: usize,
}

/// The live bytes, where they are counted (WebAssembly; natively `None`).
pub fn live_bytes() -> Option<LiveBytes> {
    #[cfg(web)]
    {
        use std::sync::atomic::Ordering;
        Some(LiveBytes { now: counted::LIVE.load(Ordering::Relaxed), peak: counted::PEAK.load(Ordering::Relaxed) })
    }
    #[cfg(native)]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn room_is_said_without_allocating_past_what_can_be() {
        assert!(super::reserve(1 << 20));
        assert!(!super::reserve(isize::MAX as usize + 1), "more than any allocation may be");
    }
}
