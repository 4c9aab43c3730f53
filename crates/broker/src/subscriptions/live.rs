//! Live subscriptions: a subscription held by a streaming reader (the platform's
//! `GET /platform/v1/live`, Server-Sent Events) instead of an endpoint that is called.
//!
//! It is compiled and matched exactly as a stored subscription is (selectors, `q`,
//! `geoQ`, watched attributes, triggers, throttling, format, projection) and its
//! notifications carry only what its owner may see; it is never stored, never listed
//! among the tenant's subscriptions, and goes away when its reader does. A reader that
//! falls behind loses notifications rather than holding memory without bound: the
//! count of those it lost is handed to it with the next one it gets, so it knows to
//! read the current state again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use citybrain_model::ErrorKind;
use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::model::{Compiled, Status};
use crate::error::{BrokerError, Result};
use crate::request::RequestContext;

/// Notifications a live reader may have waiting before the next ones are dropped.
pub const LIVE_QUEUE: usize = 1024;

/// Live subscriptions one principal may hold at once (a console tab holds one).
pub const LIVE_PER_PRINCIPAL: usize = 16;

/// Live subscriptions the server holds at once: each adds matching work to the one
/// consumer of the change feed that stored subscriptions share.
pub const LIVE_MAX: usize = 512;

/// The endpoint a live subscription is compiled with: it is never called (`.invalid`
/// is reserved, RFC 2606).
const LIVE_ENDPOINT: &str = "http://live.invalid/";

/// A live subscription as the manager matches it.
#[derive(Debug)]
pub(crate) struct LiveEntry {
    pub(crate) sub: Compiled,
    /// The reader's request: what it may see is decided with its principal, source
    /// address and purpose, as for its queries.
    pub(crate) rc: RequestContext,
    pub(crate) status: Mutex<Status>,
    tx: mpsc::Sender<Value>,
    dropped: AtomicU64,
    /// Wakes a waiting reader to tell it it missed changes.
    wake: tokio::sync::Notify,
}

impl LiveEntry {
    /// Queues a notification; one the reader has no room for is counted as dropped.
    pub(crate) fn push(&self, body: Value) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(body) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            LIVE_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Notifications dropped because a live reader fell behind, since start.
static LIVE_DROPPED: AtomicU64 = AtomicU64::new(0);

/// The live subscriptions of a manager.
#[derive(Debug, Default)]
pub(crate) struct LiveRegistry {
    entries: RwLock<HashMap<u64, Arc<LiveEntry>>>,
    next: AtomicU64,
}

impl LiveRegistry {
    pub(crate) fn new() -> Arc<LiveRegistry> {
        Arc::new(LiveRegistry::default())
    }

    /// The live subscriptions of `tenant`.
    pub(crate) fn of_tenant(&self, tenant: &str) -> Vec<Arc<LiveEntry>> {
        self.entries
            .read()
            .values()
            .filter(|l| l.sub.tenant == tenant)
            .cloned()
            .collect()
    }

    /// Every reader missed changes (the feed consumer was cut off): each is told
    /// `lagged`, to read the current state again.
    pub(crate) fn missed_by_all(&self) {
        for l in self.entries.read().values() {
            l.dropped.fetch_add(1, Ordering::Relaxed);
            l.wake.notify_one();
        }
    }

    /// 503 beyond [`LIVE_MAX`] in all, 429 beyond [`LIVE_PER_PRINCIPAL`] for `rc`'s
    /// principal.
    pub(crate) fn check_room(&self, rc: &RequestContext) -> Result<()> {
        Self::room(&self.entries.read(), rc)
    }

    fn room(live: &HashMap<u64, Arc<LiveEntry>>, rc: &RequestContext) -> Result<()> {
        if live.len() >= LIVE_MAX {
            return Err(BrokerError::new(
                ErrorKind::Unavailable,
                format!("the server holds {LIVE_MAX} live subscriptions already; try again later"),
            ));
        }
        let mine = live
            .values()
            .filter(|l| l.rc.principal == rc.principal)
            .count();
        if mine >= LIVE_PER_PRINCIPAL {
            return Err(BrokerError::new(
                ErrorKind::TooManyRequests,
                format!("at most {LIVE_PER_PRINCIPAL} live subscriptions at once per user; close one first"),
            ));
        }
        Ok(())
    }

    /// Holds `sub` for `rc` until the returned reader is dropped.
    pub(crate) fn open(
        self: &Arc<Self>,
        rc: &RequestContext,
        sub: Compiled,
    ) -> Result<LiveSubscription> {
        let (tx, rx) = mpsc::channel(LIVE_QUEUE);
        let id = sub.id.clone();
        let entry = Arc::new(LiveEntry {
            sub,
            rc: rc.clone(),
            status: Mutex::new(Status::default()),
            tx,
            dropped: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
        });
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        {
            // Checked again under the write lock: concurrent opens cannot overshoot.
            let mut live = self.entries.write();
            Self::room(&live, rc)?;
            live.insert(key, entry.clone());
        }
        Ok(LiveSubscription {
            key,
            id,
            entry,
            rx,
            registry: Arc::downgrade(self),
        })
    }

