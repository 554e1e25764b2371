//! Process-wide settings that the CLI and the benchmarks apply once at startup, before
//! any tensor or thread exists.

/// Leaves the cores to rayon, keeps freed tensor memory in the process, and keeps
/// backtraces out of error messages.
pub fn configure() {
    // candle's elementwise ops spin a pool of their own beside rayon's, which our kernels
    // use: on a small machine the two fight over the cores (measured: a yolov5n training
    // step takes 1.5x as long). One candle thread leaves the cores to rayon.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    // candle attaches a backtrace to every error when RUST_BACKTRACE is set, and its
    // errors reach users as messages (a bad config, a wrong shape). Library backtraces
    // stay off unless asked for by name; panics still honour RUST_BACKTRACE.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    retain_freed_memory();
}

/// Runs `f` on one of rayon's worker threads. Every kernel is a parallel loop; started from
/// a thread outside the pool, each one hands its work to the pool and sleeps until it is
/// done (a wake-up and a sleep per op, a few hundred per training step). From inside the
/// pool the loops split their work with the other workers directly.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// By default glibc hands blocks above its mmap threshold back to the kernel when they are
/// freed, and trims the top of the heap, so the next tensor of the same size faults its
/// pages in again, each zeroed by the kernel. A training step frees and allocates
/// hundreds of MB this way (candle's backward allocates a zero tensor and a sum for every
/// gradient): measured on yolov5n b8@320, the page faults were most of the "other
/// backward" stage, about 150 of 200 ms on a busy 2-core machine. Three settings keep it:
/// - blocks up to 1 GiB come from the heap, not from mmap;
/// - the heap's top is never trimmed: a batch of 32 at 640 frees several GB at once, more
///   than any fixed trim threshold (at 1 GiB, yolov5s inference at batch 32 took 8.1
///   million page faults in four runs, half of its time; without trimming 2.1 million,
///   the first run's);
/// - one arena: the kernels run on rayon's workers, whose own arenas are heaps of at most
///   64 MB that serve larger blocks by mmap, and unmap them when freed.
///
/// The process keeps its high-water mark until it exits (a command's run, or an experiment's
/// worker).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn retain_freed_memory() {
    const LIMIT: libc::c_int = 1 << 30;
    // mallopt's value for "never trim".
    const NEVER: libc::c_int = -1;
    // SAFETY: mallopt only sets allocator parameters; called before other threads exist.
    // A glibc that refuses a value keeps its default, which is correct, only slower.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LIMIT);
        libc::mallopt(libc::M_TRIM_THRESHOLD, NEVER);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn retain_freed_memory() {}
