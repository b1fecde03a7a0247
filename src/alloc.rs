//! Process-wide allocator tuning for programs that run the model natively (the CLI, benchmarks).
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
