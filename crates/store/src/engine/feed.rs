//! The change feed: bounded per subscriber, resumable from a log position.
//!
//! The committer publishes each durable change to every subscriber with `try_send`
//! (it never waits on a reader: that would stall every write). A subscriber whose
//! channel is full has fallen `capacity` changes behind: it is cut off and its feed
//! ends with a gap at the last change it was sent.
//!
//! What is retained for resuming: always the last [`RECENT`] changes (a consumer that
//! restarts picks up where it was), and, from the moment a subscriber is cut off until
//! every cut subscriber has resumed, everything after its position, up to twice the
//! capacity. A cut subscriber drains its channel (`capacity` changes) and resumes
//! from its position; one that does not come back before twice the capacity of newer
//! changes accumulated gets [`FeedGap`] and rebuilds from the current state. Nothing
//! beyond [`RECENT`] is pinned in memory while every subscriber keeps up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use citybrain_storage::{Change, Feed, FeedGap};
use tokio::sync::mpsc;

/// Changes always retained.
pub(crate) const RECENT: usize = 1024;

struct Subscriber {
    tx: mpsc::Sender<Arc<Change>>,
    cut: Arc<AtomicBool>,
}

pub(crate) struct FeedHub {
    capacity: usize,
    subscribers: Vec<Subscriber>,
    /// Retained changes, oldest first.
    ring: VecDeque<Arc<Change>>,
    /// Changes at or before this position are no longer retained (those before the
    /// store opened, and those pushed out of the ring).
    evicted_up_to: u64,
    /// The last change published.
    last: u64,
    /// Cut subscribers that have not resumed yet (while any, the ring grows up to
    /// twice the capacity).
    pending: usize,
    /// Subscribers cut off since start.
    pub(crate) cut: u64,
}

impl FeedHub {
    /// A feed whose retained history starts after `opened_at` (the log position the
    /// store recovered to).
    pub(crate) fn new(capacity: usize, opened_at: u64) -> FeedHub {
        FeedHub {
            capacity: capacity.max(1),
            subscribers: Vec::new(),
            ring: VecDeque::new(),
            evicted_up_to: opened_at,
            last: opened_at,
            pending: 0,
            cut: 0,
        }
    }

    pub(crate) fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    fn limit(&self) -> usize {
        if self.pending > 0 {
            (2 * self.capacity).max(RECENT)
        } else {
            RECENT
        }
    }

    fn trim(&mut self) {
        let limit = self.limit();
        while self.ring.len() > limit {
            if let Some(old) = self.ring.pop_front() {
                self.evicted_up_to = old.lsn;
            }
        }
        if self.pending > 0 && self.ring.len() == limit {
            // Those cut off have been away too long: they will rebuild.
            tracing::warn!(
                pending = self.pending,
                "cut change-feed subscribers did not resume in time; they rebuild from the state"
            );
            self.pending = 0;
        }
    }

    /// Publishes one durable change (log order).
    pub(crate) fn publish(&mut self, c: Arc<Change>) {
        self.last = c.lsn;
        self.ring.push_back(c.clone());
        let mut cut = 0;
        self.subscribers.retain(|s| match s.tx.try_send(c.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                s.cut.store(true, Ordering::Release);
                cut += 1;
                false
            }
        });
        if cut > 0 {
            self.cut += cut;
            self.pending += cut as usize;
            tracing::warn!(
                cut,
                capacity = self.capacity,
                "change-feed subscribers fell too far behind and were cut off; they resume from where they were"
            );
        }
        self.trim();
    }

    /// A feed of the changes after `from` (`None`: from now on).
    pub(crate) fn subscribe(&mut self, from: Option<u64>) -> Result<Feed, FeedGap> {
        let replay: Vec<Arc<Change>> = match from {
            None => Vec::new(),
            Some(p) if p >= self.last => Vec::new(),
            Some(p) if p < self.evicted_up_to => return Err(FeedGap { after: p }),
            Some(p) => self.ring.iter().filter(|c| c.lsn > p).cloned().collect(),
        };
        if from.is_some() && self.pending > 0 {
            // Taken as a cut subscriber coming back (a fresh one asking for a past
            // position only shortens the wait for the others).
            self.pending -= 1;
        }
        let (tx, rx) = mpsc::channel(self.capacity.max(replay.len() + 1));
        for c in replay {
            if tx.try_send(c).is_err() {
                return Err(FeedGap {
                    after: from.unwrap_or(0),
                });
            }
        }
        let cut = Arc::new(AtomicBool::new(false));
        self.subscribers.push(Subscriber {
            tx,
            cut: cut.clone(),
        });
        self.trim();
        Ok(Feed::new(rx, cut))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citybrain_storage::{ChangeKind, Origin};

    fn change(lsn: u64) -> Arc<Change> {
        Arc::new(Change {
            lsn,
            tenant: Arc::from(""),
            kind: ChangeKind::Created,
            before: None,
            after: None,
            at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            origin: Origin::default(),
        })
    }

    #[test]
    fn a_cut_subscriber_resumes_after_draining_while_more_changes_arrive() {
        let mut hub = FeedHub::new(4, 0);
        let mut feed = hub.subscribe(None).unwrap();
        for lsn in 1..=5 {
            hub.publish(change(lsn)); // the 5th does not fit: cut
        }
        assert_eq!(hub.cut, 1);
        // While it drains its 4, six more arrive (within twice the capacity).
        for lsn in 6..=11 {
            hub.publish(change(lsn));
        }
        let mut got = Vec::new();
        while let Ok(c) = feed.try_recv() {
            got.push(c.lsn);
        }
        assert_eq!(got, [1, 2, 3, 4]);
        let gap = feed.gap().unwrap();
        assert_eq!(gap.after, 4);
        let mut resumed = hub.subscribe(Some(gap.after)).unwrap();
        let mut rest = Vec::new();
        while let Ok(c) = resumed.try_recv() {
            rest.push(c.lsn);
        }
        assert_eq!(
            rest,
            (5..=11).collect::<Vec<_>>(),
            "nothing lost, nothing twice"
        );
        // All resumed: the ring shrinks back to the recent window.
        for lsn in 12..=(12 + RECENT as u64) {
            hub.publish(change(lsn));
        }
        assert!(hub.ring.len() <= RECENT);
    }

    #[test]
    fn one_that_stays_away_too_long_gets_a_gap() {
        let mut hub = FeedHub::new(4, 0);
        let _feed = hub.subscribe(None).unwrap();
        for lsn in 1..=(5 + 2 * RECENT as u64) {
            hub.publish(change(lsn));
        }
        assert!(hub.subscribe(Some(4)).is_err());
        assert!(
            hub.subscribe(Some(0)).is_err(),
            "before the store opened or evicted"
        );
    }
}
