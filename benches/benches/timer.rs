//! Benchmarks of the timing wheel (`redcloud_engine::timer::Wheel`) against a
//! `BTreeMap<(i64, u64), u64>` baseline doing the same work.
//!
//! Workload: 10 million pending timers with uniformly random deadlines over 30
//! days (microsecond instants), `u64` payloads.
//!
//! * `timer_insert_cancel/*`: steady state at 10 M pending; one iteration cancels
//!   a random pending timer and inserts a new one (2 operations).
//! * `timer_churn/*`: insert a timer and cancel it right away (2 operations), 10 M
//!   pending in the background.
//! * `timer_fire/*`: advance through the 30 days in 1-second steps, firing all
//!   10 M timers (setup, a clone of the filled structure, is not timed).
//!
//! Memory per pending timer is printed before the runs (slab capacity arithmetic
//! and resident-set growth from `/proc/self/statm`).
//!
//! Run: `cargo bench -p redcloud-benches --bench timer -- --warm-up-time 1
//! --measurement-time 5 --sample-size 10`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use redcloud_engine::time::{Ts, MICROS_PER_DAY, MICROS_PER_SEC};
use redcloud_engine::timer::{TimerId, Wheel};

/// Pending timers.
const N: usize = 10_000_000;
/// Start instant: 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600 * MICROS_PER_SEC;
/// Deadlines are spread over this span.
const SPAN: i64 = 30 * MICROS_PER_DAY;
/// Advance step of the firing benchmark.
const STEP: i64 = MICROS_PER_SEC;

