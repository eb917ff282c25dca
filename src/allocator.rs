//! How the process's memory allocator treats freed memory.

/// Keeps freed memory in the process instead of returning it to the operating system, on Linux
/// with glibc: allocations up to 32 MiB come from the heap (not from fresh mappings) and the
/// heap is not trimmed below 1 GiB of free memory at its top. Every tensor of an attack
/// iteration is a new buffer of a few megabytes; by default glibc maps and unmaps most of them,
/// and the kernel then zeroes every page on its first touch, which costs a fifth of an
/// iteration on the small CNNs. With these settings the buffers are recycled. The process's
/// memory footprint stays at its peak instead of shrinking between iterations. Runs once.
#[allow(unsafe_code)] // one call into glibc, explained below
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: `mallopt` only changes allocator parameters; it is called before the
        // allocations it is meant for and is thread-safe in glibc.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        });
    }
}
