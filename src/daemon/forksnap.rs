//! Snapshots by `fork` (`[daemon] snapshot_mode = "fork"`, the default on
//! Linux with `durability = "wal"`): the shard's thread only waits for the
//! fork (a copy of the page tables); the child serializes its copy-on-write
//! image of the engine and writes the file. This is the one module of the
//! daemon that uses `unsafe`: `fork`, `prctl`, `getppid`, `waitpid`, `kill`,
//! `_exit`, `madvise`, `getrusage`, `clock_gettime` and
//! `sched_setscheduler`, each with its reason.
//!
//! The child of a multithreaded process has only the forking thread, so it
//! must not take a lock another thread may have held at the fork: it does not
//! log, does not touch the tokio runtime or stdio, and leaves with `_exit`
//! (no destructor, no flush of the parent's buffers). It allocates (glibc's
//! `malloc` resets its locks in the child of a fork) and makes plain file
//! system calls. It dies with the parent (`PR_SET_PDEATHSIG`), so a killed
//! daemon leaves no writer behind; it only writes `snapshot-<seq>.bin` (via
//! `.tmp` and a rename): keeping the two newest and deleting covered segments
//! is the parent's, after the child succeeded. Memory: pages the shard
//! writes while the child runs are copied (at most the shard's state).
//!
//! The fork copies one page-table entry per 4 KiB page, so with 4 KiB pages
//! it holds the shard for tens of milliseconds per GiB. [`keep_huge_pages`]
//! (`[daemon] huge_pages = true`, the default) keeps the daemon's large
//! anonymous regions on transparent huge pages (2 MiB, one entry each):
//! `madvise(MADV_HUGEPAGE)` marks them and `madvise(MADV_COLLAPSE)` rebuilds
//! the huge pages that a copy-on-write split while a child ran (the kernel
//! splits a huge page on the first write after a fork and never merges it
//! back soon by itself). A background thread does this once after recovery,
//! again after each snapshot child has ended, soon after large blocks were
//! allocated (a table that grew moved into fresh memory on 4 KiB pages; the
//! daemon's global [`Allocator`] counts them), and every 15 s. A shard due
//! to fork waits for a pass that is due. The fork itself runs at real-time
//! priority where the process may ([`allow_realtime`]), so that the hold is
//! the kernel's work alone, not other threads' time slices.

#![allow(unsafe_code)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redcloud_engine::Engine;
use tracing::{info, warn};

use super::metrics::ShardMetrics;
use super::outbox::OutboxShared;
use super::wal;

/// The data directory's lock file descriptor (`-1`: none). The child closes
/// its copy at once: a `flock` lasts while any copy of the descriptor is
/// open, and a child finishing a write must not keep a restarted daemon out
/// of the directory after the parent died.
static LOCK_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Tells the snapshot children which descriptor holds the data directory's
/// lock.
pub fn set_lock_fd(fd: i32) {
    LOCK_FD.store(fd, Ordering::Relaxed);
}

/// A child still running after this long is killed (a snapshot takes
/// seconds; a child stuck on something it should not touch must not block
/// snapshots forever).
const CHILD_LIMIT: Duration = Duration::from_secs(1800);

