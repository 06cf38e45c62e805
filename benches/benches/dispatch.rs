//! Benchmarks of the dispatcher (`redcloud_connectors::dispatch`).
//!
//! * `dispatch_limiter/*`: one limiter check. `window_check_stacked` is the
//!   SMS stack (1/min, 5/h, 10/day) on a full log; `recipient_lookup_check`
//!   adds what the dispatcher does per message: hash the address (xxh3) and
//!   find the recipient's log among 100 000; `gcra_check_take` is the
//!   provider-wide rate. Goal: at most 200 ns.
//! * `dispatch_throughput/*`: 20 000 notifications, each to its own phone,
//!   through a whole `Dispatcher::run` (routing, dedupe, rendering of the
//!   Chinese template, lanes, quiet-hours check, GCRA, per-recipient windows,
//!   one spawned send per message) to an in-process counting SMS channel.
//!   `limited` has every SMS limit on; `baseline` is the same run with no
//!   rate, no windows and no quiet hours. Digests are off (window 0) so the
//!   run does not wait 60 s. Goal: at least 50 000 deliveries/s.
//!
//! Run: `cargo bench -p redcloud-benches --bench dispatch -- --warm-up-time 1
//! --measurement-time 5 --sample-size 10`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use redcloud_connectors::channel::memory::MemoryChannel;
use redcloud_connectors::channel::ChannelKind;
use redcloud_connectors::dispatch::config::Window;
use redcloud_connectors::dispatch::limiter::{Gcra, KeyMap, SendLog, Windows};
use redcloud_connectors::dispatch::{Clock, DispatchConfig, Dispatcher};
use redcloud_engine::notify::{Envelope, RenderedOwned};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use xxhash_rust::xxh3::xxh3_64;

const N: usize = 20_000;
const S: u64 = 1_000_000_000;

fn sms_windows() -> Windows {
    Windows::new(&[
        Window {
            limit: 1,
            period: Duration::from_secs(60),
        },
        Window {
            limit: 5,
            period: Duration::from_secs(3600),
        },
        Window {
            limit: 10,
            period: Duration::from_secs(86_400),
        },
    ])
}

fn limiter(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch_limiter");
    let ws = sms_windows();
    let mut log = SendLog::default();
    for i in 0..10 {
        ws.record(&mut log, i * 3600 * S);
    }
    let mut now = 10 * 3600 * S;
    g.bench_function("window_check_stacked", |b| {
        b.iter(|| {
            now += 1;
            black_box(ws.check(black_box(&log), now))
        })
    });
    let phones: Vec<[u8; 11]> = (0..100_000)
        .map(|i| {
            let mut p = [0u8; 11];
            p.copy_from_slice(format!("138{i:08}").as_bytes());
            p
        })
        .collect();
    let mut map: KeyMap<SendLog> = KeyMap::default();
    for (i, p) in phones.iter().enumerate() {
        let mut l = SendLog::default();
        ws.record(&mut l, (i as u64) * S);
        map.insert(xxh3_64(p), l);
    }
    let mut i = 0usize;
    g.bench_function("recipient_lookup_check", |b| {
        b.iter(|| {
            i = (i + 7919) % phones.len();
            let k = xxh3_64(&phones[i]);
            let l = map.get(&k).expect("present");
            black_box(ws.check(l, 200_000 * S))
        })
    });
    // The same recipient again and again: the check without cache misses.
    g.bench_function("recipient_lookup_check_hot", |b| {
        b.iter(|| {
            let k = xxh3_64(black_box(&phones[42]));
            let l = map.get(&k).expect("present");
            black_box(ws.check(l, 200_000 * S))
        })
    });
    let mut gcra = Gcra::new(
        Window {
            limit: 1_000_000,
            period: Duration::from_secs(1),
        },
        1,
    );
    let mut t = 0u64;
    g.bench_function("gcra_check_take", |b| {
        b.iter(|| {
            t += 1_000;
            if gcra.check(t).is_ok() {
                gcra.take(t);
            }
            black_box(&gcra);
        })
    });
    g.finish();
}

fn envelopes() -> Vec<Envelope> {
    (0..N)
        .map(|i| Envelope {
            notification: RenderedOwned {
                id: format!("{i:032x}"),
                at: "2026-03-10T00:00:00+08:00".into(),
                policy: "quiz".into(),
                kind: ["reminder", "warning", "escalation"][i % 3].into(),
                step: 1,
                subject: format!("member:m{i}"),
                recipient: format!("member:m{i}"),
                missed: Some(1),
            },
            recipient_name: Some("张三".into()),
            sms: Some(format!("138{i:08}")),
            push: None,
            org: Some("o1".into()),
            org_name: Some("一支部".into()),
            org_group: None,
            subject_name: Some("张三".into()),
            ticket_title: None,
            deadline: None,
        })
        .collect()
}

fn config(limited: bool) -> DispatchConfig {
    let limits = if limited {
        "rate = { limit = 1000000, period = \"1s\" }\nper_recipient = [{ limit = 1, period = \"1m\" }, { limit = 5, period = \"1h\" }, { limit = 10, period = \"1d\" }]\nquiet_hours = \"22:00-08:00\""
    } else {
        "per_recipient = []\nquiet_hours = \"none\""
    };
    let src = format!(
        "[digest]\nwindow = \"0\"\n[routes.default]\ndefault = [\"sms\"]\n[channels.sms]\nurl = \"http://127.0.0.1:9/\"\nsign_name = \"红云\"\ntemplate_code = \"SMS_1\"\nconcurrency = 256\n{limits}\n"
    );
    let mut cfg = DispatchConfig::from_toml(&toml::from_str(&src).expect("toml")).expect("config");
    if !limited {
        if let Some(c) = cfg.channels[ChannelKind::Sms.index()].as_mut() {
            c.rate = None;
        }
    }
    cfg
}

fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    // Noon, Asia/Shanghai: outside quiet hours.
    let noon_ms = 1_773_115_200_000;
    let envs = envelopes();
    let mut g = c.benchmark_group("dispatch_throughput");
    g.throughput(Throughput::Elements(N as u64));
    for (name, limited) in [("limited", true), ("baseline", false)] {
        let cfg = config(limited);
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let ch = MemoryChannel::counting(ChannelKind::Sms);
                    let d = Dispatcher::new(cfg.clone(), HashMap::new())
                        .expect("dispatcher")
                        .with_channel(Arc::new(ch.clone()))
                        .expect("sms configured")
                        .with_clock(Clock::starting_at(noon_ms));
                    let (tx, rx) = mpsc::channel(N);
                    for e in envs.iter().cloned() {
                        tx.try_send(e).expect("room");
                    }
                    drop(tx);
                    let left = d.run(rx, CancellationToken::new()).await;
                    assert!(left.is_empty());
                    assert_eq!(ch.seen(), N as u64);
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, limiter, throughput);
criterion_main!(benches);
