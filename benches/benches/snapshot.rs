//! Snapshot benchmarks for the durability goals of #6:
//! - "recovery of 10 million members and 1 million open tickets in at most
//!   5 s": [`Engine::restore`] from the snapshot's bytes (the WAL tail replay
//!   after it is `Engine::apply`, measured by the `engine` and `tickets`
//!   benches);
//! - "snapshots in the background never stall ingestion for more than 10 ms
//!   at p99": [`Engine::snapshot`] runs on the shard's own thread, so its
//!   duration is the stall ingestion sees (`redcloud_snapshot_stall_seconds`).
//!
//! One engine holds `REDCLOUD_BENCH_MEMBERS` members (default 10 M, each with
//! a phone number unless `REDCLOUD_BENCH_SMS=0`) and `REDCLOUD_BENCH_TICKETS`
//! open tickets (default 1 M) with a short title and a pending timer each; a
//! second, shard-sized engine holds half of each (what each of the daemon's
//! two default shards holds). The idempotency table is kept empty (1 µs
//! retention) so that member and ticket state is what is measured.
//!
//! Baselines in the same run, over the same number of bytes: copying the
//! snapshot into a fresh `Vec` (`baseline_memcpy`: allocation, page faults
//! and copy, the least any serializer producing a fresh buffer of that size
//! pays) and reading the written snapshot file back from the page cache
//! (`baseline_read_file`: what recovery does before `restore`).

#![allow(clippy::print_stderr)] // the bench reports sizes and ratios on stderr

use std::borrow::Cow;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use redcloud_benches::{local, member_id, monday, populated_engine_with};
use redcloud_engine::event::{Body, Event};
use redcloud_engine::policy::EngineConfig;
use redcloud_engine::Engine;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config() -> Arc<EngineConfig> {
    let mut cfg = EngineConfig::contract_default();
    cfg.dedup_retention = 1;
    Arc::new(cfg)
}

/// `members` members (in 1,000 orgs, logged in, with a phone number when
/// `sms`) and `tickets` open tickets with a title and a pending timer.
fn build(members: usize, tickets: usize, sms: bool) -> Engine {
    let t = Instant::now();
    let mut e = populated_engine_with(members, (*config()).clone());
    let mut out = Vec::new();
    let mut seq = 0u64;
    if sms {
        let mut at = local(&e, monday(), 10 * 60);
        for i in 0..members {
            let m = member_id(i);
            at = at.plus(1);
            seq += 1;
            e.apply(
                &Event {
                    id: Cow::Owned(format!("sms-{seq}")),
                    at,
                    body: Body::MemberUpserted {
                        member: Cow::Borrowed(&m),
                        org: format!("o{}", i % 1000).into(),
                        name: None,
                        cohort: None,
                        sms: Some(Cow::Owned(format!("+86138{:08}", i % 100_000_000))),
                        push: None,
                    },
                },
                &mut out,
            );
            out.clear();
        }
    }
    let mut at = local(&e, monday(), 11 * 60);
    for k in 0..tickets {
        at = at.plus(1);
        e.apply(
            &Event {
                id: Cow::Owned(format!("o{k}")),
                at,
                body: Body::TicketOpened {
                    ticket: Cow::Owned(format!("t{k:09}")),
                    org: format!("o{}", k % 1000).into(),
                    category: "help".into(),
                    title: Some("printer broken".into()),
                },
            },
            &mut out,
        );
        out.clear();
    }
    eprintln!(
        "built: {members} members (sms: {sms}), {} tickets, {} pending timers in {:.1} s",
        e.tickets().tickets.len(),
        e.pending_timers(),
        t.elapsed().as_secs_f64()
    );
    e
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Times `f` per iteration (what it returns is dropped outside the timing).
fn timed<'a, T>(
    samples: &'a mut Vec<Duration>,
    mut f: impl FnMut() -> T + 'a,
) -> impl FnMut(u64) -> Duration + 'a {
    move |iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let t = Instant::now();
            let v = black_box(f());
            let dt = t.elapsed();
            drop(v);
            total += dt;
            samples.push(dt);
        }
        total
    }
}

