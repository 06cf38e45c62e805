//! Decode throughput: `redcloud replay` must sustain at least one million events
//! per second on one core, parsing included, so [`decode`] alone must be well
//! above that.
//!
//! Run: `cargo bench -p redcloud-benches --bench decode`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use redcloud_engine::event::decode;

const LINES: usize = 1_000;

fn levels() -> Vec<String> {
    ["city", "county", "town", "village", "group"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Realistic `activity.recorded` lines, as a quiz app sends them.
fn activity_lines() -> Vec<String> {
    (0..LINES)
        .map(|i| {
            format!(
                r#"{{"id":"e{:06}","type":"activity.recorded","at":"2026-03-{:02}T{:02}:{:02}:00+08:00","member":"m{:05}","activity":"{}"}}"#,
                123_456 + i,
                9 + i % 20,
                8 + i % 12,
                i % 60,
                i * 7 % 20_000,
                if i % 5 == 0 { "worklog" } else { "quiz" },
            )
        })
        .collect()
}

/// A mix of every type in roughly production proportions: mostly activity and
/// logins, some ticket lifecycle, a few directory updates (with a name that
/// needs escapes now and then).
fn mixed_lines() -> Vec<String> {
    (0..LINES)
        .map(|i| {
            let id = 500_000 + i;
            let at = format!("2026-03-{:02}T{:02}:{:02}:00+08:00", 9 + i % 20, 8 + i % 12, i % 60);
            let m = i * 7 % 20_000;
            let t = i / 4;
            match i % 20 {
                0..=9 => format!(
                    r#"{{"id":"e{id}","type":"activity.recorded","at":"{at}","member":"m{m}","activity":"quiz"}}"#
                ),
                10 | 11 => format!(r#"{{"id":"e{id}","type":"app.login","at":"{at}","member":"m{m}"}}"#),
                12 => format!(
                    r#"{{"id":"e{id}","type":"ticket.opened","at":"{at}","ticket":"t{t}","org":"o{}","category":"wish","title":"路灯不亮 street light out"}}"#,
                    i % 300
                ),
                13 => format!(r#"{{"id":"e{id}","type":"ticket.accepted","at":"{at}","ticket":"t{t}"}}"#),
                14 => format!(r#"{{"id":"e{id}","type":"ticket.replied","at":"{at}","ticket":"t{t}"}}"#),
                15 => format!(r#"{{"id":"e{id}","type":"ticket.resolved","at":"{at}","ticket":"t{t}"}}"#),
                16 => format!(
                    r#"{{"id":"e{id}","type":"ticket.rated","at":"{at}","ticket":"t{t}","satisfied":{}}}"#,
                    i % 3 != 0
                ),
                17 => format!(
                    r#"{{"id":"e{id}","type":"member.upserted","at":"{at}","member":"m{m}","org":"o{}","name":"Li \"Wei\"","cohort":"member","contacts":{{"sms":"+8613800000000","push":"tok{m}"}}}}"#,
                    i % 300
                ),
                18 => format!(
                    r#"{{"id":"e{id}","type":"org.upserted","at":"{at}","org":"o{}","parent":"o{}","level":"village","name":"第{i}村","leader":"m{m}","contacts":{{"group":"https://example.invalid/hook/{i}"}}}}"#,
                    i % 300,
                    i % 30
                ),
                _ => format!(
                    r#"{{"id":"e{id}","type":"ticket.reassigned","at":"{at}","ticket":"t{t}","org":"o{}"}}"#,
                    i % 300
                ),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion, name: &str, lines: &[String]) {
    let levels = levels();
    for l in lines {
        if let Err(r) = decode(l.as_bytes(), &levels) {
            panic!("bench line rejected: {l}: {r}");
        }
    }
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            for l in lines {
                let e = decode(black_box(l.as_bytes()), &levels);
                black_box(&e);
            }
        })
    });
    g.finish();
}

fn decode_activity(c: &mut Criterion) {
    bench(c, "activity.recorded", &activity_lines());
}

fn decode_mixed(c: &mut Criterion) {
    bench(c, "mixed", &mixed_lines());
}

criterion_group!(benches, decode_activity, decode_mixed);
criterion_main!(benches);
