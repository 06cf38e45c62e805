//! Snapshots by `fork` (`[daemon] snapshot_mode = "fork"`, the default on
//! Linux with `durability = "wal"`): the shard's thread only waits for the
//! fork (a copy of the page tables); the child serializes its copy-on-write
//! image of the engine and writes the file. This is the one module of the
//! daemon that uses `unsafe`: `fork`, `prctl`, `getppid`, `waitpid`, `kill`
//! and `_exit`, each with its reason.
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
    let start = Instant::now();
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
    if pid < 0 {
        warn!(shard = index, error = %std::io::Error::last_os_error(),
            "cannot fork for a snapshot; serializing on the shard's thread");
        return None;
    }
    let stall = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    metrics.snapshots.fetch_add(1, Ordering::Relaxed);
    metrics.snapshot_stall_last.store(stall, Ordering::Relaxed);
    metrics
        .snapshot_stall_max
        .fetch_max(stall, Ordering::Relaxed);
    let dir = dir.to_path_buf();
    let waiter = move || {
        let ok = reap(pid, CHILD_LIMIT);
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
            None
        }
    }
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
