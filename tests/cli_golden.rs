//! End-to-end tests of the `redcloud` binary's checked commands: `replay`
//! (notifications, `--summary`, `--stats`, rejected lines on stderr) and
//! `calendar`, against golden files under `tests/data/`, and `check-config`.
//!
//! The golden files were produced by the binary and reviewed line by line
//! against the contract (tests/data/replay/README.md explains each trace).
//! Regenerate them after an intended change with `REDCLOUD_BLESS=1 cargo test
//! --test cli_golden`, and review the diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redcloud"))
}

fn data(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(p)
}

fn run(args: &[&str]) -> Output {
    let out = bin().args(args).output().expect("run redcloud");
    assert!(
        out.status.code().is_some(),
        "redcloud was killed by a signal: {args:?}"
    );
    out
}

/// Compares `actual` with the golden file, or rewrites it when blessing.
fn golden(name: &str, actual: &[u8]) {
    let path = data(name);
    if std::env::var_os("REDCLOUD_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if expected != actual {
        let exp = String::from_utf8_lossy(&expected);
        let act = String::from_utf8_lossy(actual);
        for (i, (e, a)) in exp.lines().zip(act.lines()).enumerate() {
            assert_eq!(e, a, "{name}: first difference at line {}", i + 1);
        }
        assert_eq!(
            exp.lines().count(),
            act.lines().count(),
            "{name}: line counts differ"
        );
        panic!("{name}: outputs differ");
    }
}

fn replay_case(name: &str, args: &[&str]) {
    let out = run(args);
    assert!(out.status.success(), "{name}: exit {:?}", out.status);
    golden(&format!("replay/{name}.stdout"), &out.stdout);
    golden(&format!("replay/{name}.stderr"), &out.stderr);
}

#[test]
fn replay_spring_festival_2026() {
    let events = data("replay/spring-festival-2026.ndjson");
    let events = events.to_str().unwrap();
    replay_case(
        "spring-festival-2026",
        &[
            "replay",
            "--events",
            events,
            "--until",
            "2026-03-04T00:00:00+08:00",
        ],
    );
}

