//! Engine benchmarks for the goals of the foundation issue:
//! - applying `activity.recorded` to member state (goal: >= 5 M events/s);
//! - closing one working day for 10 M tracked members (goal: <= 1 s);
//! - resident memory per tracked member at 10 M (goal: <= 64 bytes);
//! - the replay path, NDJSON decode + apply (goal: >= 1 M events/s).
//!
//! Each has a baseline measured in the same run so that the report can give
//! ratios on a noisy shared machine. `REDCLOUD_BENCH_MEMBERS` overrides the
//! population of the close and memory benches (default 10 M).

#![allow(clippy::print_stderr)] // the bench reports memory figures on stderr

use std::borrow::Cow;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use redcloud_benches::{
    activity_lines, local, member_id, monday, populated_engine, populated_engine_with, rss_bytes,
};
use redcloud_engine::event::{decode, Body, Event};
use redcloud_engine::policy::EngineConfig;
use redcloud_engine::time::Day;

fn big_population() -> usize {
    std::env::var("REDCLOUD_BENCH_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

/// Applying pre-decoded `activity.recorded` events to 1 M members.
fn apply_activity(c: &mut Criterion) {
    const MEMBERS: usize = 1_000_000;
    const BATCH: usize = 1_000_000;
    let mut engine = populated_engine(MEMBERS);
    let zone = engine.config().zone;
    let ids: Vec<String> = (0..BATCH).map(|k| format!("e{k}")).collect();
    let members: Vec<String> = (0..BATCH)
        .map(|k| member_id(k.wrapping_mul(2_654_435_761) % MEMBERS))
        .collect();
    let at = zone.local_instant(monday(), 10 * 60);
    let mut g = c.benchmark_group("apply_activity");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    let mut round = 0u64;
    g.bench_function("engine", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                // Fresh ids each round, made outside the timed part, so that
                // every event is applied (not a duplicate).
                let events: Vec<Event<'_>> = ids
                    .iter()
                    .zip(&members)
                    .map(|(id, m)| Event {
                        id: Cow::Owned(format!("{id}-{round}")),
                        at,
                        body: Body::ActivityRecorded {
                            member: Cow::Borrowed(m),
                            activity: Cow::Borrowed("quiz"),
                        },
                    })
                    .collect();
                let mut out = Vec::new();
                let start = Instant::now();
                for ev in &events {
                    black_box(engine.apply(ev, &mut out));
                }
                total += start.elapsed();
            }
            total
        })
    });
    // The same events 1 µs apart with a 1 µs idempotency retention: every id
    // is still hashed, checked and recorded, but the table stays small, so
    // this is the member-state path without the misses of a big id table.
    let mut cfg = EngineConfig::contract_default();
    cfg.dedup_retention = 1;
    let mut short = populated_engine_with(MEMBERS, cfg);
    let mut at_short = zone.local_instant(monday(), 10 * 60);
    g.bench_function("engine_short_retention", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let events: Vec<Event<'_>> = ids
                    .iter()
                    .zip(&members)
                    .map(|(id, m)| {
                        at_short = at_short.plus(1);
                        Event {
                            id: Cow::Owned(format!("{id}-{round}")),
                            at: at_short,
                            body: Body::ActivityRecorded {
                                member: Cow::Borrowed(m),
                                activity: Cow::Borrowed("quiz"),
                            },
                        }
                    })
                    .collect();
                let mut out = Vec::new();
                let start = Instant::now();
                for ev in &events {
                    black_box(short.apply(ev, &mut out));
                }
                total += start.elapsed();
            }
            total
        })
    });
    // Baseline: the least any engine must do, a hash lookup of the member
    // id and a store into its state.
    let mut plain: HashMap<String, u16> = (0..MEMBERS).map(|i| (member_id(i), 0)).collect();
    g.bench_function("baseline_hashmap_store", |b| {
        b.iter(|| {
            for m in &members {
                if let Some(v) = plain.get_mut(m.as_str()) {
                    *v = black_box(7);
                }
            }
        })
    });
    g.finish();
}

/// Closing one working day for a large tracked population.
fn close_day(c: &mut Criterion) {
    let n = big_population();
    // Member state only: a 1 µs idempotency retention keeps the id table
    // empty (the setup events are 1 µs apart); it is measured on its own in
    // `apply_activity`.
    let mut cfg = EngineConfig::contract_default();
    cfg.dedup_retention = 1;
    let before = rss_bytes().unwrap_or(0);
    let mut engine = populated_engine_with(n, cfg);
    let after = rss_bytes().unwrap_or(0);
    let heap = engine.member_heap_bytes();
    eprintln!(
        "memory: {n} members: rss growth {:.1} bytes/member, accounted heap {:.1} bytes/member",
        (after.saturating_sub(before)) as f64 / n as f64,
        heap as f64 / n as f64
    );
    // A third of the members do the quiz each day.
    let mut g = c.benchmark_group("close_day");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    let mut day = monday();
    let mut seq = 0u64;
    let mut out = Vec::with_capacity(n);
    g.bench_function(format!("engine_{n}_members"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let cal = engine.config().calendar.clone();
                day = cal.next_working_day_on_or_after(Day(day.0 + 1));
                let at = local(&engine, day, 10 * 60);
                for i in (0..n).step_by(3) {
                    seq += 1;
                    let ev = Event {
                        id: Cow::Owned(format!("c{seq}")),
                        at,
                        body: Body::ActivityRecorded {
                            member: Cow::Owned(member_id(i)),
                            activity: Cow::Borrowed("quiz"),
                        },
                    };
                    engine.apply(&ev, &mut out);
                }
                out.clear();
                let close = local(&engine, day, 24 * 60);
                let start = Instant::now();
                engine.advance(close, &mut out);
                total += start.elapsed();
                black_box(out.len());
                out.clear();
            }
            total
        })
    });
    // Baseline: one pass over the same number of 6-byte states, each read and
    // written (the memory traffic floor of a day close).
    let mut states = vec![[0u16; 3]; n];
    g.bench_function(format!("baseline_scan_{n}_states"), |b| {
        b.iter(|| {
            for s in states.iter_mut() {
                s[2] = s[2].wrapping_add((s[0] != s[1]) as u16);
            }
            black_box(states.len())
        })
    });
    g.finish();
}

/// The replay path: NDJSON lines decoded and applied.
fn replay_path(c: &mut Criterion) {
    const MEMBERS: usize = 100_000;
    const BATCH: usize = 500_000;
    let levels: Vec<String> = ["city", "county", "town", "village", "group"]
        .map(String::from)
        .to_vec();
    let mut g = c.benchmark_group("replay_path");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    let mut round = 0u64;
    g.bench_function("decode_and_apply", |b| {
        b.iter_batched(
            || {
                round += 1;
                (
                    populated_engine(MEMBERS),
                    activity_lines(round * BATCH as u64, BATCH, MEMBERS, "+08:00"),
                )
            },
            |(mut engine, buf)| {
                let mut out = Vec::new();
                for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    if let Ok(ev) = decode(line, &levels) {
                        engine.apply(&ev, &mut out);
                    }
                }
                black_box(out.len())
            },
            BatchSize::PerIteration,
        )
    });
    // Baseline: parsing the same lines into serde_json::Value, no engine.
    let buf = activity_lines(0, BATCH, MEMBERS, "+08:00");
    g.bench_function("baseline_serde_json_value", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
                n += v.is_object() as usize;
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, apply_activity, replay_path, close_day);
criterion_main!(benches);
