//! Ticket benchmarks for the goals of the ticket issue, through the engine
//! (ids interned, idempotency, schedules, the timing wheel):
//! - opening and resolving tickets: timer insert + cancel (goal: >= 10 M/s);
//! - firing pending ticket timers (goal: >= 5 M timers/s);
//! - memory per open ticket with its pending timer (goal: <= 128 bytes).
//!
//! The wheel alone is measured by the `timer` bench. `REDCLOUD_BENCH_TICKETS`
//! overrides the number of open tickets (default 10 M).

#![allow(clippy::print_stderr)] // the bench reports memory figures on stderr

use std::borrow::Cow;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use redcloud_benches::rss_bytes;
use redcloud_engine::event::{Body, Event};
use redcloud_engine::policy::EngineConfig;
use redcloud_engine::time::{Ts, MICROS_PER_DAY};
use redcloud_engine::Engine;

fn tickets() -> usize {
    std::env::var("REDCLOUD_BENCH_TICKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn start() -> Ts {
    Ts::parse_rfc3339("2026-03-02T08:00:00+08:00").expect("ts")
}

/// An engine with a small org tree; idempotency retention 1 µs so that the id
/// table stays empty (events are 1 µs apart) and only ticket state is measured.
fn engine() -> Engine {
    let mut cfg = EngineConfig::contract_default();
    cfg.streaks.clear();
    cfg.dedup_retention = 1;
    let mut e = Engine::new(Arc::new(cfg));
    let mut out = Vec::new();
    for (i, (org, parent, leader)) in [("county", None, "chief"), ("town", Some("county"), "tl")]
        .into_iter()
        .enumerate()
    {
        e.apply(
            &Event {
                id: format!("org-{i}").into(),
                at: start(),
                body: Body::OrgUpserted {
                    org: org.into(),
                    parent: parent.map(Cow::Borrowed),
                    level: i as u8,
                    name: None,
                    leader: Some(leader.into()),
                    group: None,
                },
            },
            &mut out,
        );
    }
    e
}

fn open(e: &mut Engine, k: u64, at: Ts, out: &mut Vec<redcloud_engine::notify::Notification>) {
    let id = format!("t{k:09}");
    e.apply(
        &Event {
            id: Cow::Owned(format!("o{k}")),
            at,
            body: Body::TicketOpened {
                ticket: Cow::Owned(id),
                org: "town".into(),
                category: "help".into(),
                title: None,
            },
        },
        out,
    );
}

fn open_and_resolve(c: &mut Criterion) {
    const BATCH: u64 = 200_000;
    let mut g = c.benchmark_group("tickets_open_resolve");
    g.throughput(Throughput::Elements(2 * BATCH));
    g.sample_size(10);
    let mut e = engine();
    let mut next = 0u64;
    let mut at = start().plus(1);
    g.bench_function("engine_open_then_resolve", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut out = Vec::new();
            for _ in 0..iters {
                // Events built outside the timed part.
                let mut evs = Vec::with_capacity(2 * BATCH as usize);
                for k in next..next + BATCH {
                    at = at.plus(1);
                    evs.push(Event {
                        id: Cow::Owned(format!("o{k}")),
                        at,
                        body: Body::TicketOpened {
                            ticket: Cow::Owned(format!("t{k:09}")),
                            org: "town".into(),
                            category: "help".into(),
                            title: None,
                        },
                    });
                }
                for k in next..next + BATCH {
                    at = at.plus(1);
                    evs.push(Event {
                        id: Cow::Owned(format!("r{k}")),
                        at,
                        body: Body::TicketResolved {
                            ticket: Cow::Owned(format!("t{k:09}")),
                        },
                    });
                }
                next += BATCH;
                let t = Instant::now();
                for ev in &evs {
                    e.apply(ev, &mut out);
                }
                total += t.elapsed();
                out.clear();
            }
            total
        })
    });
    g.finish();
}

fn fire_and_memory(c: &mut Criterion) {
    let n = tickets();
    let before = rss_bytes().unwrap_or(0);
    let mut e = engine();
    let mut out = Vec::new();
    // Opened over one day: every ticket keeps its first timer (the warning,
    // 8 days later) pending.
    let step = MICROS_PER_DAY / n as i64;
    let mut at = start();
    for k in 0..n as u64 {
        at = at.plus(step.max(1));
        open(&mut e, k, at, &mut out);
        out.clear();
    }
    let after = rss_bytes().unwrap_or(0);
    eprintln!(
        "memory: {n} open tickets, {} pending timers: rss growth {:.1} bytes/ticket",
        e.pending_timers(),
        after.saturating_sub(before) as f64 / n as f64
    );
    let mut g = c.benchmark_group("tickets_fire");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    // Each iteration advances one hour of event time, firing what is due,
    // from the first warning on (8 days after the first opening).
    let mut now = start().plus(8 * MICROS_PER_DAY);
    let mut fired_total = 0u64;
    let mut spent = Duration::ZERO;
    g.bench_function(format!("engine_{n}_tickets_advance_1h"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                now = now.plus(3_600_000_000);
                let t = Instant::now();
                e.advance(now, &mut out);
                let dt = t.elapsed();
                total += dt;
                spent += dt;
                fired_total += out.len() as u64;
                black_box(out.len());
                out.clear();
            }
            total
        })
    });
    g.finish();
    eprintln!(
        "firing: {fired_total} notifications in {:.3} s: {:.2} M notifications/s ({} timers still pending)",
        spent.as_secs_f64(),
        fired_total as f64 / spent.as_secs_f64() / 1e6,
        e.pending_timers()
    );
}

criterion_group!(benches, open_and_resolve, fire_and_memory);
criterion_main!(benches);
