//! The C allocator's settings for training, and the memory left to allocate.
//!
//! glibc serves an allocation above its mmap threshold (128 KiB at first, raised up to 32 MiB as
//! such blocks are freed) with fresh pages from the kernel, and hands free memory at the top of
//! the heap back to the kernel above twice that threshold. A training step allocates and frees
//! tensors of a few MiB many times over, and each fresh page costs a page fault and the kernel's
//! zeroing. With the threshold fixed at its maximum and up to 256 MiB of freed memory kept, steps
//! reuse memory instead: over three alternating runs of `coppice bench --inference`, LeNet-5
//! trained at batch 256 at 7.4k to 7.6k samples/s against 6.0k to 6.2k without, and LeNet-300's
//! inference at batch 1000 gained 3 to 9 %; the other lines moved within noise.

/// Applies the settings; call it before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters, and no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}

/// The memory the kernel says a new allocation can have without swapping (Linux's
/// `MemAvailable`); `None` elsewhere.
pub fn available_memory() -> Option<u128> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