/// Waits for child `pid` (at most `limit`, then kills it); `true` if it
/// exited with status 0.
#[cfg(target_os = "linux")]
fn reap(pid: libc::pid_t, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: polls our own child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        }
        if r < 0 {
            return false;
        }
        if Instant::now() >= until {
            // SAFETY: signals and then reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Takes a snapshot in a forked child: the child has a copy-on-write image of
/// the engine at this instant, serializes it and writes the file (`.tmp`,
/// fsync, rename, directory fsync), then `_exit`s; the shard only waits for
/// the fork. A thread of the parent waits for the child and then keeps the
/// two newest snapshots, drops covered segments and publishes the horizon.
/// The child dies with the parent (`PR_SET_PDEATHSIG`), never logs, never
/// flushes the parent's buffers. `None` if the fork failed (the caller falls
/// back to serializing on its thread).
#[cfg(target_os = "linux")]
pub fn snapshot(
    engine: &Engine,
    dir: &std::path::Path,
    seq: u64,
    index: usize,
    metrics: &Arc<ShardMetrics>,
    outbox: Option<Arc<OutboxShared>>,
) -> Option<std::thread::JoinHandle<()>> {
    let parent = std::process::id();
    // No other thread of the host preempts the fork while it copies the
    // page tables (the child starts at normal priority).
    let boosted = REALTIME.load(Ordering::Relaxed) && set_realtime(true);
    let start = Instant::now();
    let before = ThreadUsage::now();
    // SAFETY: the child only serializes the engine (plain memory reads and
    // allocations: glibc's malloc is usable in the child of a multithreaded
    // fork), writes one file and calls `_exit`; it takes no lock another
    // thread of the parent could have held and runs no destructor.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: async-signal-safe calls in the child; the descriptor is
        // the child's own copy.
        unsafe {
            let lock = LOCK_FD.load(Ordering::Relaxed);
            if lock >= 0 {
                libc::close(lock);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent as libc::pid_t {
                libc::_exit(3);
            }
        }
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let bytes = engine.snapshot();
            wal::put_snapshot(dir, seq, &bytes).is_ok()
        }));
        // SAFETY: leaves without running the parent's atexit handlers or
        // flushing its stdio buffers.
        unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) }
    }
    let forked = std::io::Error::last_os_error();
    let stall = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    // Where the hold went: on the CPU, waiting (voluntary switches), or
    // preempted (involuntary ones).
    let used = ThreadUsage::now().since(&before);
    if boosted && !set_realtime(false) {
        warn!(shard = index, error = %std::io::Error::last_os_error(),
            "cannot return to normal priority after a fork; forks stay at normal priority");
        REALTIME.store(false, Ordering::Relaxed);
    }
    if pid < 0 {
        warn!(shard = index, error = %forked,
            "cannot fork for a snapshot; serializing on the shard's thread");
        return None;
    }
    CHILDREN.fetch_add(1, Ordering::SeqCst);
    ALLOC_WAIT_FROM.store(0, Ordering::SeqCst);
    metrics.snapshot_held(stall);
    let dir = dir.to_path_buf();
    let waiter = move || {
        let ok = reap(pid, CHILD_LIMIT);
        // The pages the shards wrote while the child ran were split.
        huge_pages_again();
        CHILDREN.fetch_sub(1, Ordering::SeqCst);
        if !ok {
            warn!(
                shard = index,
                seq, "the snapshot child failed; the log keeps growing until a snapshot succeeds"
            );
            return;
        }
        match wal::prune_snapshots(&dir) {
            Ok(()) => {
                if let Some(o) = &outbox {
                    o.set_horizon(index, wal::recovery_horizon(&dir));
                }
                info!(
                    shard = index,
                    seq,
                    fork_ms = stall as f64 * 1e-6,
                    fork_cpu_ms = used.cpu_us as f64 * 1e-3,
                    fork_waits = used.voluntary,
                    fork_preempted = used.involuntary,
                    total_ms = start.elapsed().as_secs_f64() * 1e3,
                    "snapshot written (forked)"
                );
            }
            Err(e) => warn!(shard = index, seq, error = %e, "cannot prune old snapshots"),
        }
    };
    match std::thread::Builder::new()
        .name(format!("redcloud-snap-{index}"))
        .spawn(waiter)
    {
        Ok(h) => Some(h),
        Err(e) => {
            // The child runs on; reap it here.
            warn!(shard = index, error = %e, "cannot start the snapshot waiter; waiting here");
            reap(pid, CHILD_LIMIT);
            CHILDREN.fetch_sub(1, Ordering::SeqCst);
            None
        }
    }
}

