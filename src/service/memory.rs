//! The daemon's heap (glibc malloc): one arena, and free pages given back after work.
//!
//! The daemon spends its life asleep; what it allocates in a burst of rotations is freed
//! when the burst ends, but glibc keeps the pages (and, by default, one arena per thread
//! that ever allocated: the loop, tokio's blocking thread, the inotify thread, a rescan's
//! helper, each with its own heap). Both are plain glibc interfaces; on another C library
//! these do nothing. README "Performance" has the figures.

/// Every thread allocates from the one main arena. Call before any thread starts. The
/// daemon's threads seldom allocate at the same time, so there is no lock to wait for.
pub fn one_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Return the heap's free pages to the kernel (after a cycle that rotated something,
/// and when tokio's blocking thread stops). Costs a walk over the free chunks: well under
/// a millisecond for the daemon's heap.
pub fn give_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim is thread-safe and only releases memory malloc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