#[test]
fn replay_spring_festival_2026_default_until_is_the_last_event() {
    let events = data("replay/spring-festival-2026.ndjson");
    let out = run(&["replay", "--events", events.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text.lines().last().unwrap();
    // The last event is at 2026-03-02T09:00: nothing after it is closed.
    assert!(
        last.contains("\"at\":\"2026-03-01T00:00:00+08:00\""),
        "{last}"
    );
}

#[test]
fn replay_national_day_2026_with_tickets() {
    let events = data("replay/national-day-2026.ndjson");
    let config = data("replay/national-day-2026.toml");
    let (e, c) = (events.to_str().unwrap(), config.to_str().unwrap());
    let until = "2026-10-23T00:00:00+08:00";
    replay_case(
        "national-day-2026",
        &["replay", "--events", e, "--config", c, "--until", until],
    );
    replay_case(
        "national-day-2026-stats",
        &[
            "replay", "--events", e, "--config", c, "--until", until, "--stats",
        ],
    );
    replay_case(
        "national-day-2026-summary",
        &[
            "replay",
            "--events",
            e,
            "--config",
            c,
            "--until",
            until,
            "--summary",
        ],
    );
}

#[test]
fn replay_is_deterministic_and_ids_are_unique() {
    let events = data("replay/national-day-2026.ndjson");
    let config = data("replay/national-day-2026.toml");
    let args = [
        "replay",
        "--events",
        events.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let a = run(&args);
    let b = run(&args);
    assert_eq!(a.stdout, b.stdout);
    let text = String::from_utf8(a.stdout).unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut last_at = String::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            ids.insert(v["id"].as_str().unwrap().to_string()),
            "duplicate id: {line}"
        );
        let at = v["at"].as_str().unwrap().to_string();
        // All instants are +08:00, so string order is time order.
        assert!(at >= last_at, "not ordered by at: {line}");
        last_at = at;
    }
}

#[test]
fn replay_until_before_events_does_not_apply_later_ones() {
    let events = data("replay/spring-festival-2026.ndjson");
    let out = run(&[
        "replay",
        "--events",
        events.to_str().unwrap(),
        "--until",
        "2026-02-14T00:00:00+08:00",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("events after --until were not applied"),
        "{err}"
    );
}

#[test]
fn replay_refuses_a_missing_file_and_a_bad_until() {
    let out = run(&["replay", "--events", "/nonexistent/events.ndjson"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/events.ndjson"));
    let events = data("replay/spring-festival-2026.ndjson");
    let out = run(&[
        "replay",
        "--events",
        events.to_str().unwrap(),
        "--until",
        "yesterday",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--until"));
}

#[test]
fn calendar_spring_festival_and_national_day_2026() {
    let out = run(&["calendar", "--from", "2026-02-10", "--to", "2026-03-02"]);
    assert!(out.status.success());
    golden("calendar/2026-spring-festival.txt", &out.stdout);
    let out = run(&["calendar", "--from", "2026-09-26", "--to", "2026-10-12"]);
    assert!(out.status.success());
    golden("calendar/2026-national-day.txt", &out.stdout);
}

#[test]
fn calendar_whole_years_match_the_official_counts() {
    for (year, count) in [(2024, 251), (2025, 248), (2026, 248)] {
        let out = run(&[
            "calendar",
            "--from",
            &format!("{year}-01-01"),
            "--to",
            &format!("{year}-12-31"),
        ]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text.lines().filter(|l| l.ends_with(" workday")).count(),
            count
        );
        assert_eq!(text.lines().count(), if year == 2024 { 366 } else { 365 });
    }
}

#[test]
fn calendar_refuses_uncovered_years_unless_told() {
    let out = run(&["calendar", "--from", "2026-12-30", "--to", "2027-01-02"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("2027-01-01"), "{err}");
    let out = run(&[
        "calendar",
        "--from",
        "2026-12-30",
        "--to",
        "2027-01-02",
        "--allow-fallback",
    ]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "2026-12-30 workday\n2026-12-31 workday\n2027-01-01 workday\n2027-01-02 restday\n"
    );
}

#[test]
fn calendar_loads_further_years_from_the_config() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/extra-calendar.toml");
    let out = run(&[
        "calendar",
        "--from",
        "2027-01-01",
        "--to",
        "2027-12-31",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // The example 2027 declares 250 working days and makes 2027-01-01 a holiday.
    assert_eq!(
        text.lines().filter(|l| l.ends_with(" workday")).count(),
        250
    );
    assert!(text.starts_with("2027-01-01 restday\n"));
}

#[test]
fn calendar_rejects_bad_arguments() {
    let out = run(&["calendar", "--from", "2026-13-01", "--to", "2026-12-31"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from"));
    let out = run(&["calendar", "--from", "2026-03-02", "--to", "2026-03-01"]);
    assert!(!out.status.success());
}

#[test]
fn check_config_accepts_examples_and_names_bad_keys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(root.join("config/examples")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let out = run(&["check-config", p.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
        }
    }
    let dir = std::env::temp_dir().join(format!("redcloud-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[streak_policies]]\nname = \"quiz\"\nactivity = \"quiz\"\nsteps = [{ after = 0, kind = \"reminder\", notify = [\"self\"] }]\n",
    )
    .unwrap();
    let out = run(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("streak_policies[0].steps[0].after"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn replay_announces_the_calendar_fallback() {
    let dir = std::env::temp_dir().join(format!("redcloud-fallback-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let events = dir.join("events.ndjson");
    std::fs::write(
        &events,
        "{\"id\":\"l\",\"type\":\"app.login\",\"at\":\"2027-01-04T09:00:00+08:00\",\"member\":\"m\"}\n",
    )
    .unwrap();
    let out = run(&[
        "replay",
        "--events",
        events.to_str().unwrap(),
        "--until",
        "2027-01-06T00:00:00+08:00",
    ]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no loaded calendar covers 2027-01-04"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