/// Whether forks run at real-time priority (`[daemon] fork_realtime`, and
/// the process may: see [`allow_realtime`]).
static REALTIME: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `SCHED_RESET_ON_FORK` (`linux/sched.h`; not in the `libc` crate): a
/// child of a thread with this flag starts at normal priority.
#[cfg(target_os = "linux")]
const SCHED_RESET_ON_FORK: libc::c_int = 0x4000_0000;

/// Puts the calling thread at real-time priority (`SCHED_FIFO` 1, not
/// inherited by children) or back to normal (`SCHED_OTHER`, its nice value
/// unchanged); `false` if the kernel refused.
#[cfg(target_os = "linux")]
fn set_realtime(on: bool) -> bool {
    let (policy, priority) = if on {
        (libc::SCHED_FIFO | SCHED_RESET_ON_FORK, 1)
    } else {
        (libc::SCHED_OTHER, 0)
    };
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid pointer.
    unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn set_realtime(_: bool) -> bool {
    false
}

/// Lets forks for snapshots run at real-time priority, so that the other
/// threads on the host (the daemon's own, a broker's, a load generator's)
/// do not preempt the fork while the shard waits for it: a fork is a few
/// milliseconds of the kernel's work, and a preemption in its middle adds
/// a time slice of someone else's to the hold. Tried once on the calling
/// thread; `Err` says why not (the process needs `CAP_SYS_NICE` or an
/// `RLIMIT_RTPRIO` of at least 1), and forks then run at normal priority.
pub fn allow_realtime() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("real-time scheduling of the fork is for Linux".into());
    }
    if !set_realtime(true) {
        return Err(format!(
            "the process may not use real-time scheduling ({}; needs CAP_SYS_NICE or an RLIMIT_RTPRIO of at least 1)",
            std::io::Error::last_os_error()
        ));
    }
    if !set_realtime(false) {
        return Err(format!(
            "cannot return to normal priority ({})",
            std::io::Error::last_os_error()
        ));
    }
    REALTIME.store(true, Ordering::Relaxed);
    Ok(())
}

/// The calling thread's CPU time (its CPU clock) and context switches
/// (`getrusage`).
#[cfg(target_os = "linux")]
#[derive(Clone, Copy, Debug, Default)]
struct ThreadUsage {
    cpu_us: i64,
    voluntary: i64,
    involuntary: i64,
}

#[cfg(target_os = "linux")]
impl ThreadUsage {
    fn now() -> ThreadUsage {
        // SAFETY: `getrusage` fills the zeroed struct we pass it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid out-pointer; RUSAGE_THREAD is the calling thread.
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
            return ThreadUsage::default();
        }
        // The CPU time from the thread's clock: `getrusage` counts a running
        // thread's time only up to its last tick or switch, so a few
        // milliseconds' difference of `ru_utime + ru_stime` can read 0.
        // SAFETY: `clock_gettime` fills the zeroed struct we pass it.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: a valid out-pointer; the calling thread's CPU clock.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
            return ThreadUsage::default();
        }
        ThreadUsage {
            cpu_us: ts.tv_sec * 1_000_000 + ts.tv_nsec / 1_000,
            voluntary: ru.ru_nvcsw,
            involuntary: ru.ru_nivcsw,
        }
    }

    fn since(&self, before: &ThreadUsage) -> ThreadUsage {
        ThreadUsage {
            cpu_us: self.cpu_us - before.cpu_us,
            voluntary: self.voluntary - before.voluntary,
            involuntary: self.involuntary - before.involuntary,
        }
    }
}

/// Snapshot children alive.
static CHILDREN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// When the huge-page pass now due was asked for, in milliseconds since
/// [`EPOCH`] plus one (0: none due).
static PASS_DUE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// How often the keeper collapses without being asked.
const PASS_EVERY: Duration = Duration::from_secs(15);

/// Longest a fork waits for a huge-page pass.
const PASS_WAIT: Duration = Duration::from_secs(10);

