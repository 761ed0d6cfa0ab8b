//! The process's memory: what it holds (for the debug lines that profile the front) and
//! handing freed memory back to the system.

/// The process's resident memory in MiB where the system tells it (Linux).
pub fn rss_mib() -> Option<u64> {
    status_mib("VmRSS:")
}

/// The most resident memory the process has held since it started (its high-water mark), in
/// MiB, where the system tells it (Linux): `run_finished` reports it.
pub fn peak_rss_mib() -> Option<u64> {
    status_mib("VmHWM:")
}

fn status_mib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix(field))?.trim().trim_end_matches("kB").trim();
    kb.parse::<u64>().ok().map(|kb| kb / 1024)
}

/// Returns what the allocator holds freed to the system now, instead of after its delay (the
/// binary's allocator is mimalloc): `apply` calls it once its front is freed, so that the
/// operations made next take the place of gigabytes still counted as held.
pub fn return_freed_memory() {
    // SAFETY: `mi_collect` takes no pointer and may be called at any time from any thread;
    // where mimalloc is not the global allocator it collects only its own, unused heap.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
