//! Dead letters: notifications that will not be delivered (final answers on
//! every channel of their route, retries exhausted, or no usable address),
//! kept in memory for the admin view and counted in the metrics.
//!
//! The view carries ids, policy, kind, step, channel, the classified reason
//! and the attempt count: no address, name or text.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use redcloud_engine::notify::Envelope;
use serde::Serialize;

/// One dead letter as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetterView {
    /// The message's idempotency key.
    pub id: String,
    /// The notification ids it carried.
    pub notification_ids: Vec<String>,
    /// Policy name.
    pub policy: String,
    /// `reminder`, `warning` or `escalation`.
    pub kind: String,
    /// Step.
    pub step: u8,
    /// `member:<id>` or `office:<id>`.
    pub recipient: String,
    /// The last channel tried, `null` when unroutable.
    pub channel: Option<&'static str>,
    /// Why (`unroutable`, `http 400`, `retries exhausted: http 503`, ...).
    pub reason: String,
    /// Attempts made on the last channel.
    pub attempts: u32,
    /// When it was dead-lettered, wall-clock milliseconds since the epoch.
    pub at_unix_ms: i64,
}

#[derive(Debug)]
struct Inner {
    cap: usize,
    list: VecDeque<(DeadLetterView, Vec<Envelope>)>,
}

/// A shared handle on the dead letters (the newest `dead_letters_kept`).
#[derive(Clone, Debug)]
pub struct DeadLetters {
    inner: Arc<Mutex<Inner>>,
}

impl DeadLetters {
    /// Keeps at most `cap` (all are counted in the metrics).
    pub fn new(cap: usize) -> Self {
        DeadLetters {
            inner: Arc::new(Mutex::new(Inner {
                cap,
                list: VecDeque::new(),
            })),
        }
    }

    /// Keeps one (the oldest goes when full). The daemon also puts back the
    /// dead letters its outbox remembered across a restart.
    pub fn push(&self, view: DeadLetterView, envs: Vec<Envelope>) {
        let mut g = self.inner.lock().expect("dead letters lock");
        if g.cap == 0 {
            return;
        }
        if g.list.len() == g.cap {
            g.list.pop_front();
        }
        g.list.push_back((view, envs));
    }

    /// The dead letters kept, oldest first.
    pub fn list(&self) -> Vec<DeadLetterView> {
        let g = self.inner.lock().expect("dead letters lock");
        g.list.iter().map(|(v, _)| v.clone()).collect()
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("dead letters lock").list.len()
    }

    /// Whether none are kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns every kept dead letter with its envelopes, for an
    /// operator who fixed the cause and sends them again.
    pub fn drain(&self) -> Vec<(DeadLetterView, Vec<Envelope>)> {
        let mut g = self.inner.lock().expect("dead letters lock");
        g.list.drain(..).collect()
    }
}
