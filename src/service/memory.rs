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

/// Ask the kernel to reclaim the pages of this program's own code (`MADV_PAGEOUT`, Linux
/// 5.4+), after a cycle that issued certificates. Issuing runs code (key generation,
/// signing, encoding, the store) that the daemon needs again only at its next rotation,
/// hours or days later; the kernel maps it in 64 KB windows and keeps it resident, about
/// 5 MB that the sleeping loop never touches. Reclaimed pages are dropped from memory (the
/// page cache charged to the unit's cgroup included), not only from the RSS figure, and
/// are read back from the binary at the next use (a few milliseconds). Only clean,
/// file-backed code pages are concerned; data and heap are not touched. Errors (an older
/// kernel, no /proc) are ignored: this is an optimisation only.
pub fn release_code() {
    let (Ok(maps), Ok(exe)) = (
        std::fs::read_to_string("/proc/self/maps"),
        std::fs::read_link("/proc/self/exe"),
    ) else {
        return;
    };
    for (start, end) in code_ranges(&maps, &exe) {
        // SAFETY: the range is a mapping of this process (from /proc/self/maps); the
        // advice only lets the kernel drop clean pages it can read back from the file.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT);
        }
    }
}

/// The executable mappings of `exe` in a `/proc/PID/maps` text: start and end addresses.
fn code_ranges(maps: &str, exe: &std::path::Path) -> Vec<(usize, usize)> {
    let exe = exe.to_string_lossy();
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (range, perms) = (f.next()?, f.next()?);
            let path = f.nth(3)?;
            if path != exe || !perms.contains('x') {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some((
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_programs_own_code_is_picked() {
        let maps = "\
55d0c0a00000-55d0c0b00000 r--p 00000000 fd:01 42 /usr/bin/kube-cert-agent
55d0c0b00000-55d0c1300000 r-xp 00100000 fd:01 42 /usr/bin/kube-cert-agent
55d0c1300000-55d0c1400000 rw-p 00900000 fd:01 42 /usr/bin/kube-cert-agent
7f0000000000-7f0000200000 r-xp 00028000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000400000-7f0000500000 rw-p 00000000 00:00 0 
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
";
        let got = code_ranges(maps, std::path::Path::new("/usr/bin/kube-cert-agent"));
        assert_eq!(got, vec![(0x55d0c0b00000, 0x55d0c1300000)]);
        assert!(code_ranges(maps, std::path::Path::new("/other")).is_empty());
    }

    fn rss_file_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn releasing_this_processs_code_frees_resident_pages() {
        // The test binary's own code: resident now (it is running), fewer pages after;
        // the code that runs next is read back on use.
        let before = rss_file_kb();
        release_code();
        let after = rss_file_kb();
        assert!(after < before, "RssFile {before} kB -> {after} kB");
    }
}
