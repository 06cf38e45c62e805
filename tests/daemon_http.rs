//! End-to-end tests of `redcloud run` over HTTP ingest: the real binary, a
//! temporary config, a free port. No broker needed.

mod daemon_support;

use std::time::Duration;

use anyhow::Result;
use daemon_support::{ev, Daemon, Opts, TOKEN};

const AT: &str = "2026-03-02T09:00:00+08:00";

fn directory_events() -> Vec<String> {
    vec![
        ev(
            "o1",
            "org.upserted",
            AT,
            r#""org":"c1","parent":null,"level":"city","leader":"boss""#,
        ),
        ev(
            "o2",
            "org.upserted",
            AT,
            r#""org":"t1","parent":"c1","level":"town","leader":null"#,
        ),
        ev("e1", "member.upserted", AT, r#""member":"m1","org":"t1""#),
        ev("e2", "app.login", AT, r#""member":"m1""#),
    ]
}

#[test]
fn http_ingest_and_the_admin_api() -> Result<()> {
    // The clock is set just before the events, so that the ticket's timers
    // are still ahead.
    let d = Daemon::start(Opts {
        env: vec![("REDCLOUD_FAKE_NOW", "2026-03-02T08:59:00+08:00".to_string())],
        ..Opts::default()
    })?;
    d.wait_ready(Duration::from_secs(10))?;

    let mut lines = directory_events();
    lines.push(ev(
        "t1-open",
        "ticket.opened",
        AT,
        r#""ticket":"t-1","org":"t1","category":"help""#,
    ));
    lines.push("{not json".into());
    lines.push(ev("bad2", "member.upserted", AT, r#""org":"t1""#));
    lines.push(ev("t1-acc", "ticket.accepted", AT, r#""ticket":"t-1""#));
    let (status, body) = d.post_events(&lines, None)?;
    assert_eq!(status, 400, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(answer["accepted"], 6, "{body}");
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{body}");
    assert_eq!(rejected[0]["line"], 6);
    assert!(rejected[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("not valid json"));
    assert_eq!(rejected[1]["line"], 7);
    assert_eq!(rejected[1]["reason"], "missing field `member`");
    assert_eq!(rejected[1]["id"], "bad2");

    // Resending is safe: every id is known.
    let (status, body) = d.post_events(&lines[..5], None)?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""duplicates":5"#), "{body}");

    let m = d.get_json("/v1/members/m1")?;
    assert_eq!(m["state"], "active");
    assert_eq!(m["org"], "t1");
    assert_eq!(m["enrolled"], true);
    assert_eq!(m["policies"][0]["policy"], "quiz");
    let (s, _) = d.get("/v1/members/nobody")?;
    assert_eq!(s, 404);

    let t = d.get_json("/v1/tickets/t-1")?;
    assert_eq!(t["state"], "accepted");
    assert_eq!(t["policy"], "tickets");
    assert_eq!(t["deadline"], "2026-03-12T09:00:00+08:00");
    assert_eq!(t["pending"].as_array().unwrap().len(), 4);

    let rows = d.get_json("/v1/stats?org=c1&month=2026-03")?;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["opened"], 1);
    assert_eq!(rows[0]["accepted"], 1);
    assert_eq!(rows[0]["accept_rate"], 1.0);
    let (s, _) = d.get("/v1/stats?month=March")?;
    assert_eq!(s, 400);

    // Metrics: per source, by reason class; no ids in labels.
    assert_eq!(
        d.metric(r#"redcloud_events_applied_total{source="http"}"#)?,
        Some(6.0)
    );
    assert_eq!(
        d.metric(r#"redcloud_source_duplicates_total{source="http"}"#)?,
        None,
        "not a metric name the daemon prints"
    );
    assert_eq!(
        d.metric(r#"redcloud_events_duplicates_total{source="http"}"#)?,
        Some(5.0)
    );
    assert_eq!(
        d.metric(r#"redcloud_source_rejected_total{source="http"}"#)?,
        Some(2.0)
    );
    let (_, text) = d.get("/metrics")?;
    assert!(text.contains("redcloud_apply_latency_seconds_count"));
    assert!(text.contains(r#"redcloud_shard_queue_depth{shard="1"}"#));
    assert!(text.contains("redcloud_calendar_fallback 0"));
    assert!(
        !text.contains("m1") && !text.contains("t-1"),
        "ids in metrics"
    );

    // The admin API needs the token; health does not.
    let (s, _) = d.request("GET", "/metrics", None, "")?;
    assert_eq!(s, 401);
    let (s, _) = d.request("GET", "/v1/members/m1", Some("wrong"), "")?;
    assert_eq!(s, 401);
    let (s, _) = d.request("GET", "/healthz", None, "")?;
    assert_eq!(s, 200);
    assert!(!d.logs().contains(TOKEN), "token in the log");
    Ok(())
}

#[test]
fn without_a_token_the_admin_api_says_how_to_set_one_and_ingest_can_require_one() -> Result<()> {
    let d = Daemon::start(Opts {
        no_token: true,
        extra: "[sources.http]\ntoken = \"ingest-secret\"\n",
        ..Opts::default()
    })?;
    let (s, body) = d.get("/v1/members/m1")?;
    assert_eq!(s, 401);
    assert!(body.contains("REDCLOUD_ADMIN_TOKEN"), "{body}");
    assert!(body.contains("[admin] token"), "{body}");

    let lines = directory_events();
    let (s, _) = d.post_events(&lines, None)?;
    assert_eq!(s, 401);
    let (s, body) = d.post_events(&lines, Some("ingest-secret"))?;
    assert_eq!(s, 200, "{body}");
    assert!(!d.logs().contains("ingest-secret"), "token in the log");
    Ok(())
}

#[test]
fn the_token_can_come_from_the_environment() -> Result<()> {
    let d = Daemon::start(Opts {
        no_token: true,
        env: vec![("REDCLOUD_ADMIN_TOKEN", TOKEN.to_string())],
        ..Opts::default()
    })?;
    let (s, _) = d.get("/metrics")?;
    assert_eq!(s, 200);
    Ok(())
}

#[test]
fn sigterm_drains_and_exits_zero() -> Result<()> {
    let mut d = Daemon::start(Opts::default())?;
    let mut lines = directory_events();
    for i in 0..500 {
        lines.push(ev(
            &format!("a{i}"),
            "activity.recorded",
            AT,
            &format!(r#""member":"m{i}","activity":"quiz""#),
        ));
    }
    let (s, body) = d.post_events(&lines, None)?;
    assert_eq!(s, 200, "{body}");
    let status = d.terminate(Duration::from_secs(15))?;
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        d.logs()
    );
    let logs = d.logs();
    assert!(logs.contains("draining"), "{logs}");
    assert!(logs.contains("drained"), "{logs}");
    Ok(())
}

#[test]
fn a_reminder_fires_on_the_wall_clock() -> Result<()> {
    // The day closes at 24:00 (+08:00); start the clock a few seconds before.
    let d = Daemon::start(Opts {
        env: vec![("REDCLOUD_FAKE_NOW", "2026-03-02T23:59:55+08:00".to_string())],
        ..Opts::default()
    })?;
    let mut lines = directory_events();
    lines.push(ev(
        "e3",
        "member.upserted",
        AT,
        r#""member":"m2","org":"t1""#,
    ));
    lines.push(ev("e4", "app.login", AT, r#""member":"m2""#));
    lines.push(ev(
        "e5",
        "activity.recorded",
        "2026-03-02T10:00:00+08:00",
        r#""member":"m2","activity":"quiz""#,
    ));
    let (s, body) = d.post_events(&lines, None)?;
    assert_eq!(s, 200, "{body}");
    assert!(
        d.logs().contains("test clock in use"),
        "the fake clock must be announced"
    );
    // No event comes after this: only the wall clock closes the day.
    d.wait(Duration::from_secs(20), "reminder on stdout", || {
        Ok(d.stdout_lines().iter().any(|l| l.contains("member:m1")))
    })?;
    let out = d.stdout_lines();
    assert_eq!(out.len(), 1, "{out:?}");
    let n: serde_json::Value = serde_json::from_str(&out[0])?;
    assert_eq!(n["at"], "2026-03-03T00:00:00+08:00");
    assert_eq!(n["policy"], "quiz");
    assert_eq!(n["kind"], "reminder");
    assert_eq!(n["step"], 1);
    assert_eq!(n["subject"], "member:m1");
    assert_eq!(n["recipient"], "member:m1");
    assert_eq!(n["missed"], 1);
    assert_eq!(
        d.metric(r#"redcloud_notifications_total{policy="quiz",kind="reminder"}"#)?,
        Some(1.0)
    );
    let m = d.get_json("/v1/members/m1")?;
    assert_eq!(m["policies"][0]["missed"], 1);
    let m = d.get_json("/v1/members/m2")?;
    assert_eq!(m["policies"][0]["last_done"], "2026-03-02");
    assert_eq!(m["policies"][0]["missed"], 0);
    Ok(())
}
