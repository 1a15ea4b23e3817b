//! Giving freed memory back to the system. Drivers (ONNX Runtime and the like) allocate model
//! weights and arenas with the C allocator; with glibc's defaults, memory freed by unloading a
//! model often stays with the process (one heap arena per thread that ever allocated, and a
//! dynamic mmap threshold that grows until large blocks come from the heap instead of mmap),
//! so an explicit-mode server that loads and unloads grows for a long while although the
//! memory in use stays flat. [`tune_allocator`] fixes the mmap and trim thresholds (large
//! blocks are mapped, and returned when freed) unless the user tuned glibc's allocator
//! already; [`release_free_memory`] hands free heap pages back after an unload.

/// Fixes glibc's mmap and trim thresholds at `threshold` bytes and caps its arenas at
/// `arena_max` (0: glibc's default), unless `GLIBC_TUNABLES` or a `MALLOC_*_` variable says
/// how the allocator should behave. Call before threads start. Does nothing on other libcs.
pub fn tune_allocator(threshold: usize, arena_max: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_tuned = std::env::vars_os().any(|(k, _)| {
            let k = k.to_string_lossy();
            k == "GLIBC_TUNABLES"
                || (k.starts_with("MALLOC_") && k.ends_with('_'))
                || k == "MALLOC_ARENA_MAX"
        });
        if user_tuned {
            return;
        }
        let threshold = i32::try_from(threshold).unwrap_or(i32::MAX);
        // SAFETY: mallopt only changes allocator parameters; it is called before other
        // threads exist (the binary's first step) and with valid parameter codes.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, threshold);
            libc::mallopt(libc::M_TRIM_THRESHOLD, threshold);
            if arena_max > 0 {
                libc::mallopt(
                    libc::M_ARENA_MAX,
                    i32::try_from(arena_max).unwrap_or(i32::MAX),
                );
            }
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (threshold, arena_max);
}

/// Returns free heap memory of every arena to the system (glibc's `malloc_trim`).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
