//! The harness's own checks: the generator is deterministic and matches its
//! case, the inprocess target loses and duplicates nothing, an NDJSON file
//! replays to the same notifications, and the report writers produce valid
//! JSON and an HTML page with SVG plots.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use redcloud_loadtest::apply::LogMode;
use redcloud_loadtest::case::Case;
use redcloud_loadtest::gen::{Batch, Generator};
use redcloud_loadtest::run::{self, Options};

/// A tiny county: 3 levels of 1 + 3 + 9 orgs, 200 members, many tickets.
const TINY: &str = r#"
name = "tiny"
seed = 7
start = "2026-03-02"
days = 12
members = 200
levels = [
  { level = "county", count = 1 },
  { level = "town", count = 3 },
  { level = "village", count = 9 },
]
[[cohorts]]
name = "member"
share = 0.8
answer_chance = 0.7
rest_day_chance = 0.1
absentee_share = 0.2
absentee_answer_chance = 0.1
late_fraction = 0.05
hourly = [0,0,0,0,0,0,1,4,8,6,3,2,5,4,2,2,2,2,3,4,6,6,3,1]
[[cohorts]]
name = "cadre"
share = 0.2
login_chance = 0.9
answer_chance = 0.9
hourly = [0,0,0,0,0,0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]
[tickets]
per_year = 3000
categories = [["wish", 1], ["help", 1], ["other", 1]]
assignee_levels = ["village"]
hourly = [0,0,0,0,0,0,0,1,4,6,6,5,3,4,5,5,4,3,2,2,2,1,0,0]
accept_chance = 0.9
accept_mean_hours = 6
reply_chance = 0.9
reply_mean_hours = 30
resolve_chance = 0.8
resolve_median_days = 6
resolve_sigma = 0.8
cancel_chance = 0.3
reassign_chance = 0.1
rate_chance = 0.7
satisfied_chance = 0.9
"#;

fn options(max_buffer: usize) -> Options {
    Options {
        case: Arc::new(Case::parse(TINY).unwrap()),
        cfg: Arc::new(redcloud_config::default_config().engine),
        days: None,
        seed: None,
        rate: None,
        max_buffer,
        sample: Duration::from_millis(20),
        progress: false,
        daemon_pid: None,
        command: "test".into(),
    }
}

fn all_lines(opts: &Options) -> (Vec<u8>, redcloud_loadtest::gen::Counts) {
    let mut g: Generator = opts.generator();
    let mut b = Batch::new();
    while g.fill(&mut b, 1000) > 0 {}
    (b.buf, g.counts())
}

#[test]
fn generator_is_deterministic_and_matches_the_case() {
    let opts = options(1 << 20);
    let (a, counts) = all_lines(&opts);
    let (b, _) = all_lines(&opts);
    assert_eq!(a, b, "same case and seed, same bytes");
    let other = Options {
        seed: Some(8),
        ..opts.clone()
    };
    assert_ne!(all_lines(&other).0, a, "another seed, other events");

    assert_eq!(counts.orgs, 13);
    assert_eq!(counts.members, 200);
    assert!(counts.logins > 150 && counts.logins <= 200);
    assert!(counts.answers > 500);
    assert!(counts.late_answers > 0);
    assert!(counts.tickets > 30);

    let mut levels = std::collections::BTreeMap::new();
    let mut ids = HashSet::new();
    let mut orgs_of_members = HashSet::new();
    let mut last_at = String::new();
    let mut out_of_order = 0;
    for line in a.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert!(
            ids.insert(v["id"].as_str().unwrap().to_string()),
            "unique ids"
        );
        let at = v["at"].as_str().unwrap().to_string();
        if at < last_at {
            out_of_order += 1;
        }
        last_at = last_at.max(at);
        match v["type"].as_str().unwrap() {
            "org.upserted" => {
                *levels
                    .entry(v["level"].as_str().unwrap().to_string())
                    .or_insert(0) += 1
            }
            "member.upserted" => {
                orgs_of_members.insert(v["org"].as_str().unwrap().to_string());
            }
            _ => {}
        }
    }
    assert_eq!(levels["county"], 1);
    assert_eq!(levels["town"], 3);
    assert_eq!(levels["village"], 9);
    assert_eq!(orgs_of_members.len(), 13, "every org has members");
    assert!(out_of_order > 0, "late answers are out of event-time order");
    assert!(out_of_order <= counts.late_answers as usize);
}

#[test]
fn small_windows_give_the_same_stream() {
    // A buffer far below the population forces several windows per day.
    let (a, _) = all_lines(&options(1 << 20));
    let (b, _) = all_lines(&options(16));
    assert_eq!(a, b);
}

#[test]
fn inprocess_loses_and_duplicates_nothing() {
    let mut opts = options(1 << 20);
    opts.rate = Some(200_000.0);
    let r = run::run_inprocess(&opts, None).unwrap();
    assert!(r.correctness.expected > 0);
    assert!(
        r.correctness.expected_by_kind.iter().all(|&k| k > 0),
        "{:?}",
        r.correctness
    );
    assert_eq!(r.correctness.lost, 0);
    assert_eq!(r.correctness.duplicated, 0);
    assert!(r.correctness.ok);
    assert_eq!(r.latency.count, r.events);
    assert!(r.ratio.is_some());
}

