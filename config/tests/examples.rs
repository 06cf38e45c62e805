//! Every example config under config/examples/ loads; a few are checked in detail.

use std::path::{Path, PathBuf};

use redcloud_config::load_file;
use redcloud_engine::policy::SlaDuration;
use redcloud_engine::time::{Day, MICROS_PER_DAY, MICROS_PER_HOUR};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn example(name: &str) -> PathBuf {
    examples_dir().join(name)
}

#[test]
fn every_example_config_loads() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let c = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.source.as_deref(), Some(path.as_path()));
            assert_eq!(c.offices.len(), c.engine.offices.len());
            seen += 1;
        }
    }
    assert!(seen >= 3, "expected the example configs, found {seen}");
}

#[test]
fn default_toml_loads_as_a_file() {
    let c = load_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("default.toml")).unwrap();
    assert_eq!(c.engine.streaks.len(), 1);
}

#[test]
fn two_duties() {
    let c = load_file(&example("two-duties.toml")).unwrap();
    let names: Vec<&str> = c.engine.streaks.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["quiz", "worklog"]);
    assert_eq!(
        c.engine.streaks[0].cohorts,
        ["county_cadre", "section_cadre"]
    );
    let worklog = &c.engine.streaks[1];
    assert_eq!(worklog.activity, "worklog");
    assert_eq!(worklog.cohorts, ["stationed"]);
    assert_eq!(worklog.closes_at.to_string(), "20:00");
    assert!(c.engine.slas.is_empty());
    let county = c.office("county").unwrap();
    assert_eq!(
        county.contacts.group.as_ref().map(|s| s.expose()),
        Some("REPLACE-WITH-ROBOT-KEY")
    );
    assert!(!format!("{c:?}").contains("REPLACE-WITH-ROBOT-KEY"));
}

#[test]
fn working_day_sla() {
    let c = load_file(&example("working-day-sla.toml")).unwrap();
    let t = &c.engine.slas[0];
    assert_eq!(t.resolve_within, SlaDuration::WorkingDays(10));
    assert_eq!(t.warn_before, [3 * MICROS_PER_DAY, MICROS_PER_DAY]);
    assert_eq!(c.engine.slas[1].resolve_within, SlaDuration::WorkingDays(3));
    assert_eq!(c.engine.slas[1].warn_before, [12 * MICROS_PER_HOUR]);
}

#[test]
fn extra_calendar_file_is_read_next_to_the_config() {
    let c = load_file(&example("extra-calendar.toml")).unwrap();
    let cal = &c.engine.calendar;
    assert_eq!(cal.name(), "cn-mainland");
    let day = |s: &str| Day::parse(s).unwrap();
    assert!(
        cal.is_covered(day("2027-06-01")),
        "2027 loaded from the file"
    );
    assert!(cal.is_covered(day("2026-06-01")), "built-in years kept");
    assert!(!cal.is_working(day("2027-02-08")), "a Monday holiday");
    assert!(cal.is_working(day("2027-02-20")), "a Saturday make-up day");
    assert!(cal.is_working(day("2027-03-01")), "an ordinary Monday");
    // Without the file, 2027 is not covered.
    assert!(!redcloud_config::default_config()
        .engine
        .calendar
        .is_covered(day("2027-06-01")));
    let json = std::fs::read_to_string(example("calendar-2027.json")).unwrap();
    assert!(json.contains("not an official calendar"));
}
