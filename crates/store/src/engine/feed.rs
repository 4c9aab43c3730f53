//! The change feed: bounded per subscriber, resumable from a log position while the
//! store retains what followed it.
//!
//! The committer publishes each durable change to every subscriber with `try_send`
//! (it never waits on a reader: that would stall every write). A subscriber whose
//! channel is full has fallen `capacity` changes behind: it is cut off and its feed
//! ends with a gap. The last `capacity` changes are retained in a ring, so a
//! subscriber may (re)subscribe from any position the ring still covers; older
//! positions answer [`FeedGap`] and the subscriber rebuilds from the current state.

use std::collections::VecDeque;
use std::sync::Arc;

use citybrain_storage::{Change, Feed, FeedGap};
use tokio::sync::mpsc;

struct Subscriber {
    tx: mpsc::Sender<Arc<Change>>,
    gap: Arc<std::sync::Mutex<Option<FeedGap>>>,
}

pub(crate) struct FeedHub {
    capacity: usize,
    subscribers: Vec<Subscriber>,
    /// The last `capacity` changes published, oldest first.
    ring: VecDeque<Arc<Change>>,
    /// Changes at or before this position are no longer retained (those before the
    /// store opened, and those pushed out of the ring).
    evicted_up_to: u64,
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
            cut: 0,
        }
    }

    pub(crate) fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    /// Publishes one durable change (log order).
    pub(crate) fn publish(&mut self, c: Arc<Change>) {
        if self.ring.len() == self.capacity {
            if let Some(old) = self.ring.pop_front() {
                self.evicted_up_to = old.lsn;
            }
        }
        self.ring.push_back(c.clone());
        let mut cut = 0;
        self.subscribers.retain(|s| match s.tx.try_send(c.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if let Ok(mut g) = s.gap.lock() {
                    *g = Some(FeedGap { after: 0 });
                }
                cut += 1;
                false
            }
        });
        if cut > 0 {
            self.cut += cut;
            tracing::warn!(
                cut,
                capacity = self.capacity,
                "change-feed subscribers fell too far behind and were cut off"
            );
        }
    }

    /// A feed of the changes after `from` (`None`: from now on).
    pub(crate) fn subscribe(&mut self, from: Option<u64>) -> Result<Feed, FeedGap> {
        let replay: Vec<Arc<Change>> = match from {
            None => Vec::new(),
            Some(p) if p < self.evicted_up_to => return Err(FeedGap { after: p }),
            Some(p) => self.ring.iter().filter(|c| c.lsn > p).cloned().collect(),
        };
        let (tx, rx) = mpsc::channel(self.capacity);
        for c in replay {
            // The ring holds at most `capacity` changes: this never fills the channel.
            if tx.try_send(c).is_err() {
                return Err(FeedGap {
                    after: from.unwrap_or(0),
                });
            }
        }
        let gap = Arc::new(std::sync::Mutex::new(None));
        self.subscribers.push(Subscriber {
            tx,
            gap: gap.clone(),
        });
        Ok(Feed::new(rx, gap))
    }
}
