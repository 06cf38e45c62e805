//! Dispatcher behaviour on tokio's paused clock with in-process channels:
//! limits under bursts, priority lanes, quiet hours, digests, outages, final
//! errors and dead letters. Simulated hours take milliseconds.

#[path = "dispatch_common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use redcloud_connectors::channel::{ChannelKind, Delivered, SendError};
use redcloud_connectors::dispatch::{Counter, NotifyKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const NOON: (u32, u32, u32, u32) = (10, 12, 0, 0);

fn noon() -> i64 {
    local_ms(NOON.0, NOON.1, NOON.2, NOON.3)
}

async fn run_all(
    d: redcloud_connectors::dispatch::Dispatcher,
    envs: Vec<redcloud_engine::notify::Envelope>,
) -> Vec<redcloud_engine::notify::Envelope> {
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(d.run(rx, CancellationToken::new()));
    for e in envs {
        tx.send(e).await.unwrap();
    }
    drop(tx);
    task.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn robot_burst_never_exceeds_20_in_any_60s() {
    let cfg = config(&format!(
        "{BASE}\n[digest]\nwindow = \"0\"\n[routes.default]\ndefault = [\"group\"]\n"
    ));
    let (d, [_, _, group]) = dispatcher(cfg, noon());
    let stats = d.stats();
    let mut envs = Vec::new();
    // 100 to the city office's robot, 30 to an org robot, all at once.
    for i in 0..100 {
        envs.push(env(
            &format!("c{i}"),
            "escalation",
            1,
            &format!("member:m{i}"),
            "office:city",
        ));
    }
    for i in 0..30 {
        let mut e = env(
            &format!("o{i}"),
            "reminder",
            1,
            &format!("member:x{i}"),
            &format!("member:x{i}"),
        );
        e.org_group = Some("org-robot".into());
        envs.push(e);
    }
    let left = run_all(d, envs).await;
    assert!(left.is_empty());
    let recs = group.records();
    assert_eq!(recs.len(), 130);
    let ids: HashSet<_> = recs.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), 130, "no duplicate ids");
    for robot in ["city-robot", "org-robot"] {
        let times: Vec<_> = recs
            .iter()
            .filter(|r| r.address == robot)
            .map(|r| r.at)
            .collect();
        assert_eq!(
            max_in_window(&times, Duration::from_secs(60)),
            20,
            "{robot}"
        );
    }
    assert_eq!(stats.total(Counter::Sent), 130);
    assert!(stats.total(Counter::DeferredLimit) > 0);
}

#[tokio::test(start_paused = true)]
async fn sms_per_number_windows_and_quiet_hours_hold_over_days() {
    let cfg = config(&format!(
        "{BASE}\n[digest]\nwindow = \"0\"\n[routes.default]\ndefault = [\"sms\"]\n"
    ));
    let (d, [sms, _, _]) = dispatcher(cfg, noon());
    let mut envs = Vec::new();
    for i in 0..25 {
        let mut e = env(
            &format!("s{i}"),
            "reminder",
            (i % 7) as u8 + 1,
            "member:m1",
            "member:m1",
        );
        e.sms = Some("13800000000".into());
        envs.push(e);
    }
    let start = tokio::time::Instant::now();
    let left = run_all(d, envs).await;
    assert!(left.is_empty());
    let recs = sms.records();
    assert_eq!(recs.len(), 25);
    let times: Vec<_> = recs.iter().map(|r| r.at).collect();
    assert!(max_in_window(&times, Duration::from_secs(60)) <= 1);
    assert!(max_in_window(&times, Duration::from_secs(3600)) <= 5);
    assert!(max_in_window(&times, Duration::from_secs(86_400)) <= 10);
    // Nothing between 22:00 and 08:00 local.
    for t in &times {
        let ms = noon() + t.duration_since(start).as_millis() as i64;
        let local = chrono::TimeZone::timestamp_millis_opt(&chrono_tz::Asia::Shanghai, ms).unwrap();
        let h = chrono::Timelike::hour(&local);
        assert!((8..22).contains(&h), "sent at {local}");
    }
}

