//! Every validation error names the key path and the reason.

use std::path::Path;

use redcloud_config::{from_toml_str, load_file, ConfigError};

/// A streak policy with one good step, to be edited by each test.
const STREAK: &str = r#"
[offices.city]
[offices.county]

[[streak_policies]]
name = "quiz"
activity = "quiz"
steps = [
  { after = 1, every = 1, kind = "reminder", notify = ["self"] },
  { after = 5, every = 5, kind = "escalation", notify = ["leader", "office:city"] },
]
"#;

/// An SLA policy, to be edited by each test.
const SLA: &str = r#"
[offices.city]
[offices.county]

[[sla_policies]]
name = "tickets"
categories = ["wish", "help", "suggestion"]
resolve_within = "10d"
warn_before = ["2d"]
steps = [
  { after = "0h", notify = ["assignee_leader"] },
  { after = "2d", notify = ["parent_leader"] },
  { after = "5d", notify = ["office:county"] },
]
"#;

fn err(text: &str) -> String {
    match from_toml_str(text, None) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn edit(base: &str, from: &str, to: &str) -> String {
    assert!(base.contains(from), "{from}");
    base.replacen(from, to, 1)
}

#[track_caller]
fn assert_err(text: &str, want: &str) {
    let got = err(text);
    assert_eq!(got, want);
}

#[track_caller]
fn assert_err_starts(text: &str, want: &str) {
    let got = err(text);
    assert!(got.starts_with(want), "got:  {got}\nwant: {want}...");
}

#[test]
fn bases_are_valid() {
    from_toml_str(STREAK, None).unwrap();
    from_toml_str(SLA, None).unwrap();
}

// ---- reading the TOML ----

#[test]
fn unknown_key_names_the_table() {
    let text = edit(STREAK, "steps = [", "stepz = []\nsteps = [");
    assert_err_starts(
        &text,
        "unknown key `stepz` at streak_policies[0] (line 8; expected one of `name`",
    );
    assert_err_starts("colour = 1", "unknown key `colour` at top level (line 1;");
    let text = edit(
        STREAK,
        "kind = \"reminder\",",
        "kind = \"reminder\", evry = 1,",
    );
    assert_err_starts(
        &text,
        "unknown key `evry` at streak_policies[0].steps[0] (line 9;",
    );
    assert_err_starts(
        "[offices.city]\ncontacts = { phone = \"1\" }",
        "unknown key `phone` at offices.city.contacts (line 2;",
    );
}

#[test]
fn wrong_type_names_the_key() {
    let text = edit(STREAK, "after = 1,", "after = \"1\",");
    assert_err(
        &text,
        "streak_policies[0].steps[0].after: invalid type: string \"1\", expected a whole number >= 0 (line 9)",
    );
    let text = edit(SLA, "resolve_within = \"10d\"", "resolve_within = 10");
    assert_err_starts(
        &text,
        "sla_policies[0].resolve_within: invalid type: integer `10`, expected a duration string",
    );
}

#[test]
fn missing_key_names_the_table() {
    let text = edit(STREAK, "activity = \"quiz\"\n", "");
    assert_err(&text, "streak_policies[0]: missing key `activity` (line 5)");
}

#[test]
fn syntax_error_has_line_and_column() {
    assert_err_starts("timezone = \n", "invalid TOML at line 1, column 12: ");
}

// ---- general sections ----

#[test]
fn unknown_timezone() {
    assert_err(
        "timezone = \"Mars/Olympus\"",
        "timezone: `Mars/Olympus` is not a known IANA timezone",
    );
}

#[test]
fn unknown_builtin_calendar() {
    assert_err(
        "[calendar]\nbuiltin = \"us\"",
        "calendar.builtin: unknown built-in calendar `us` (known: cn-mainland, weekdays)",
    );
}

#[test]
fn weekdays_calendar_is_accepted() {
    let c = from_toml_str("[calendar]\nbuiltin = \"weekdays\"", None).unwrap();
    assert_eq!(c.engine.calendar.name(), "weekdays");
}

#[test]
fn missing_calendar_file_names_key_and_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let e = from_toml_str(
        "[calendar]\nfiles = [\"calendar-2027.json\", \"no-such-file.json\"]",
        Some(&dir),
    )
    .unwrap_err()
    .to_string();
    let shown = dir.join("no-such-file.json").display().to_string();
    assert!(
        e.starts_with(&format!("calendar.files[1]: cannot read {shown}: ")),
        "{e}"
    );
}