#[test]
fn ndjson_file_replays_to_the_same_notifications() {
    let opts = options(1 << 20);
    let dir = std::env::temp_dir().join(format!("redcloud-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("events.ndjson");
    let r = run::run_ndjson(&opts, &file, None, None).unwrap();
    assert!(r.correctness.ok, "{:?}", r.correctness);
    assert_eq!(r.correctness.method, "file");
    // The file itself, read back, gives exactly the expected ids.
    let exp = run::expected_pass(&opts, LogMode::Ids);
    let mut got = run::file_ids(opts.cfg.clone(), &file).unwrap();
    let c = run::correctness_ids("file", &exp, &mut got);
    assert_eq!(
        (c.lost, c.duplicated, c.received),
        (0, 0, exp.notifications)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reports_are_valid_json_and_html_with_svg() {
    let opts = options(1 << 20);
    let r = run::run_inprocess(&opts, Some(1000)).unwrap();
    let dir = std::env::temp_dir().join(format!("redcloud-loadtest-report-{}", std::process::id()));
    r.write_all(&dir).unwrap();
    let json = std::fs::read_to_string(dir.join("report.json")).unwrap();
    let back: redcloud_loadtest::report::Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back.events, r.events);
    assert_eq!(back.correctness, r.correctness);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(html.contains("0 lost, 0 duplicated"));
    let text = std::fs::read_to_string(dir.join("report.txt")).unwrap();
    assert!(text.contains("correct"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn builtin_cases_parse_with_their_shapes() {
    let county = redcloud_loadtest::load_case("county").unwrap();
    assert_eq!(county.orgs(), 1031);
    assert_eq!(county.members(), 41_310);
    assert_eq!(county.level_names, ["county", "town", "village", "group"]);
    assert_eq!(
        redcloud_loadtest::load_case("province").unwrap().members(),
        5_000_000
    );
    let nation = redcloud_loadtest::load_case("nation").unwrap();
    assert_eq!(nation.members(), 100_000_000);
    // Every org's parent is on the level above; leaders lead their own org.
    for o in [0, 1, 20, 21, 230, 231, 1030] {
        let l = county.level_of(o);
        match county.parent_of(o) {
            Some(p) => assert_eq!(county.level_of(p) + 1, l),
            None => assert_eq!(l, 0),
        }
        let m = county.leader_of(o).unwrap();
        assert_eq!(county.org_of(m), o);
    }
    assert!(redcloud_loadtest::load_case("nope").is_err());
}

#[test]
fn lost_examples_name_the_missing_ids_and_their_events() {
    use redcloud_loadtest::apply::Expected;
    let e = |id, event, alone| Expected { id, event, alone };
    let exp = run::Expectation {
        ids: vec![e(1, 0, true), e(2, 5, false), e(3, 5, false), e(9, 7, true)],
        ..run::Expectation::default()
    };
    assert_eq!(run::lost_examples(&exp, &[1, 2, 3, 9], 5), vec![]);
    assert_eq!(
        run::lost_examples(&exp, &[1, 3], 5),
        vec![e(2, 5, false), e(9, 7, true)]
    );
    assert_eq!(run::lost_examples(&exp, &[], 1), vec![e(1, 0, true)]);
}

#[test]
fn expected_ids_mark_notifications_that_came_alone() {
    let opts = options(1 << 20);
    let exp = run::expected_pass(&opts, LogMode::Ids);
    assert!(!exp.ids.is_empty());
    // Recount by causing event: `alone` iff the event caused exactly one.
    let mut per_event = std::collections::HashMap::new();
    for e in &exp.ids {
        *per_event.entry(e.event).or_insert(0u32) += 1;
    }
    for e in &exp.ids {
        assert_eq!(e.alone, per_event[&e.event] == 1, "{e:?}");
    }
    assert!(exp.ids.iter().any(|e| e.alone), "ticket timers fire alone");
    assert!(
        exp.ids.iter().any(|e| !e.alone),
        "day closes fire in bursts"
    );
}

#[test]
fn scale_run_times_the_last_close_for_every_member() {
    let opts = options(1 << 20);
    let r = run::run_scale(&opts, true).unwrap();
    let exp = run::expected_pass(&opts, LogMode::Count);
    assert_eq!(r.events, exp.events);
    let last = r.day_closes.last().expect("the explicit close");
    assert_eq!(last.how, "explicit");
    assert_eq!(last.members, 200);
    assert!(last.day.starts_with("2026-03-13"), "{}", last.day);
    assert!(last.notifications > 0, "somebody missed the last day");
    assert!(r.memory.peak_rss > 0);
    // The scale run and the expected pass see the same events, so up to the
    // last event they emit the same number of notifications.
    assert_eq!(
        r.correctness.expected - last.notifications,
        exp.notifications
    );
}

#[test]
fn shipped_configs_and_scaled_cases_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let default = redcloud_config::default_config().engine;
    for f in [
        "county-amqp.toml",
        "county-amqp-1shard.toml",
        "county-redis.toml",
        "scale-short-dedup.toml",
    ] {
        let cfg = redcloud_config::load_file(&dir.join("configs").join(f))
            .unwrap_or_else(|e| panic!("{f}: {e:#}"));
        // The harness replays with the same levels and policies as the default.
        assert_eq!(cfg.engine.levels, default.levels, "{f}");
        assert_eq!(cfg.engine.streaks.len(), 1, "{f}");
        assert_eq!(cfg.engine.slas.len(), 1, "{f}");
    }
    for (f, members, orgs) in [
        ("nation-20m.toml", 20_000_000, 1_000_001),
        ("nation-50m.toml", 50_000_000, 2_500_001),
    ] {
        let c = Case::load(&dir.join("cases").join(f)).unwrap();
        assert_eq!((c.members(), c.orgs()), (members, orgs), "{f}");
    }
}