#[tokio::test(start_paused = true)]
async fn quiet_hours_defer_to_eight_and_robots_are_allowed() {
    let cfg = config(&format!(
        "{BASE}\n[digest]\nwindow = \"0\"\n[routes.default]\nreminder = [\"push\", \"sms\"]\nescalation = [\"group\"]\n"
    ));
    let start_ms = local_ms(10, 21, 59, 30);
    let (d, [sms, push, group]) = dispatcher(cfg, start_ms);
    let stats = d.stats();
    let mut envs = Vec::new();
    for i in 0..3 {
        let mut e = env(
            &format!("r{i}"),
            "reminder",
            1,
            &format!("member:m{i}"),
            &format!("member:m{i}"),
        );
        e.push = Some(format!("tok{i}"));
        envs.push(e);
    }
    let mut e = env("r-sms", "reminder", 1, "member:q", "member:q");
    e.sms = Some("13800000001".into());
    envs.push(e);
    envs.push(env("e1", "escalation", 2, "member:m0", "office:city"));
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(d.run(rx, CancellationToken::new()));
    let start = tokio::time::Instant::now();
    // Arrive at 22:00:10 local.
    tokio::time::sleep(Duration::from_secs(40)).await;
    for e in envs {
        tx.send(e).await.unwrap();
    }
    drop(tx);
    assert!(task.await.unwrap().is_empty());
    let eight = Duration::from_millis((local_ms(11, 8, 0, 0) - start_ms) as u64);
    let g = group.records();
    assert_eq!(g.len(), 1);
    assert!(
        g[0].at.duration_since(start) < Duration::from_secs(60),
        "robots are allowed at night"
    );
    let p = push.records();
    assert_eq!(p.len(), 3);
    let s = sms.records();
    assert_eq!(s.len(), 1);
    for r in p.iter().chain(&s) {
        let at = r.at.duration_since(start);
        assert!(
            at >= eight && at < eight + Duration::from_secs(5),
            "deferred to 08:00, got {at:?}"
        );
    }
    assert_eq!(stats.total(Counter::DeferredQuiet), 4);
    assert_eq!(stats.total(Counter::DeadLettered), 0);
}

#[tokio::test(start_paused = true)]
async fn digests_merge_escalations_per_leader() {
    let cfg = config(&format!(
        "{BASE}\n[digest]\nwindow = \"60s\"\n[routes.default]\ndefault = [\"group\"]\n"
    ));
    let (d, [_, _, group]) = dispatcher(cfg, noon());
    let stats = d.stats();
    let mut envs = Vec::new();
    for i in 0..5 {
        let mut e = env(
            &format!("d{i}"),
            "escalation",
            2,
            &format!("member:m{i}"),
            "member:lead1",
        );
        e.subject_name = Some(format!("成员{i}"));
        e.org_group = Some("robot-a".into());
        envs.push(e);
    }
    let mut other = env("x1", "escalation", 2, "member:m9", "member:lead2");
    other.org_group = Some("robot-b".into());
    envs.push(other);
    let left = run_all(d, envs).await;
    assert!(left.is_empty());
    let recs = group.records();
    assert_eq!(recs.len(), 2, "one digest per leader");
    let digest = recs
        .iter()
        .find(|r| r.ids.len() == 5)
        .expect("a digest of 5");
    for i in 0..5 {
        assert!(digest.body.contains(&format!("成员{i}")), "{}", digest.body);
    }
    assert!(digest.body.contains("以下5名党员"), "{}", digest.body);
    assert_eq!(stats.total(Counter::Digested), 4);
    assert_eq!(stats.total(Counter::Delivered), 6);
    assert_eq!(stats.total(Counter::Sent), 2);
}

