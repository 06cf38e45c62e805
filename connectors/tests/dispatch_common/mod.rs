//! Shared helpers of the dispatcher tests (included with `#[path]`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use chrono::TimeZone;
use redcloud_connectors::channel::memory::MemoryChannel;
use redcloud_connectors::channel::ChannelKind;
use redcloud_connectors::dispatch::{Clock, DispatchConfig, Dispatcher, OfficeAddresses};
use redcloud_engine::notify::{Envelope, RenderedOwned};

/// Wall-clock ms of a local (Asia/Shanghai) time in March 2026.
pub fn local_ms(day: u32, h: u32, m: u32, s: u32) -> i64 {
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(2026, 3, day, h, m, s)
        .unwrap()
        .timestamp_millis()
}

pub fn config(toml_src: &str) -> DispatchConfig {
    let t: toml::Table = toml::from_str(toml_src).unwrap();
    DispatchConfig::from_toml(&t).unwrap()
}

/// A notification envelope.
pub fn env(id: &str, kind: &str, step: u8, subject: &str, recipient: &str) -> Envelope {
    Envelope {
        notification: RenderedOwned {
            id: id.into(),
            at: "2026-03-10T00:00:00+08:00".into(),
            policy: "quiz".into(),
            kind: kind.into(),
            step,
            subject: subject.into(),
            recipient: recipient.into(),
            missed: Some(5),
        },
        recipient_name: Some("王书记".into()),
        sms: None,
        push: None,
        org: Some("o1".into()),
        org_name: Some("一支部".into()),
        org_group: None,
        subject_name: Some("张三".into()),
        ticket_title: None,
        deadline: None,
    }
}

pub fn offices() -> HashMap<String, OfficeAddresses> {
    let mut m = HashMap::new();
    m.insert(
        "city".to_string(),
        OfficeAddresses {
            sms: Some("13900000000".into()),
            push: None,
            group: Some("city-robot".into()),
        },
    );
    m
}

/// Memory channels for sms, push and group, and a dispatcher using them.
pub fn dispatcher(cfg: DispatchConfig, start_ms: i64) -> (Dispatcher, [MemoryChannel; 3]) {
    let sms = MemoryChannel::new(ChannelKind::Sms);
    let push = MemoryChannel::new(ChannelKind::Push);
    let group = MemoryChannel::new(ChannelKind::Group);
    let mut d = Dispatcher::new(cfg, offices())
        .unwrap()
        .with_clock(Clock::starting_at(start_ms));
    for ch in [&sms, &push, &group] {
        let c: Arc<MemoryChannel> = Arc::new(ch.clone());
        d = d.with_channel(c).expect("channel configured");
    }
    (d, [sms, push, group])
}

/// Max arrivals in any closed window of `period` (arrivals sorted).
pub fn max_in_window(times: &[tokio::time::Instant], period: std::time::Duration) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi].duration_since(times[lo]) > period {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// The base config: all three channels with dummy URLs (memory channels
/// replace them), digests off unless `extra` sets them.
pub const BASE: &str = r#"
[channels.sms]
url = "http://127.0.0.1:9/sms"
sign_name = "红云"
template_code = "SMS_1"
[channels.push]
url = "http://127.0.0.1:9/push"
[channels.group]
url = "http://127.0.0.1:9/robot?key={key}"
"#;
