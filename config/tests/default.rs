//! The embedded default config equals the contract's defaults.

use redcloud_config::{default_config, from_toml_str, DEFAULT_TOML};
use redcloud_engine::policy::EngineConfig;

#[test]
fn default_config_equals_contract_default_field_by_field() {
    let got = default_config().engine;
    let want = EngineConfig::contract_default();
    assert_eq!(got.zone.name(), want.zone.name(), "zone");
    assert_eq!(got.calendar.name(), want.calendar.name(), "calendar");
    assert_eq!(got.levels, want.levels, "levels");
    assert_eq!(got.offices, want.offices, "offices");
    assert_eq!(got.streaks, want.streaks, "streak policies");
    assert_eq!(got.slas, want.slas, "sla policies");
    assert_eq!(got.dedup_retention, want.dedup_retention, "dedup retention");
}

#[test]
fn default_config_names_match_the_contract() {
    let c = default_config();
    assert_eq!(c.engine.streaks[0].name, "quiz");
    assert_eq!(c.engine.slas[0].name, "tickets");
    let ids: Vec<&str> = c.offices.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["city", "county"]);
    assert_eq!(c.offices[0].name.as_deref(), Some("市委党建办"));
    assert_eq!(
        c.office("county").unwrap().name.as_deref(),
        Some("县委党建办")
    );
    assert!(c.source.is_none());
}

#[test]
fn empty_file_takes_key_defaults_and_no_policies() {
    let c = from_toml_str("", None).unwrap();
    let want = EngineConfig::contract_default();
    assert_eq!(c.engine.zone.name(), "Asia/Shanghai");
    assert_eq!(c.engine.calendar.name(), "cn-mainland");
    assert_eq!(c.engine.levels, want.levels);
    assert_eq!(c.engine.dedup_retention, want.dedup_retention);
    assert!(c.engine.offices.is_empty() && c.offices.is_empty());
    assert!(c.engine.streaks.is_empty() && c.engine.slas.is_empty());
}

#[test]
fn absent_policy_keys_take_their_defaults() {
    let c = from_toml_str(
        r#"
        [[streak_policies]]
        name = "q"
        activity = "quiz"
        steps = [{ after = 2, kind = "reminder", notify = ["self"] }]

        [[sla_policies]]
        name = "t"
        categories = ["help"]
        resolve_within = "36h"
        "#,
        None,
    )
    .unwrap();
    let s = &c.engine.streaks[0];
    assert!(s.cohorts.is_empty());
    assert_eq!(s.closes_at.to_string(), "24:00");
    assert_eq!(s.steps[0].every, 0);
    let t = &c.engine.slas[0];
    assert!(t.warn_before.is_empty());
    assert_eq!(
        t.warn_notify,
        [redcloud_engine::policy::TicketRole::AssigneeLeader]
    );
    assert!(t.steps.is_empty());
}

#[test]
fn default_toml_documents_every_section() {
    for key in [
        "timezone",
        "[calendar]",
        "[org]",
        "[dedup]",
        "[offices.city]",
        "[[streak_policies]]",
        "[[sla_policies]]",
    ] {
        assert!(DEFAULT_TOML.contains(key), "{key}");
    }
}