#[tokio::test(start_paused = true)]
async fn escalations_go_first_when_a_channel_is_saturated() {
    let cfg = config(&format!(
        "{BASE}\n[digest]\nwindow = \"0\"\n[routes.default]\ndefault = [\"sms\"]\n[channels.sms.rate]\nlimit = 1\nperiod = \"1s\"\n"
    )
    .replace("template_code = \"SMS_1\"\n", "template_code = \"SMS_1\"\nconcurrency = 1\n"));
    let (d, [sms, _, _]) = dispatcher(cfg, noon());
    let mut envs = Vec::new();
    for (i, kind) in ["reminder", "warning", "escalation"]
        .iter()
        .cycle()
        .take(30)
        .enumerate()
    {
        let mut e = env(
            &format!("p{i}"),
            kind,
            1,
            &format!("member:m{i}"),
            &format!("member:m{i}"),
        );
        e.sms = Some(format!("1380000{i:04}"));
        envs.push(e);
    }
    assert!(run_all(d, envs).await.is_empty());
    let kinds: Vec<_> = sms.records().iter().map(|r| r.kind.clone()).collect();
    assert_eq!(kinds.len(), 30);
    let rank = |k: &str| NotifyKind::parse(k).unwrap().lane();
    // After the first send (which may start before the rest arrive), lanes
    // are served in priority order.
    assert!(
        kinds[1..].windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "{kinds:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_outage_queues_and_drains_in_priority_order_losing_nothing() {
    let cfg = config(&format!(
        "max_attempts = 3\nretry_initial = \"1s\"\nretry_max = \"30s\"\n{BASE}\n[digest]\nwindow = \"0\"\n[routes.default]\ndefault = [\"group\"]\n"
    ));
    let (d, [_, _, group]) = dispatcher(cfg, noon());
    let stats = d.stats();
    let dead = d.dead_letters();
    let down = Arc::new(AtomicBool::new(true));
    let flag = down.clone();
    group.set_script(Box::new(move |_, _| {
        if flag.load(Ordering::Relaxed) {
            Err(SendError::retriable(ChannelKind::Group, "http 503"))
        } else {
            Ok(Delivered::default())
        }
    }));
    let mut envs = Vec::new();
    for (i, kind) in ["reminder", "warning", "escalation"]
        .iter()
        .cycle()
        .take(60)
        .enumerate()
    {
        let mut e = env(
            &format!("o{i}"),
            kind,
            1,
            &format!("member:m{i}"),
            &format!("member:m{i}"),
        );
        e.org_group = Some(format!("robot{}", i % 2));
        envs.push(e);
    }
    let (tx, rx) = mpsc::channel(128);
    let task = tokio::spawn(d.run(rx, CancellationToken::new()));
    for e in envs {
        tx.send(e).await.unwrap();
    }
    drop(tx);
    // Ten minutes of outage.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(
        stats.breaker_is_open(ChannelKind::Group) || stats.breaker_opens(ChannelKind::Group) > 0
    );
    let recovered_at = tokio::time::Instant::now();
    down.store(false, Ordering::Relaxed);
    assert!(task.await.unwrap().is_empty());
    assert!(dead.is_empty(), "{:?}", dead.list());
    let recs = group.records();
    let ok: Vec<_> = recs.iter().filter(|r| r.ok).collect();
    let ids: HashSet<_> = ok.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ok.len(), 60, "delivered exactly once each");
    assert_eq!(ids.len(), 60);
    // During the outage, only a handful of attempts (breaker).
    let during = recs.iter().filter(|r| r.at < recovered_at).count();
    assert!(during < 40, "{during} attempts during the outage");
    // After recovery: priority order within each robot's queue (the probe
    // that closes the breaker aside).
    let after: Vec<_> = ok.iter().filter(|r| r.at >= recovered_at).collect();
    let rank = |k: &str| NotifyKind::parse(k).unwrap().lane();
    for robot in ["robot0", "robot1"] {
        let ks: Vec<_> = after
            .iter()
            .filter(|r| r.address == robot)
            .map(|r| rank(&r.kind))
            .collect();
        assert!(
            ks.iter()
                .skip(1)
                .collect::<Vec<_>>()
                .windows(2)
                .all(|w| w[0] <= w[1]),
            "{robot}: {ks:?}"
        );
    }
    // The robot window held throughout.
    for robot in ["robot0", "robot1"] {
        let times: Vec<_> = recs
            .iter()
            .filter(|r| r.address == robot)
            .map(|r| r.at)
            .collect();
        assert!(max_in_window(&times, Duration::from_secs(60)) <= 20);
    }
    assert!(stats.breaker_opens(ChannelKind::Group) >= 1);
    assert!(!stats.breaker_is_open(ChannelKind::Group));
    assert_eq!(stats.total(Counter::Delivered), 60);
    assert!(stats.total(Counter::Retried) > 0);
}

#[tokio::test(start_paused = true)]
async fn final_errors_fall_back_then_dead_letter_and_unroutable_is_visible() {
    let cfg = config(&format!(
        "{BASE}\n[digest]\nwindow = \"0\"\n[routes.default]\ndefault = [\"push\", \"sms\"]\n"
    ));
    let (d, [sms, push, _]) = dispatcher(cfg, noon());
    let stats = d.stats();
    let dead = d.dead_letters();
    push.set_script(Box::new(|m, _| {
        if m.address == "expired" {
            Err(SendError::final_(ChannelKind::Push, "http 410"))
        } else {
            Ok(Delivered::default())
        }
    }));
    sms.set_script(Box::new(|m, _| {
        if m.address == "bad-number" {
            Err(SendError::final_(
                ChannelKind::Sms,
                "code isv.MOBILE_NUMBER_ILLEGAL",
            ))
        } else {
            Ok(Delivered { segments: 1 })
        }
    }));
    let mut a = env("a", "reminder", 1, "member:a", "member:a");
    a.push = Some("expired".into());
    a.sms = Some("13800000000".into());
    let mut b = env("b", "reminder", 1, "member:b", "member:b");
    b.push = Some("expired".into());
    b.sms = Some("bad-number".into());
    let c = env("c", "reminder", 1, "member:c", "member:c");
    let mut ok = env("ok", "reminder", 1, "member:d", "member:d");
    ok.push = Some("good".into());
    assert!(run_all(d, vec![a, b, c, ok]).await.is_empty());
    assert_eq!(
        sms.records().iter().filter(|r| r.ok).count(),
        1,
        "a fell back to sms"
    );
    let dl = dead.list();
    assert_eq!(dl.len(), 2, "{dl:?}");
    let b_dead = dl.iter().find(|v| v.id == "b").unwrap();
    assert_eq!(b_dead.channel, Some("sms"));
    assert_eq!(b_dead.attempts, 1, "final errors fail fast");
    assert!(b_dead.reason.contains("MOBILE_NUMBER_ILLEGAL"));
    let c_dead = dl.iter().find(|v| v.id == "c").unwrap();
    assert_eq!(c_dead.channel, None);
    assert!(c_dead.reason.starts_with("unroutable"));
    assert_eq!(stats.total(Counter::Unroutable), 1);
    assert_eq!(stats.total(Counter::Fallback), 2);
    assert_eq!(stats.total(Counter::FailedFinal), 3);
    assert_eq!(stats.total(Counter::DeadLettered), 2);
    assert_eq!(stats.total(Counter::Delivered), 2);
    assert_eq!(stats.sms_segments(), 1);
    let mut text = String::new();
    stats.render_prometheus(&mut text);
    assert!(
        text.contains("redcloud_dispatch_unroutable_total{channel=\"none\",kind=\"reminder\"} 1"),
        "{text}"
    );
    assert!(!text.contains("13800000000"));
}