#[test]
fn bad_calendar_file_names_key_and_file() {
    let dir = std::env::temp_dir().join(format!("redcloud-config-cal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 2027-02-06 is a Saturday: not a holiday "on a weekday".
    std::fs::write(
        dir.join("bad.json"),
        r#"{"source": "test", "years": {"2027": {"holidays_on_weekdays": ["2027-02-06"], "makeup_working_days": []}}}"#,
    )
    .unwrap();
    let e = from_toml_str("[calendar]\nfiles = [\"bad.json\"]", Some(&dir))
        .unwrap_err()
        .to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    let shown = dir.join("bad.json").display().to_string();
    assert!(
        e.starts_with(&format!("calendar.files[0]: calendar file `{shown}`")),
        "{e}"
    );
    assert!(e.contains("2027-02-06"), "{e}");
}

#[test]
fn empty_calendar_file_entry() {
    assert_err(
        "[calendar]\nfiles = [\"\"]",
        "calendar.files[0]: must not be empty",
    );
}

#[test]
fn levels() {
    assert_err(
        "[org]\nlevels = []",
        "org.levels: must list 1 to 32 levels (found 0)",
    );
    assert_err(
        "[org]\nlevels = [\"city\", \"\"]",
        "org.levels[1]: must not be empty",
    );
    assert_err(
        "[org]\nlevels = [\"city\", \"town\", \"city\"]",
        "org.levels[2]: \"city\" is listed twice",
    );
    let many: Vec<String> = (0..33).map(|i| format!("\"l{i}\"")).collect();
    assert_err(
        &format!("[org]\nlevels = [{}]", many.join(", ")),
        "org.levels: must list 1 to 32 levels (found 33)",
    );
}

#[test]
fn dedup_retention() {
    assert_err(
        "[dedup]\nretention = \"30m\"",
        "dedup.retention: \"30m\" is too short: it must be at least 1h",
    );
    assert_err(
        "[dedup]\nretention = \"35wd\"",
        "dedup.retention: \"35wd\" is in working days, but this key takes calendar time only (ms, s, m, h, d)",
    );
    from_toml_str("[dedup]\nretention = \"1h\"", None).unwrap();
}

#[test]
fn office_ids_and_contacts() {
    assert_err_starts(
        "[offices.\"city office\"]",
        "offices.\"city office\": office id \"city office\" may only contain",
    );
    assert_err(
        "[offices.city]\ncontacts = { sms = \"\" }",
        "offices.city.contacts.sms: must not be empty (leave the key out instead)",
    );
    assert_err(
        "[offices.city]\nname = \"\"",
        "offices.city.name: must not be empty (leave the key out instead)",
    );
}

// ---- policy names ----

#[test]
fn policy_names_unique_across_kinds() {
    let text = format!(
        "{STREAK}\n{}",
        SLA.replace("[offices.city]\n[offices.county]\n", "")
    );
    let text = edit(&text, "name = \"tickets\"", "name = \"quiz\"");
    assert_err(
        &text,
        "sla_policies[0].name: \"quiz\" is already the name of streak_policies[0]; policy names must be unique",
    );
}

#[test]
fn policy_name_length() {
    assert_err(
        &edit(STREAK, "name = \"quiz\"", "name = \"\""),
        "streak_policies[0].name: must not be empty",
    );
    let long = "x".repeat(65);
    assert_err(
        &edit(STREAK, "name = \"quiz\"", &format!("name = \"{long}\"")),
        "streak_policies[0].name: must be at most 64 characters long (found 65)",
    );
    let ok = "学".repeat(64);
    from_toml_str(
        &edit(STREAK, "name = \"quiz\"", &format!("name = \"{ok}\"")),
        None,
    )
    .unwrap();
}

// ---- streak policies ----

#[test]
fn streak_activity_and_steps() {
    assert_err(
        &edit(STREAK, "activity = \"quiz\"", "activity = \"\""),
        "streak_policies[0].activity: must not be empty",
    );
    let text = STREAK.replace(&STREAK[STREAK.find("steps = [").unwrap()..], "steps = []\n");
    assert_err(
        &text,
        "streak_policies[0].steps: must have at least one step",
    );
}

#[test]
fn streak_after_at_least_one() {
    assert_err(
        &edit(STREAK, "after = 5,", "after = 0,"),
        "streak_policies[0].steps[1].after: must be at least 1",
    );
}

#[test]
fn streak_kind() {
    assert_err(
        &edit(STREAK, "kind = \"reminder\"", "kind = \"warning\""),
        "streak_policies[0].steps[0].kind: \"warning\" is for ticket deadlines only; a streak step is \"reminder\" or \"escalation\"",
    );
    assert_err(
        &edit(STREAK, "kind = \"reminder\"", "kind = \"nag\""),
        "streak_policies[0].steps[0].kind: unknown kind \"nag\" (use reminder or escalation)",
    );
}

#[test]
fn streak_roles() {
    assert_err(
        &edit(STREAK, "\"office:city\"", "\"office:town\""),
        "streak_policies[0].steps[1].notify[1]: office \"town\" is not configured (known: city, county)",
    );
    assert_err(
        &edit(STREAK, "notify = [\"self\"]", "notify = [\"assignee_leader\"]"),
        "streak_policies[0].steps[0].notify[0]: unknown role \"assignee_leader\" (use self, leader or office:<id>)",
    );
    assert_err(
        &edit(STREAK, "notify = [\"self\"]", "notify = []"),
        "streak_policies[0].steps[0].notify: must name at least one recipient role",
    );
    assert_err(
        &edit(
            STREAK,
            "\"leader\", \"office:city\"",
            "\"office:city\", \"leader\", \"office:city\"",
        ),
        "streak_policies[0].steps[1].notify[2]: \"office:city\" is listed twice",
    );
    let none = STREAK.replace("[offices.city]\n[offices.county]\n", "");
    assert_err_starts(
        &none,
        "streak_policies[0].steps[1].notify[1]: office \"city\" is not configured (no offices are configured",
    );
}

#[test]
fn streak_closes_at_and_cohorts() {
    assert_err(
        &edit(
            STREAK,
            "activity = \"quiz\"",
            "activity = \"quiz\"\ncloses_at = \"00:00\"",
        ),
        "streak_policies[0].closes_at: `00:00` must be between 00:01 and 24:00",
    );
    assert_err(
        &edit(
            STREAK,
            "activity = \"quiz\"",
            "activity = \"quiz\"\ncohorts = [\"a\", \"a\"]",
        ),
        "streak_policies[0].cohorts[1]: \"a\" is listed twice",
    );
    assert_err(
        &edit(
            STREAK,
            "activity = \"quiz\"",
            "activity = \"quiz\"\ncohorts = [\"\"]",
        ),
        "streak_policies[0].cohorts[0]: must not be empty",
    );
}

// ---- SLA policies ----

#[test]
fn sla_resolve_within() {
    assert_err(
        &edit(SLA, "\"10d\"", "\"10x\""),
        "sla_policies[0].resolve_within: \"10x\" is not a duration: unknown unit \"x\" (use ms, s, m, h, d or wd)",
    );
    assert_err(
        &edit(SLA, "\"10d\"", "\"0h\""),
        "sla_policies[0].resolve_within: must be longer than 0",
    );
    assert_err(
        &edit(SLA, "\"10d\"", "\"0wd\""),
        "sla_policies[0].resolve_within: must be longer than 0",
    );
    from_toml_str(&edit(SLA, "\"10d\"", "\"10wd\""), None).unwrap();
}

#[test]
fn sla_warn_before() {
    assert_err(
        &edit(SLA, "[\"2d\"]", "[\"2wd\"]"),
        "sla_policies[0].warn_before[0]: \"2wd\" is in working days, but this key takes calendar time only (ms, s, m, h, d)",
    );
    assert_err(
        &edit(SLA, "[\"2d\"]", "[\"2d\", \"0s\"]"),
        "sla_policies[0].warn_before[1]: must be longer than 0",
    );
    assert_err(
        &edit(SLA, "[\"2d\"]", "[\"2d\", \"48h\"]"),
        "sla_policies[0].warn_before[1]: \"48h\" is listed twice",
    );
    assert_err(
        &edit(SLA, "[\"2d\"]", "[\"10d\"]"),
        "sla_policies[0].warn_before[0]: \"10d\" is not shorter than resolve_within \"10d\", so the warning would never fire",
    );
}

#[test]
fn sla_steps_strictly_increasing_calendar_only() {
    assert_err(
        &edit(SLA, "after = \"5d\"", "after = \"2d\""),
        "sla_policies[0].steps[2].after: \"2d\" must be later than the previous step's \"2d\" (steps go in strictly increasing `after`)",
    );
    assert_err(
        &edit(SLA, "after = \"2d\"", "after = \"2wd\""),
        "sla_policies[0].steps[1].after: \"2wd\" is in working days, but this key takes calendar time only (ms, s, m, h, d)",
    );
}

#[test]
fn sla_roles() {
    assert_err(
        &edit(SLA, "[\"parent_leader\"]", "[\"leader\"]"),
        "sla_policies[0].steps[1].notify[0]: unknown role \"leader\" (use assignee_leader, parent_leader or office:<id>)",
    );
    assert_err(
        &edit(SLA, "\"office:county\"", "\"office:province\""),
        "sla_policies[0].steps[2].notify[0]: office \"province\" is not configured (known: city, county)",
    );
    assert_err(
        &edit(
            SLA,
            "warn_before = [\"2d\"]",
            "warn_before = [\"2d\"]\nwarn_notify = []",
        ),
        "sla_policies[0].warn_notify: must name at least one recipient role",
    );
    assert_err(
        &edit(
            SLA,
            "warn_before = [\"2d\"]",
            "warn_before = [\"2d\"]\nwarn_notify = [\"parent_leader\", \"parent_leader\"]",
        ),
        "sla_policies[0].warn_notify[1]: \"parent_leader\" is listed twice",
    );
}

#[test]
fn sla_categories() {
    assert_err(
        &edit(SLA, "[\"wish\", \"help\", \"suggestion\"]", "[]"),
        "sla_policies[0].categories: must list at least one category",
    );
    assert_err(
        &edit(
            SLA,
            "[\"wish\", \"help\", \"suggestion\"]",
            "[\"wish\", \"wish\"]",
        ),
        "sla_policies[0].categories[1]: \"wish\" is listed twice",
    );
    let second = "\n[[sla_policies]]\nname = \"urgent\"\ncategories = [\"urgent\", \"help\"]\nresolve_within = \"1d\"\n";
    assert_err(
        &format!("{SLA}{second}"),
        "sla_policies[1].categories[1]: category \"help\" is covered by both SLA policies \"tickets\" and \"urgent\"; a category may have one policy only",
    );
}

// ---- files ----

#[test]
fn unreadable_file_names_the_file() {
    let e = load_file(Path::new("/no/such/redcloud.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string()
            .starts_with("cannot read config file /no/such/redcloud.toml: "),
        "{e}"
    );
}

#[test]
fn errors_in_a_file_name_the_file() {
    let dir = std::env::temp_dir().join(format!("redcloud-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, edit(STREAK, "after = 5,", "after = 0,")).unwrap();
    let e = load_file(&file).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: streak_policies[0].steps[1].after: must be at least 1",
            file.display()
        )
    );
    assert_eq!(e.key_path(), Some("streak_policies[0].steps[1].after"));
    assert!(matches!(e.innermost(), ConfigError::Invalid { .. }));
}

#[test]
fn messages_are_lowercase_without_final_period() {
    let samples = [
        err("colour = 1"),
        err("timezone = \"Mars/Olympus\""),
        err(&edit(STREAK, "after = 5,", "after = 0,")),
        err(&edit(SLA, "\"10d\"", "\"10x\"")),
    ];
    for m in samples {
        assert!(!m.ends_with('.'), "{m}");
        assert!(!m.starts_with(|c: char| c.is_uppercase()), "{m}");
    }
}