fn since_epoch_ms() -> u64 {
    let e = EPOCH.get_or_init(Instant::now);
    u64::try_from(e.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

/// Whether a shard should put its forked snapshot off for a moment: another
/// shard's child is still running (the pages written meanwhile are split
/// and cannot be collapsed while the child shares them), or the huge-page
/// pass after one is still due (at most [`PASS_WAIT`]), or large blocks
/// were allocated since the last pass (a table that grew moved into fresh
/// memory on 4 KiB pages: such a fork copies an entry per 4 KiB of it, tens
/// of milliseconds per GiB; the pass is asked for, and the fork waits for it
/// as for the pass after a child). Forks one after the other find the memory
/// on huge pages, and so take a few milliseconds.
pub fn busy() -> bool {
    if CHILDREN.load(Ordering::SeqCst) > 0 {
        return true;
    }
    if KEEPER.get().is_some() && large_since_pass() >= LARGE_PASS_AFTER {
        // Asked for at most PASS_WAIT after this fork was first put off for
        // it: a daemon that keeps allocating large blocks still forks.
        let now = since_epoch_ms();
        let from = ALLOC_WAIT_FROM
            .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst)
            .unwrap_or_else(|from| from);
        if still_waits(now, from) {
            huge_pages_again();
        }
    }
    let due = PASS_DUE.load(Ordering::SeqCst);
    due != 0 && still_waits(since_epoch_ms(), due)
}

/// Whether a fork still waits at `now` for a pass asked for at `from`, or
/// first put off at `from` for large blocks (milliseconds, as
/// [`since_epoch_ms`]): for at most [`PASS_WAIT`].
fn still_waits(now: u64, from: u64) -> bool {
    now.saturating_sub(from) < PASS_WAIT.as_millis() as u64
}

/// Wakes the huge-page keeper, if it runs.
static KEEPER: std::sync::OnceLock<std::sync::mpsc::SyncSender<()>> = std::sync::OnceLock::new();

/// Bytes in large blocks ([`LARGE_BLOCK`] and up) allocated since the start
/// (counted by [`Allocator`]), and that count when the keeper's last pass
/// began.
static LARGE_ALLOCATED: LargeBytes = LargeBytes::new();
static LARGE_AT_PASS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// When the next fork was first put off for large blocks, in milliseconds
/// since [`EPOCH`] plus one (0: it was not); cleared by each fork.
static ALLOC_WAIT_FROM: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Bytes allocated in large blocks. Wrapping, and read only as a difference
/// of two readings. Frees are not subtracted: a table that doubles and a
/// buffer allocated and freed both ask for a pass. (Counting the bytes held
/// instead, frees subtracted, was tried: fewer passes, and a longest hold
/// of 8.9 ms against 4.6–4.8 ms in the same load, docs/performance.md.)
struct LargeBytes(std::sync::atomic::AtomicUsize);

impl LargeBytes {
    const fn new() -> LargeBytes {
        LargeBytes(std::sync::atomic::AtomicUsize::new(0))
    }

    #[inline]
    fn allocated(&self, size: usize) {
        if size >= LARGE_BLOCK {
            self.0.fetch_add(size, Ordering::Relaxed);
        }
    }

    fn now(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Bytes allocated since the reading `then`.
    fn since(&self, then: usize) -> usize {
        self.now().wrapping_sub(then)
    }
}

/// Blocks this large are counted: a growing table's new block, which glibc
/// maps on its own or puts where a heap grew, in fresh memory either way,
/// on 4 KiB pages until the keeper's next pass. Smaller ones are rare
/// enough not to matter.
const LARGE_BLOCK: usize = 1 << 20;

/// This many bytes allocated in large blocks since the last pass make the
/// keeper collapse again soon, and a fork wait for it.
const LARGE_PASS_AFTER: usize = 32 << 20;

/// How often the keeper looks at [`LARGE_ALLOCATED`].
const PASS_POLL: Duration = Duration::from_millis(250);

/// Whether the keeper, not asked, collapses now: first, every
/// [`PASS_EVERY`], and once [`LARGE_PASS_AFTER`] bytes were allocated in
/// large blocks since its last pass.
fn pass_now(first: bool, since_last: Duration, large: usize) -> bool {
    first || since_last >= PASS_EVERY || large >= LARGE_PASS_AFTER
}

fn large_since_pass() -> usize {
    LARGE_ALLOCATED.since(LARGE_AT_PASS.load(Ordering::Relaxed))
}

/// The daemon's allocator: the system's (glibc's `malloc`), counting the
/// bytes allocated in large blocks so that the huge-page keeper can
/// collapse a grown table before the next fork copies it page by page.
/// Only one relaxed atomic add per block of a MiB or more; nothing else
/// changes.
pub struct Allocator;

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counter neither allocates nor locks.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LARGE_ALLOCATED.allocated(layout.size());
        // SAFETY: the caller's contract, forwarded.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        LARGE_ALLOCATED.allocated(layout.size());
        // SAFETY: the caller's contract, forwarded.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            LARGE_ALLOCATED.allocated(new_size);
        }
        // SAFETY: the caller's contract, forwarded.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

/// Smallest region kept on huge pages: smaller ones are stacks, small
/// arenas and libraries' data, and gain nothing.
const HUGE_REGION_MIN: usize = 8 << 20;
const HUGE: usize = 2 << 20;

/// Starts the huge-page keeper: a thread that marks the daemon's large
/// anonymous regions for transparent huge pages and collapses them, now and
/// after every snapshot child. Returns why not, if it cannot (not Linux,
/// transparent huge pages set to `never`, an older kernel without
/// `MADV_COLLAPSE`).
pub fn keep_huge_pages() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("transparent huge pages are a Linux feature".into());
    }
    let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .map_err(|e| format!("cannot read transparent_hugepage/enabled: {e}"))?;
    if mode.contains("[never]") {
        return Err("transparent huge pages are disabled on this host ([never])".into());
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    if KEEPER.set(tx).is_err() {
        return Ok(());
    }
    let keep = move || {
        let mut first = true;
        let mut last = Instant::now();
        // After every snapshot child, soon after large blocks were
        // allocated, and every 15 s for the rest of the memory allocated
        // since (a pass over memory already on huge pages costs little).
        // Not at allocation time: a fault that must find a huge page may
        // compact memory first, on the thread that touched it (a restore
        // measured 1.5x slower that way).
        loop {
            match rx.recv_timeout(PASS_POLL) {
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    if !pass_now(first, last.elapsed(), large_since_pass()) =>
                {
                    continue
                }
                _ => {}
            }
            let start = Instant::now();
            last = start;
            LARGE_AT_PASS.store(LARGE_ALLOCATED.now(), Ordering::Relaxed);
            let pass = collapse_pass();
            PASS_DUE.store(0, Ordering::SeqCst);
            match pass {
                Ok(p) => {
                    let ms = start.elapsed().as_secs_f64() * 1e3;
                    if first {
                        info!(
                            regions = p.regions,
                            mib = p.bytes >> 20,
                            ms,
                            "huge pages: large regions collapsed"
                        );
                    } else {
                        tracing::debug!(
                            regions = p.regions,
                            mib = p.bytes >> 20,
                            ms,
                            "huge pages: collapsed again"
                        );
                    }
                }
                Err(e) => {
                    warn!(error = %e, "huge pages: cannot collapse; the daemon goes on with small pages");
                    return;
                }
            }
            first = false;
        }
    };
    std::thread::Builder::new()
        .name("redcloud-thp".into())
        .spawn(keep)
        .map_err(|e| format!("cannot start the huge-page thread: {e}"))?;
    huge_pages_again();
    Ok(())
}