/// SplitMix64: a small deterministic generator (no `rand` dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A deadline in `[T0, T0 + SPAN)`.
    fn deadline(&mut self) -> i64 {
        T0 + (self.next() % SPAN as u64) as i64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Resident set size in bytes (Linux), or 0.
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// The N deadlines (the same in every structure).
fn deadlines() -> Vec<i64> {
    let mut rng = Rng(42);
    (0..N).map(|_| rng.deadline()).collect()
}

/// A presized wheel holding the deadlines, and the ids of its timers.
fn build_wheel(ds: &[i64]) -> (Wheel<u64>, Vec<TimerId>) {
    let mut w = Wheel::with_capacity(Ts(T0), ds.len());
    let ids = ds
        .iter()
        .enumerate()
        .map(|(i, &d)| w.insert(Ts(d), i as u64))
        .collect();
    (w, ids)
}

/// Built by inserting in deadline-random order, as a live map would be (a
/// `collect` would bulk-build a denser, sorted tree).
fn build_btree(ds: &[i64]) -> BTreeMap<(i64, u64), u64> {
    let mut m = BTreeMap::new();
    for (i, &d) in ds.iter().enumerate() {
        m.insert((d, i as u64), i as u64);
    }
    m
}

#[allow(clippy::print_stdout)] // the bench reports memory figures on stdout
fn memory_report(ds: &[i64]) {
    let mb = |b: usize| b as f64 / 1e6;
    println!(
        "timer memory: entry = {} B (u64 payload), TimerId = {} B",
        Wheel::<u64>::entry_bytes(),
        std::mem::size_of::<TimerId>()
    );
    let fill = |presized: bool| {
        let mut w = if presized {
            Wheel::with_capacity(Ts(T0), ds.len())
        } else {
            Wheel::new(Ts(T0))
        };
        for (i, &d) in ds.iter().enumerate() {
            w.insert(Ts(d), i as u64);
        }
        w
    };
    let r0 = rss_bytes();
    let w = fill(true);
    let r1 = rss_bytes();
    println!(
        "timer memory: wheel (with_capacity) {} timers: heap {:.1} MB = {:.1} B/timer; RSS +{:.1} MB = {:.1} B/timer",
        w.len(),
        mb(w.heap_bytes()),
        w.heap_bytes() as f64 / w.len() as f64,
        mb(r1 - r0),
        (r1 - r0) as f64 / w.len() as f64
    );
    drop(w);
    let r0 = rss_bytes();
    let w = fill(false);
    let r1 = rss_bytes();
    println!(
        "timer memory: wheel (grown by doubling): heap {:.1} MB = {:.1} B/timer; RSS +{:.1} MB = {:.1} B/timer",
        mb(w.heap_bytes()),
        w.heap_bytes() as f64 / w.len() as f64,
        mb(r1 - r0),
        (r1 - r0) as f64 / w.len() as f64
    );
    drop(w);
    let r0 = rss_bytes();
    let m = build_btree(ds);
    let r1 = rss_bytes();
    println!(
        "timer memory: BTreeMap<(i64,u64),u64> {} timers: RSS +{:.1} MB = {:.1} B/timer",
        m.len(),
        mb(r1 - r0),
        (r1 - r0) as f64 / m.len() as f64
    );
}

fn bench_timer(c: &mut Criterion) {
    let ds = deadlines();
    memory_report(&ds);

    // (a) steady state: cancel a random pending timer, insert a new one.
    {
        let mut g = c.benchmark_group("timer_insert_cancel");
        g.throughput(Throughput::Elements(2));
        {
            let (mut w, mut ids) = build_wheel(&ds);
            let mut rng = Rng(7);
            let mut p = N as u64;
            g.bench_function("wheel", |b| {
                b.iter(|| {
                    let j = rng.below(ids.len());
                    black_box(w.cancel(ids[j]));
                    ids[j] = w.insert(Ts(rng.deadline()), p);
                    p += 1;
                })
            });
        }
        {
            let mut m = build_btree(&ds);
            let mut keys: Vec<(i64, u64)> =
                ds.iter().enumerate().map(|(i, &d)| (d, i as u64)).collect();
            let mut rng = Rng(7);
            let mut p = N as u64;
            g.bench_function("btreemap", |b| {
                b.iter(|| {
                    let j = rng.below(keys.len());
                    black_box(m.remove(&keys[j]));
                    let k = (rng.deadline(), p);
                    m.insert(k, p);
                    keys[j] = k;
                    p += 1;
                })
            });
        }
        g.finish();
    }

    // (a') churn: insert then cancel at once, 10 M pending in the background.
    {
        let mut g = c.benchmark_group("timer_churn");
        g.throughput(Throughput::Elements(2));
        {
            let (mut w, _ids) = build_wheel(&ds);
            let mut rng = Rng(9);
            g.bench_function("wheel", |b| {
                b.iter(|| {
                    let id = w.insert(Ts(rng.deadline()), 1);
                    black_box(w.cancel(id))
                })
            });
        }
        {
            let mut m = build_btree(&ds);
            let mut rng = Rng(9);
            let mut p = N as u64;
            g.bench_function("btreemap", |b| {
                b.iter(|| {
                    let k = (rng.deadline(), p);
                    m.insert(k, 1);
                    p += 1;
                    black_box(m.remove(&k))
                })
            });
        }
        g.finish();
    }

    // (b) firing: advance through the 30 days in 1 s steps.
    {
        let mut g = c.benchmark_group("timer_fire");
        g.throughput(Throughput::Elements(N as u64));
        g.sampling_mode(SamplingMode::Flat);
        {
            let (proto, _ids) = build_wheel(&ds);
            g.bench_function("wheel", |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let mut w = proto.clone();
                        let mut out = Vec::with_capacity(1024);
                        let mut fired = 0usize;
                        let start = Instant::now();
                        let mut t = T0;
                        while t < T0 + SPAN {
                            t += STEP;
                            w.advance(Ts(t), &mut out);
                            fired += out.len();
                            black_box(&out);
                            out.clear();
                        }
                        total += start.elapsed();
                        assert_eq!(fired, N);
                    }
                    total
                })
            });
        }
        {
            let proto = build_btree(&ds);
            g.bench_function("btreemap", |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let mut m = proto.clone();
                        let mut out: Vec<(Ts, u64)> = Vec::with_capacity(1024);
                        let mut fired = 0usize;
                        let start = Instant::now();
                        let mut t = T0;
                        while t < T0 + SPAN {
                            t += STEP;
                            while let Some(e) = m.first_entry() {
                                if e.key().0 > t {
                                    break;
                                }
                                let ((at, _), p) = e.remove_entry();
                                out.push((Ts(at), p));
                            }
                            fired += out.len();
                            black_box(&out);
                            out.clear();
                        }
                        total += start.elapsed();
                        assert_eq!(fired, N);
                    }
                    total
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench_timer);
criterion_main!(benches);