    pub(crate) fn stats(&self) -> LiveStats {
        LiveStats {
            open: self.entries.read().len() as u64,
            dropped: LIVE_DROPPED.load(Ordering::Relaxed),
        }
    }
}

/// Makes a subscription body a live one: refuses what has no meaning for a stream
/// (`timeInterval`, an endpoint), gives it an id and the endpoint that is never
/// called. Returns the id.
pub(crate) fn prepare(body: &mut Map<String, Value>) -> Result<String> {
    if body.contains_key("timeInterval") {
        return Err(BrokerError::bad_data(
            "'timeInterval' is not available on a live subscription: it streams changes",
        ));
    }
    let id = format!("urn:ngsi-ld:Subscription:live:{}", uuid::Uuid::new_v4());
    body.insert("id".into(), Value::String(id.clone()));
    let notification = body
        .entry("notification")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(n) = notification.as_object_mut() else {
        return Err(BrokerError::bad_data("'notification' must be an object"));
    };
    if n.contains_key("endpoint") {
        return Err(BrokerError::bad_data(
            "'notification.endpoint' is not given on a live subscription: its reader is the endpoint",
        ));
    }
    n.insert(
        "endpoint".into(),
        serde_json::json!({ "uri": LIVE_ENDPOINT, "accept": "application/json" }),
    );
    Ok(id)
}

/// What a live reader gets next.
#[derive(Debug)]
pub enum LiveItem {
    /// A notification (an NGSI-LD `Notification` body).
    Notification(Value),
    /// This many notifications were dropped since the last item: the reader fell
    /// behind and should read the current state again.
    Lagged(u64),
}

/// A live subscription, held by its reader; dropping it ends the subscription.
pub struct LiveSubscription {
    key: u64,
    id: String,
    entry: Arc<LiveEntry>,
    rx: mpsc::Receiver<Value>,
    registry: Weak<LiveRegistry>,
}

impl LiveSubscription {
    /// The subscription's id (`urn:ngsi-ld:Subscription:live:…`), as its notifications
    /// name it in `subscriptionId`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next item, when there is one. What was queued before a drop comes first:
    /// `Lagged` is told once the queue is empty, so that a reader who reloads on it is
    /// not then handed older states; a reader waiting when the manager misses changes
    /// is woken to be told. (`None` only if the channel closed, which the entry this
    /// reader holds prevents: the stream ends when its reader or its time limit does.)
    pub async fn next(&mut self) -> Option<LiveItem> {
        loop {
            match self.rx.try_recv() {
                Ok(v) => return Some(LiveItem::Notification(v)),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let dropped = self.entry.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                return Some(LiveItem::Lagged(dropped));
            }
            tokio::select! {
                v = self.rx.recv() => return v.map(LiveItem::Notification),
                _ = self.entry.wake.notified() => {}
            }
        }
    }
}

impl Drop for LiveSubscription {
    fn drop(&mut self) {
        if let Some(r) = self.registry.upgrade() {
            r.entries.write().remove(&self.key);
        }
    }
}

/// Live subscriptions open and notifications dropped, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveStats {
    pub open: u64,
    pub dropped: u64,
}

static LIVE_OPEN_METRIC: citybrain_telemetry::MetricDef = citybrain_telemetry::MetricDef::gauge(
    "subscriptions_live",
    "Live subscriptions open (GET /platform/v1/live readers)",
);
static LIVE_DROPPED_METRIC: citybrain_telemetry::MetricDef =
    citybrain_telemetry::MetricDef::counter(
        "subscriptions_live_dropped",
        "Notifications dropped because a live reader fell behind",
    );

impl citybrain_telemetry::Metrics for LiveStats {
    fn visit(&self, out: &mut dyn FnMut(&'static citybrain_telemetry::MetricDef, f64)) {
        out(&LIVE_OPEN_METRIC, self.open as f64);
        out(&LIVE_DROPPED_METRIC, self.dropped as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn subscription() -> Compiled {
        let mut body = serde_json::json!({"type": "Subscription", "entities": [{"type": "T"}]})
            .as_object()
            .cloned()
            .unwrap();
        let id = prepare(&mut body).unwrap();
        let epoch = chrono::DateTime::from_timestamp(0, 0).unwrap();
        let core = citybrain_model::JsonLdContext::core();
        Compiled::compile("", &id, body, None, core, epoch, true).unwrap()
    }

    #[tokio::test]
    async fn a_waiting_reader_is_told_when_changes_were_missed() {
        let reg = LiveRegistry::new();
        let mut sub = reg
            .open(&RequestContext::tenant(""), subscription())
            .unwrap();
        let waiting = tokio::spawn(async move { sub.next().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        reg.missed_by_all();
        let item = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("woken")
            .unwrap();
        assert!(matches!(item, Some(LiveItem::Lagged(1))), "{item:?}");
    }

    #[tokio::test]
    async fn queued_notifications_come_before_the_lag_and_readers_are_bounded() {
        let reg = LiveRegistry::new();
        let rc = RequestContext::tenant("");
        let mut sub = reg.open(&rc, subscription()).unwrap();
        let entry = reg.of_tenant("")[0].clone();
        for i in 0..LIVE_QUEUE + 3 {
            entry.push(serde_json::json!(i));
        }
        for i in 0..LIVE_QUEUE {
            match sub.next().await {
                Some(LiveItem::Notification(v)) => assert_eq!(v, serde_json::json!(i)),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(sub.next().await, Some(LiveItem::Lagged(3))));
        // One principal holds at most LIVE_PER_PRINCIPAL; dropping one makes room.
        let mut held = Vec::new();
        while held.len() + 1 < LIVE_PER_PRINCIPAL {
            held.push(reg.open(&rc, subscription()).unwrap());
        }
        assert!(reg.open(&rc, subscription()).is_err());
        drop(sub);
        assert_eq!(reg.stats().open as usize, LIVE_PER_PRINCIPAL - 1);
        held.push(reg.open(&rc, subscription()).unwrap());
    }
}