/// Asks the keeper for a pass (at most one waits; a pass covers them all).
fn huge_pages_again() {
    if let Some(tx) = KEEPER.get() {
        let _ = PASS_DUE.compare_exchange(0, since_epoch_ms(), Ordering::SeqCst, Ordering::SeqCst);
        let _ = tx.try_send(());
    }
}

/// What one pass covered.
struct Pass {
    regions: usize,
    bytes: usize,
}

/// The private anonymous read-write regions of at least
/// [`HUGE_REGION_MIN`], aligned inward to 2 MiB, from `/proc/self/maps`.
fn large_regions(maps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(range), Some(perms), Some(_off), Some(_dev), Some(inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let path = f.next().unwrap_or("");
        if perms != "rw-p" || inode != "0" || !(path.is_empty() || path == "[heap]") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        let start = a.next_multiple_of(HUGE);
        let end = b & !(HUGE - 1);
        if b.saturating_sub(a) >= HUGE_REGION_MIN && end > start {
            out.push((start, end));
        }
    }
    out
}

#[cfg(target_os = "linux")]
fn collapse_pass() -> std::io::Result<Pass> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let regions = large_regions(&maps);
    let mut pass = Pass {
        regions: regions.len(),
        bytes: 0,
    };
    let (mut ok, mut invalid) = (0usize, 0usize);
    for (start, end) in regions {
        // In steps, so that one call never works on a huge region at once
        // (each 2 MiB is collapsed under its own short lock anyway).
        let mut at = start;
        while at < end {
            let len = (end - at).min(64 << 20);
            // SAFETY: advice only, on a range of our own address space that
            // was mapped a moment ago; a range unmapped meanwhile makes the
            // call fail with ENOMEM, which is ignored. Neither advice changes
            // the contents of memory.
            let r = unsafe {
                libc::madvise(at as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
                libc::madvise(at as *mut libc::c_void, len, libc::MADV_COLLAPSE)
            };
            if r == 0 {
                ok += 1;
            } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                // A kernel without MADV_COLLAPSE (before 6.1), or a region
                // that cannot have huge pages. EAGAIN or ENOMEM (pages a
                // child still shares, no huge page free, a range unmapped
                // meanwhile) are left for the next pass.
                invalid += 1;
            }
            pass.bytes += len;
            at += len;
        }
    }
    if ok == 0 && invalid > 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(pass)
}

