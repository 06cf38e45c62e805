//! Test harness shared by the engine's integration tests: a run of the
//! engine over hand-built events, collecting rendered notifications.

#![allow(dead_code)]

use std::borrow::Cow;
use std::sync::Arc;

use redcloud_engine::event::{Body, Event};
use redcloud_engine::notify::Rendered;
use redcloud_engine::policy::EngineConfig;
use redcloud_engine::time::Ts;
use redcloud_engine::{Engine, Outcome};

pub fn ts(s: &str) -> Ts {
    Ts::parse_rfc3339(s).unwrap()
}

pub fn c(s: &str) -> Cow<'static, str> {
    Cow::Owned(s.to_string())
}

pub struct Run {
    pub engine: Engine,
    pub out: Vec<Rendered>,
    pub seq: u64,
}

impl Run {
    pub fn new(cfg: EngineConfig) -> Run {
        Run {
            engine: Engine::new(Arc::new(cfg)),
            out: vec![],
            seq: 0,
        }
    }
    pub fn ev(&mut self, at: &str, body: Body<'static>) -> Outcome {
        self.seq += 1;
        let ev = Event {
            id: c(&format!("e{}", self.seq)),
            at: ts(at),
            body,
        };
        self.apply(ev)
    }
    pub fn apply(&mut self, ev: Event<'_>) -> Outcome {
        let mut out = vec![];
        let o = self.engine.apply(&ev, &mut out);
        self.out.extend(out.iter().map(|n| self.engine.render(n)));
        o
    }
    pub fn until(&mut self, at: &str) {
        let mut out = vec![];
        self.engine.advance(ts(at), &mut out);
        self.out.extend(out.iter().map(|n| self.engine.render(n)));
    }
    pub fn org(&mut self, at: &str, org: &str, parent: Option<&str>, leader: Option<&str>) {
        self.ev(
            at,
            Body::OrgUpserted {
                org: c(org),
                parent: parent.map(c),
                level: 0,
                name: None,
                leader: leader.map(c),
                group: None,
            },
        );
    }
    pub fn member(&mut self, at: &str, m: &str, org: &str, cohort: Option<&str>) {
        self.ev(
            at,
            Body::MemberUpserted {
                member: c(m),
                org: c(org),
                name: None,
                cohort: cohort.map(c),
                sms: None,
                push: None,
            },
        );
    }
    pub fn login(&mut self, at: &str, m: &str) {
        self.ev(at, Body::AppLogin { member: c(m) });
    }
    pub fn quiz(&mut self, at: &str, m: &str) -> Outcome {
        self.ev(
            at,
            Body::ActivityRecorded {
                member: c(m),
                activity: c("quiz"),
            },
        )
    }
    /// `(at, kind, step, recipient, missed)` of every notification.
    pub fn seen(&self) -> Vec<(String, &'static str, u8, String, Option<u32>)> {
        self.out
            .iter()
            .map(|r| (r.at.clone(), r.kind, r.step, r.recipient.clone(), r.missed))
            .collect()
    }
}

impl Run {
    pub fn ticket(&mut self, at: &str, body: Body<'static>) -> Outcome {
        self.ev(at, body)
    }
    pub fn open(&mut self, at: &str, t: &str, org: &str, category: &str) -> Outcome {
        self.ev(
            at,
            Body::TicketOpened {
                ticket: c(t),
                org: c(org),
                category: c(category),
                title: None,
            },
        )
    }
}

impl Run {
    /// A run continuing an existing engine (e.g. one restored from a snapshot).
    pub fn from_engine(engine: Engine) -> Run {
        Run {
            engine,
            out: vec![],
            seq: 0,
        }
    }
    /// Advances to an instant.
    pub fn advance(&mut self, to: Ts) {
        let mut out = vec![];
        self.engine.advance(to, &mut out);
        self.out.extend(out.iter().map(|n| self.engine.render(n)));
    }
}
