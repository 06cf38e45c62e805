//! Outstanding delivery tags of one AMQP channel and the cumulative-ack point.
//!
//! Tags on a channel start at 1 and grow by one per delivery. Completions arrive
//! in any order; only the highest *contiguous* completed tag may be acknowledged
//! with `multiple = true`, or a message still being applied would be acked early.

use std::collections::VecDeque;

use bytes::Bytes;
use lapin::types::ShortString;

/// What a delivery needs to be dead-lettered later.
pub(super) struct Original {
    pub(super) body: Bytes,
    pub(super) routing_key: ShortString,
    pub(super) exchange: ShortString,
}

enum Slot {
    Pending(Original),
    Done,
}

/// Tags `done_upto + 1 ..= done_upto + slots.len()` are outstanding.
#[derive(Default)]
pub(super) struct Tracker {
    acked_upto: u64,
    done_upto: u64,
    slots: VecDeque<Slot>,
    pending: usize,
}

impl Tracker {
    /// Records a new delivery.
    pub(super) fn delivered(
        &mut self,
        tag: u64,
        body: Bytes,
        routing_key: ShortString,
        exchange: ShortString,
    ) {
        let next = self.done_upto + self.slots.len() as u64 + 1;
        if tag < next {
            // Not expected on a fresh channel; never ack it cumulatively by mistake.
            return;
        }
        for _ in next..tag {
            self.slots.push_back(Slot::Done);
        }
        self.slots.push_back(Slot::Pending(Original {
            body,
            routing_key,
            exchange,
        }));
        self.pending += 1;
        self.advance();
    }

    /// The original message of a pending tag.
    pub(super) fn original(&self, tag: u64) -> Option<&Original> {
        match self.slot(tag)? {
            Slot::Pending(o) => Some(o),
            Slot::Done => None,
        }
    }

    /// Marks `tag` complete; `false` if it was unknown or already complete.
    pub(super) fn complete(&mut self, tag: u64) -> bool {
        let Some(i) = self.index(tag) else {
            return false;
        };
        if matches!(self.slots[i], Slot::Done) {
            return false;
        }
        self.slots[i] = Slot::Done;
        self.pending -= 1;
        self.advance();
        true
    }

    /// Marks a tag that was given back to the broker (nack with requeue) as settled.
    pub(super) fn release(&mut self, tag: u64) {
        self.complete(tag);
    }

    /// Completions not yet covered by a sent ack.
    pub(super) fn unsent(&self) -> u64 {
        self.done_upto - self.acked_upto
    }

    /// Deliveries handed out and not yet complete.
    pub(super) fn in_flight(&self) -> usize {
        self.pending
    }

    /// The tag to ack with `multiple = true`, if the completed prefix grew.
    pub(super) fn take_ackable(&mut self) -> Option<u64> {
        if self.done_upto > self.acked_upto {
            self.acked_upto = self.done_upto;
            Some(self.done_upto)
        } else {
            None
        }
    }

    fn index(&self, tag: u64) -> Option<usize> {
        let i = tag.checked_sub(self.done_upto + 1)?;
        let i = usize::try_from(i).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    fn slot(&self, tag: u64) -> Option<&Slot> {
        self.index(tag).map(|i| &self.slots[i])
    }

    fn advance(&mut self) {
        while let Some(Slot::Done) = self.slots.front() {
            self.slots.pop_front();
            self.done_upto += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(t: &mut Tracker, tag: u64) {
        t.delivered(tag, Bytes::from_static(b"{}"), "k".into(), "x".into());
    }

    #[test]
    fn acks_only_the_contiguous_prefix() {
        let mut t = Tracker::default();
        for tag in 1..=5 {
            deliver(&mut t, tag);
        }
        assert!(t.complete(3));
        assert!(t.complete(2));
        assert_eq!(t.take_ackable(), None, "1 is still being applied");
        assert!(t.complete(1));
        assert_eq!(t.take_ackable(), Some(3));
        assert_eq!(t.take_ackable(), None);
        assert!(!t.complete(2), "already acked");
        assert!(t.complete(5));
        assert_eq!(t.unsent(), 0);
        assert_eq!(t.in_flight(), 1);
        assert!(t.original(4).is_some());
        assert!(t.complete(4));
        assert_eq!(t.unsent(), 2);
        assert_eq!(t.take_ackable(), Some(5));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn unknown_tags_are_ignored() {
        let mut t = Tracker::default();
        deliver(&mut t, 1);
        assert!(!t.complete(7));
        assert!(!t.complete(0));
        assert!(t.original(1).is_some());
        assert!(t.complete(1));
        assert!(t.original(1).is_none());
    }

    #[test]
    fn random_completion_orders_never_ack_early() {
        // A small deterministic shuffle over many orders.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200 {
            let mut t = Tracker::default();
            let n = 40u64;
            for tag in 1..=n {
                deliver(&mut t, tag);
            }
            let mut order: Vec<u64> = (1..=n).collect();
            for i in (1..order.len()).rev() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                order.swap(i, (seed % (i as u64 + 1)) as usize);
            }
            let mut done = std::collections::BTreeSet::new();
            let mut acked = 0;
            for tag in order {
                t.complete(tag);
                done.insert(tag);
                if let Some(upto) = t.take_ackable() {
                    assert!((acked + 1..=upto).all(|x| done.contains(&x)));
                    acked = upto;
                }
            }
            assert_eq!(acked, n);
        }
    }
}