#[cfg(not(target_os = "linux"))]
fn collapse_pass() -> std::io::Result<Pass> {
    Err(std::io::Error::other("not Linux"))
}

#[cfg(not(target_os = "linux"))]
pub fn snapshot(
    _: &Engine,
    _: &std::path::Path,
    _: u64,
    _: usize,
    _: &Arc<ShardMetrics>,
    _: Option<Arc<OutboxShared>>,
) -> Option<std::thread::JoinHandle<()>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_private_anonymous_regions_are_aligned_inward() {
        let maps = "\
55d0c0000000-55d0c0a00000 rw-p 00000000 00:00 0                          [heap]
7f0000100000-7f0004100000 rw-p 00000000 00:00 0 
7f0004100000-7f0004200000 rw-p 00000000 00:00 0 
7f0005000000-7f0006000000 r--p 00000000 fd:01 1234                       /usr/lib/x.so
7f0006000000-7f0007000000 rw-p 00000000 fd:01 1234                       /usr/lib/x.so
7f0008000000-7f0009000000 rw-p 00000000 00:00 0                          [stack]
7f000a000000-7f000b000000 ---p 00000000 00:00 0 
";
        assert_eq!(
            large_regions(maps),
            vec![
                (0x55d0c0000000, 0x55d0c0a00000),
                (0x7f0000200000, 0x7f0004000000),
            ]
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn thread_usage_counts_this_threads_cpu_and_sleeps() {
        // Spin until the thread's own CPU time shows 20 ms (however busy the
        // machine is), then sleep: both must show.
        let before = ThreadUsage::now();
        let t = Instant::now();
        let mut x = 0u64;
        while ThreadUsage::now().since(&before).cpu_us < 20_000 {
            assert!(t.elapsed() < Duration::from_secs(20), "no CPU time counted");
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        std::thread::sleep(Duration::from_millis(5));
        let used = ThreadUsage::now().since(&before);
        assert!(used.cpu_us >= 20_000, "{used:?}");
        assert!(
            used.voluntary >= 1,
            "the sleep is a voluntary switch: {used:?}"
        );
    }

    #[test]
    fn large_blocks_allocated_ask_for_a_pass_and_small_ones_do_not() {
        let large = LargeBytes::new();
        let start = large.now();
        large.allocated(64 << 10);
        assert_eq!(large.since(start), 0, "small blocks are not counted");
        large.allocated(8 << 20);
        assert_eq!(large.since(start), 8 << 20);
        let at_pass = large.now();
        // A table that doubles: its new block.
        large.allocated(128 << 20);
        assert_eq!(large.since(at_pass), 128 << 20);
        assert!(pass_now(
            false,
            Duration::from_secs(1),
            large.since(at_pass)
        ));
        assert!(!pass_now(false, Duration::from_secs(1), (32 << 20) - 1));
        assert!(pass_now(false, Duration::from_secs(1), 32 << 20));
        assert!(pass_now(false, PASS_EVERY, 0));
        assert!(pass_now(true, Duration::ZERO, 0));
        // A fork waits for such passes 10 s at most, however many come.
        assert!(still_waits(1_000, 1_000));
        assert!(still_waits(10_999, 1_000));
        assert!(!still_waits(11_000, 1_000));
    }

    #[test]
    fn the_daemons_allocator_counts_large_blocks() {
        // Other tests allocate meanwhile: only lower bounds hold. The
        // blocks are never touched, so they cost no memory.
        let before = LARGE_ALLOCATED.now();
        let mut v: Vec<u8> = std::hint::black_box(Vec::with_capacity(256 << 20));
        let grown = LARGE_ALLOCATED.since(before);
        assert!(grown >= 256 << 20, "{grown}");
        let before = LARGE_ALLOCATED.now();
        v.reserve_exact(512 << 20);
        let grown = LARGE_ALLOCATED.since(before);
        assert!(
            grown >= 512 << 20,
            "a block grown counts its new size: {grown}"
        );
        drop(std::hint::black_box(v));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_realtime_fork_starts_its_child_and_returns_its_thread_at_normal_priority() {
        // SAFETY: queries the calling thread's policy.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        assert_eq!(policy(), libc::SCHED_OTHER);
        if !set_realtime(true) {
            // Not permitted on this host: nothing changed, and the daemon's
            // check says why.
            assert_eq!(policy(), libc::SCHED_OTHER);
            let why = allow_realtime().unwrap_err();
            assert!(why.contains("CAP_SYS_NICE"), "{why}");
            return;
        }
        assert_eq!(policy(), libc::SCHED_FIFO | SCHED_RESET_ON_FORK);
        // SAFETY: the child only asks for its own policy and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: plain system calls in the child.
            unsafe {
                let p = libc::sched_getscheduler(0);
                libc::_exit(if p == libc::SCHED_OTHER { 0 } else { 1 })
            }
        }
        assert!(set_realtime(false));
        assert_eq!(policy(), libc::SCHED_OTHER);
        assert!(pid > 0, "fork failed");
        let mut status = 0;
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child ran at real-time priority"
        );
        assert!(allow_realtime().is_ok());
        assert_eq!(policy(), libc::SCHED_OTHER);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_pass_collapses_a_large_region_without_changing_it() {
        // A region of our own, touched page by page, then a pass: the bytes
        // are the same afterwards whatever the host's huge-page setting.
        let mut v = vec![0u8; 24 << 20];
        for (i, b) in v.iter_mut().enumerate().step_by(4096) {
            *b = (i / 4096) as u8;
        }
        let pass = collapse_pass();
        for (i, b) in v.iter().enumerate().step_by(4096) {
            assert_eq!(*b, (i / 4096) as u8);
        }
        if let Ok(p) = pass {
            assert!(
                p.regions >= 1 && p.bytes >= 16 << 20,
                "{} regions, {} bytes",
                p.regions,
                p.bytes
            );
        }
    }
}