fn bench_engine(c: &mut Criterion, label: &str, members: usize, tickets: usize, parallel: bool) {
    let sms = env("REDCLOUD_BENCH_SMS", 1) != 0;
    let e = build(members, tickets, sms);
    let cfg = Arc::clone(e.config());
    let bytes = e.snapshot();
    let restored = Engine::restore(Arc::clone(&cfg), &bytes).expect("restore");
    assert!(
        restored.snapshot() == bytes,
        "a restored engine's snapshot has the same bytes"
    );
    drop(restored);
    let path =
        std::env::temp_dir().join(format!("redcloud-snapbench-{}-{label}", std::process::id()));
    std::fs::write(&path, &bytes).expect("write snapshot file");
    drop(std::fs::read(&path)); // into the page cache
    eprintln!(
        "{label}: snapshot of {members} members and {tickets} tickets: {} bytes \
         ({:.1} MiB), {:.1} bytes/member if all of it is counted per member",
        bytes.len(),
        bytes.len() as f64 / (1 << 20) as f64,
        bytes.len() as f64 / members.max(1) as f64
    );

    let (mut snap, mut rest, mut copy, mut read, mut par) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut g = c.benchmark_group(format!("snapshot_{label}"));
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("engine_snapshot", |b| {
        b.iter_custom(timed(&mut snap, || e.snapshot()))
    });
    g.bench_function("engine_restore", |b| {
        b.iter_custom(timed(&mut rest, || {
            Engine::restore(Arc::clone(&cfg), &bytes).expect("restore")
        }))
    });
    g.bench_function("baseline_memcpy", |b| {
        b.iter_custom(timed(&mut copy, || bytes.to_vec()))
    });
    g.bench_function("baseline_read_file", |b| {
        b.iter_custom(timed(&mut read, || std::fs::read(&path).expect("read")))
    });
    g.finish();
    drop(std::fs::remove_file(&path));

    if snap.is_empty() || rest.is_empty() || copy.is_empty() || read.is_empty() {
        return; // filtered out
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (snap, rest, copy, read) = (
        median(&mut snap),
        median(&mut rest),
        median(&mut copy),
        median(&mut read),
    );
    eprintln!(
        "{label}: medians over every timed iteration: snapshot {:.2} ms, restore {:.2} ms, \
         memcpy {:.2} ms, read file {:.2} ms; snapshot = {:.1}x memcpy, restore = {:.1}x \
         read file, {:.1}x memcpy; snapshot {:.0} MB/s, restore {:.0} MB/s",
        ms(snap),
        ms(rest),
        ms(copy),
        ms(read),
        snap.as_secs_f64() / copy.as_secs_f64(),
        rest.as_secs_f64() / read.as_secs_f64(),
        rest.as_secs_f64() / copy.as_secs_f64(),
        bytes.len() as f64 / snap.as_secs_f64() / 1e6,
        bytes.len() as f64 / rest.as_secs_f64() / 1e6,
    );
    if parallel {
        // Two shards of this size restored at once, as the daemon does (one
        // thread per shard), on this machine's two cores. Timed by hand, a few
        // rounds (`REDCLOUD_BENCH_ROUNDS`, default 3): criterion's ten samples
        // of it would double the bench's time.
        for _ in 0..env("REDCLOUD_BENCH_ROUNDS", 3) {
            let t = Instant::now();
            let engines = std::thread::scope(|s| {
                let h: Vec<_> = (0..2)
                    .map(|_| {
                        s.spawn(|| Engine::restore(Arc::clone(&cfg), &bytes).expect("restore"))
                    })
                    .collect();
                h.into_iter()
                    .map(|h| h.join().expect("restore thread"))
                    .collect::<Vec<_>>()
            });
            par.push(t.elapsed());
            drop(black_box(engines));
        }
        let par = median(&mut par);
        eprintln!(
            "{label}: two shards restored in parallel: {:.1} ms ({:.2}x one shard's restore)",
            ms(par),
            par.as_secs_f64() / rest.as_secs_f64()
        );
    }
}

fn snapshots(c: &mut Criterion) {
    let members = env("REDCLOUD_BENCH_MEMBERS", 10_000_000);
    let tickets = env("REDCLOUD_BENCH_TICKETS", 1_000_000);
    bench_engine(c, "full", members, tickets, false);
    bench_engine(c, "shard", members / 2, tickets / 2, true);
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