#[tokio::test(start_paused = true)]
async fn retries_are_bounded_and_shutdown_returns_what_is_left() {
    let cfg = config(&format!(
        "max_attempts = 3\nretry_initial = \"1s\"\n{BASE}\n[digest]\nwindow = \"0\"\n[routes.default]\ndefault = [\"push\"]\n[channels.push.circuit_breaker]\nfailures = 100\n"
    ));
    let (d, [_, push, _]) = dispatcher(cfg, noon());
    let dead = d.dead_letters();
    push.set_script(Box::new(|m, _| {
        if m.address == "flaky" {
            Err(SendError::retriable(ChannelKind::Push, "http 500"))
        } else {
            Ok(Delivered::default())
        }
    }));
    let mut a = env("a", "reminder", 1, "member:a", "member:a");
    a.push = Some("flaky".into());
    assert!(run_all(d, vec![a]).await.is_empty());
    let dl = dead.list();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].attempts, 3);
    assert!(
        dl[0].reason.starts_with("retries exhausted"),
        "{}",
        dl[0].reason
    );
    assert_eq!(push.records().len(), 3);

    // Shutdown during quiet hours: the deferred message comes back.
    let cfg = config(&format!("{BASE}\n[routes.default]\ndefault = [\"sms\"]\n"));
    let (d, _) = dispatcher(cfg, local_ms(10, 23, 0, 0));
    let (tx, rx) = mpsc::channel(4);
    let stop = CancellationToken::new();
    let task = tokio::spawn(d.run(rx, stop.clone()));
    let mut e = env("late", "reminder", 1, "member:a", "member:a");
    e.sms = Some("13800000000".into());
    tx.send(e).await.unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    stop.cancel();
    let left = task.await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].notification.id, "late");
}

/// Sends from before a restart (the daemon's outbox keeps them) still count:
/// a number that got an SMS 30 s before the start, with a limit of one per
/// minute, gets the next one 30 s after the start, not at once.
#[tokio::test(start_paused = true)]
async fn sends_from_before_a_restart_still_count_in_the_windows() {
    use redcloud_connectors::dispatch::PastSend;
    let cfg = config(&format!(
        "{BASE}\n[digest]\nwindow = \"0\"\n[routes.default]\ndefault = [\"sms\"]\n"
    ));
    let (d, [sms, _, _]) = dispatcher(cfg.clone(), noon());
    let number = "13800000000";
    let d = d.with_history(vec![
        PastSend {
            channel: ChannelKind::Sms,
            recipient_key: xxhash_rust::xxh3::xxh3_64(number.as_bytes()),
            unix_ms: noon() - 30_000,
        },
        // Another number's send changes nothing for this one.
        PastSend {
            channel: ChannelKind::Sms,
            recipient_key: xxhash_rust::xxh3::xxh3_64(b"13900000000"),
            unix_ms: noon() - 1_000,
        },
    ]);
    let mut e = env("r1", "reminder", 1, "member:m1", "member:m1");
    e.sms = Some(number.into());
    let start = tokio::time::Instant::now();
    let left = run_all(d, vec![e.clone()]).await;
    assert!(left.is_empty());
    let recs = sms.records();
    assert_eq!(recs.len(), 1);
    let waited = recs[0].at.duration_since(start);
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "sent {waited:?} after the start"
    );

    // Without the history it goes at once.
    let (d, [sms, _, _]) = dispatcher(cfg, noon());
    let start = tokio::time::Instant::now();
    run_all(d, vec![e]).await;
    assert!(sms.records()[0].at.duration_since(start) < Duration::from_secs(1));
}
