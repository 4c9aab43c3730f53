//! The storage traits the domain depends on.

use std::collections::HashMap;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_model::geobox::BBox;
use citybrain_model::q::KeyRange;
use citybrain_model::{Entity, ModelError};
use citybrain_tsdb::{
    AggMethod, Bucket, EntityHistory, HistOp, Point, Selection, SeriesKey, Tsdb, TsdbError,
    TsdbStats,
};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

pub use citybrain_access::Origin;

use crate::error::StoreError;

/// The decision of a read-modify-write: given the current entity (if any), what to write.
pub type Decide<'a> =
    dyn FnMut(Option<&Arc<Entity>>) -> Result<Option<Write>, ModelError> + Send + 'a;

/// The decision of [`EntityStore::modify_many`] for item `i`: its new state.
pub type ManyDecide<'a> =
    dyn FnMut(usize, Option<&Arc<Entity>>) -> Result<Option<Entity>, ModelError> + Send + 'a;

/// What a read-modify-write decided.
#[derive(Debug, Clone)]
pub enum Write {
    Put(Entity),
    Delete,
}

/// How an entity changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// One durable entity change, published on the change feed in log order.
#[derive(Debug, Clone)]
pub struct Change {
    pub lsn: u64,
    pub tenant: Arc<str>,
    pub kind: ChangeKind,
    pub before: Option<Arc<Entity>>,
    pub after: Option<Arc<Entity>>,
    pub at: DateTime<Utc>,
    /// Who made the change and in which request (also in the log record).
    pub origin: Origin,
}

impl Change {
    /// The entity as it is now, or as it was before deletion.
    pub fn entity(&self) -> Option<&Arc<Entity>> {
        self.after.as_ref().or(self.before.as_ref())
    }
}

/// A write that was accepted and will become durable: an opaque durability future,
/// whatever the backend; `wait` resolves once the write is on stable storage.
#[must_use = "a commit is only durable once waited for"]
pub struct Commit(CommitInner);

enum CommitInner {
    /// Durable once a durability watermark `(durable position, failed)` reaches `lsn`
    /// (the embedded log's group commit: no allocation per write).
    Watermark {
        lsn: u64,
        durable: watch::Receiver<(u64, bool)>,
    },
    /// Nothing to wait for.
    Done,
    /// Any other backend's durability.
    Future(Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>),
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            CommitInner::Watermark { lsn, .. } => write!(f, "Commit(lsn {lsn})"),
            CommitInner::Done => f.write_str("Commit(done)"),
            CommitInner::Future(_) => f.write_str("Commit(future)"),
        }
    }
}

impl Commit {
    /// Durable once `durable` shows a position at or past `lsn` (or fails when it
    /// shows the failed flag).
    pub fn watermark(lsn: u64, durable: watch::Receiver<(u64, bool)>) -> Commit {
        Commit(CommitInner::Watermark { lsn, durable })
    }

    /// A commit that wrote nothing (already durable).
    pub fn done() -> Commit {
        Commit(CommitInner::Done)
    }

    /// Durable when `fut` resolves.
    pub fn future(fut: impl Future<Output = Result<(), StoreError>> + Send + 'static) -> Commit {
        Commit(CommitInner::Future(Box::pin(fut)))
    }

    /// The log position of the write, where the store numbers its writes.
    pub fn lsn(&self) -> Option<u64> {
        match &self.0 {
            CommitInner::Watermark { lsn, .. } => Some(*lsn),
            _ => None,
        }
    }

    /// Waits until the write is on stable storage.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            CommitInner::Done => Ok(()),
            CommitInner::Future(f) => f.await,
            CommitInner::Watermark { lsn, mut durable } => {
                let res = durable
                    .wait_for(|(done, failed)| *failed || *done >= lsn)
                    .await;
                match res {
                    Ok(v) if v.1 => Err(StoreError::Failed),
                    Ok(_) => Ok(()),
                    Err(_) => Err(StoreError::ShuttingDown),
                }
            }
        }
    }
}

/// The change feed of one subscriber: every durable entity change in log order, from
/// where it subscribed. Bounded: a subscriber that falls more than the store's feed
/// capacity behind is cut off; its feed then ends with a [`FeedGap`] naming the last
/// position it received, from which it may resubscribe
/// ([`EntityStore::subscribe_from`]) while the store still retains what followed, or
/// else rebuild from the current state.
pub struct Feed {
    rx: mpsc::Receiver<Arc<Change>>,
    /// Set by the store when it cuts this subscriber off.
    cut: Arc<AtomicBool>,
    last: u64,
}

/// Where a feed was cut: the last log position its subscriber received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the change feed was cut after position {after}")]
pub struct FeedGap {
    pub after: u64,
}

impl Feed {
    /// A feed over `rx`; the store sets `cut` when it cuts the subscriber off.
    pub fn new(rx: mpsc::Receiver<Arc<Change>>, cut: Arc<AtomicBool>) -> Feed {
        Feed { rx, cut, last: 0 }
    }

    /// The next change; `None` when the store closed or cut this feed (see
    /// [`Feed::gap`]).
    pub async fn recv(&mut self) -> Option<Arc<Change>> {
        let c = self.rx.recv().await?;
        self.last = c.lsn;
        Some(c)
    }

    /// The next change, blocking the thread (outside an async runtime).
    pub fn blocking_recv(&mut self) -> Option<Arc<Change>> {
        let c = self.rx.blocking_recv()?;
        self.last = c.lsn;
        Some(c)
    }

    /// The next change if one is waiting.
    pub fn try_recv(&mut self) -> Result<Arc<Change>, mpsc::error::TryRecvError> {
        let c = self.rx.try_recv()?;
        self.last = c.lsn;
        Ok(c)
    }

    /// Why the feed ended, when the store cut it (a slow subscriber): after the last
    /// position received.
    pub fn gap(&self) -> Option<FeedGap> {
        self.cut
            .load(Ordering::Acquire)
            .then_some(FeedGap { after: self.last })
    }
}

/// Options of a read-modify-write.
#[derive(Debug, Clone)]
pub struct ModifyOptions {
    /// Record the change in the history (false when the caller writes the history
    /// itself, as temporal provision does).
    pub history: bool,
    /// Who writes: logged with the change and carried on the change feed.
    pub origin: Origin,
}

impl Default for ModifyOptions {
    fn default() -> Self {
        Self {
            history: true,
            origin: Origin::default(),
        }
    }
}

impl ModifyOptions {
    /// A write by `origin`, recorded in the history.
    pub fn by(origin: Origin) -> Self {
        Self {
            history: true,
            origin,
        }
    }
}

/// The outcome of a read-modify-write on one entity.
#[derive(Debug)]
pub struct Modified {
    pub commit: Commit,
    pub before: Option<Arc<Entity>>,
    pub after: Option<Arc<Entity>>,
}

/// What a backup holds ([`EntityStore::backup`]).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    /// The log position the copy holds: every write up to it, none after.
    pub lsn: u64,
    /// The snapshot the copy starts from, and the history's checkpoint.
    pub snapshot_lsn: u64,
    pub history_lsn: u64,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Entity state and documents, per tenant. Tenants are created by their first write.
///
/// Reads are fallible (a remote backend's connection fails) and paged by cursor:
/// [`EntityStore::scan`] starts strictly after `after` and stops when the visitor
/// breaks, so a caller pages by remembering the last id it saw.
pub trait EntityStore: Send + Sync + 'static {
    /// True once the tenant has been written to.
    fn tenant_exists(&self, tenant: &str) -> Result<bool, StoreError>;
    fn tenants(&self) -> Result<Vec<String>, StoreError>;

    fn get(&self, tenant: &str, id: &str) -> Result<Option<Arc<Entity>>, StoreError>;

    /// Visits entities in id order, starting strictly after `after`, restricted to entities
    /// having one of `types` (expanded IRIs) when given.
    fn scan(
        &self,
        tenant: &str,
        types: Option<&[String]>,
        after: Option<&str>,
        visit: &mut dyn FnMut(&Arc<Entity>) -> ControlFlow<()>,
    ) -> Result<(), StoreError>;

    /// Visits, in id order, the entities whose `attr` (default instance, scalar) lies in
    /// any of `ranges`. Answers false when the store keeps no value index; the caller
    /// then scans.
    fn scan_values(
        &self,
        tenant: &str,
        attr: &str,
        ranges: &[KeyRange],
        visit: &mut dyn FnMut(&Arc<Entity>) -> ControlFlow<()>,
    ) -> Result<bool, StoreError>;

    /// Visits, in id order, the entities whose GeoProperty `attr` has a value whose
    /// box ([`citybrain_model::geobox::geometry_box`]) meets one of `boxes`: a superset
    /// of what a geo-query with those candidate boxes matches, which the caller checks.
    /// Answers false when the store keeps no spatial index (the default); the caller
    /// then scans.
    fn scan_area(
        &self,
        tenant: &str,
        attr: &str,
        boxes: &[BBox],
        visit: &mut dyn FnMut(&Arc<Entity>) -> ControlFlow<()>,
    ) -> Result<bool, StoreError> {
        let _ = (tenant, attr, boxes, visit);
        Ok(false)
    }

    /// Takes a consistent copy of everything the store keeps (state, documents such as
    /// rules and incidents, history) into `dest` (created; must not exist or be
    /// empty) while writes go on, as of one log position. `Unsupported` where the
    /// backend backs up by its own means.
    fn backup(&self, dest: &std::path::Path) -> Result<BackupReport, StoreError> {
        let _ = dest;
        Err(StoreError::Unsupported("backup"))
    }

    /// Every entity type (expanded IRI) of the tenant's entities, where the store
    /// knows it cheaply (`None`: it does not).
    fn type_names(&self, tenant: &str) -> Result<Option<Vec<Arc<str>>>, StoreError> {
        let _ = tenant;
        Ok(None)
    }

    /// Number of entities of a tenant.
    fn count(&self, tenant: &str) -> Result<usize, StoreError>;

    /// Atomically reads the entity `id` and applies what `decide` returns. `Ok(None)` from
    /// `decide` writes nothing. `decide` may be called more than once (the last call's
    /// answer is applied), so it must not consume its inputs. The change is recorded
    /// in the history and logged with `origin`.
    fn modify(
        &self,
        tenant: &str,
        id: &str,
        decide: &mut Decide<'_>,
        origin: &Origin,
    ) -> Result<Option<Modified>, StoreError> {
        self.modify_opts(tenant, id, decide, ModifyOptions::by(origin.clone()))
    }

    /// [`EntityStore::modify`] with options.
    fn modify_opts(
        &self,
        tenant: &str,
        id: &str,
        decide: &mut Decide<'_>,
        opts: ModifyOptions,
    ) -> Result<Option<Modified>, StoreError>;

    /// Read-modify-writes many entities of one tenant as one step (bulk ingestion):
    /// `decide(i, current)` answers the new state of `ids[i]` (`None`: leave it).
    /// Results are index-aligned; a refused item (`Err` from `decide`) does not stop the
    /// others. Only a storage failure fails the call. The default runs one
    /// [`EntityStore::modify_opts`] per item; a store may do better (the embedded one
    /// locks the tenant and wakes the log once).
    fn modify_many(
        &self,
        tenant: &str,
        ids: &[String],
        decide: &mut ManyDecide<'_>,
        opts: ModifyOptions,
    ) -> Result<Vec<Result<Option<Modified>, ModelError>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let mut refused = None;
            let res = self.modify_opts(
                tenant,
                id,
                &mut |cur| match decide(i, cur) {
                    Ok(e) => Ok(e.map(Write::Put)),
                    Err(e) => {
                        refused = Some(e);
                        Ok(None)
                    }
                },
                opts.clone(),
            )?;
            out.push(match refused {
                Some(e) => Err(e),
                None => Ok(res),
            });
        }
        Ok(out)
    }

    /// Writes a document of a tenant's collection (subscriptions, rules, incidents...).
    fn put_doc(
        &self,
        tenant: &str,
        collection: &str,
        id: &str,
        value: Value,
        origin: &Origin,
    ) -> Result<Commit, StoreError>;
    fn delete_doc(
        &self,
        tenant: &str,
        collection: &str,
        id: &str,
        origin: &Origin,
    ) -> Result<Option<Commit>, StoreError>;
    fn get_doc(
        &self,
        tenant: &str,
        collection: &str,
        id: &str,
    ) -> Result<Option<Value>, StoreError>;
    /// The documents of one tenant's collection, in id order: (id, value).
    fn docs(&self, tenant: &str, collection: &str) -> Result<Vec<(String, Value)>, StoreError>;
    /// The tenants that hold documents in `collection` (for loading at start).
    fn doc_tenants(&self, collection: &str) -> Result<Vec<String>, StoreError>;

    /// The change feed: every durable entity change from now on, in log order.
    fn subscribe(&self) -> Feed {
        match self.subscribe_from(None) {
            Ok(f) => f,
            // From now on there is nothing to miss.
            Err(_) => unreachable_gap(),
        }
    }

    /// The change feed from just after log position `from` (`None`: from now on).
    /// Fails with [`FeedGap`] when the store no longer retains the changes that
    /// followed `from`: the subscriber then rebuilds from the current state.
    fn subscribe_from(&self, from: Option<u64>) -> Result<Feed, FeedGap>;

    /// Counters for `/metrics`.
    fn stats(&self) -> StoreStats;

    /// The history of this store, when it keeps one.
    fn history(&self) -> Option<&dyn HistoryStore> {
        None
    }
}

/// A feed that can never be had: only a store that breaks the contract of
/// [`EntityStore::subscribe_from`] (`None` never fails) gets here.
fn unreachable_gap() -> Feed {
    let (_tx, rx) = mpsc::channel(1);
    Feed::new(rx, Arc::new(AtomicBool::new(true)))
}

/// History (time series of attribute instances), written through the same log as the
/// entity state. Entity changes made through [`EntityStore::modify`] record their
/// history themselves; this trait adds direct history writes (bulk observations,
/// temporal provision) and reads, through [`HistoryReader`].
pub trait HistoryStore: Send + Sync {
    /// Logs `ops` durably (wait on the commit) and applies them.
    fn append_history(&self, tenant: &str, ops: Vec<HistOp>) -> Result<Commit, StoreError>;
    /// Reads of the history.
    fn reader(&self) -> &dyn HistoryReader;
}

/// Reads of the history: which entities and series have history, and a series' points
/// (ranges, last N, at given times) or aggregates. Series are numbered by the store.
pub trait HistoryReader: Send + Sync {
    /// The history of one entity (None when it has none).
    fn entity(&self, tenant: &str, id: &str) -> Option<EntityHistory>;
    /// Visits the entities of a tenant with history, in id order, starting after `after`.
    fn scan(
        &self,
        tenant: &str,
        after: Option<&str>,
        visit: &mut dyn FnMut(EntityHistory) -> ControlFlow<()>,
    );
    /// The points of series `id` that `sel` selects (range, last N), sorted by the
    /// selected time; unreadable blocks are skipped and reported in the second value.
    fn read(&self, id: u32, sel: &Selection) -> (Vec<Point>, Vec<TsdbError>);
    /// Aggregates of series `id` per period, when the store computes them itself
    /// (`None`: read the points and aggregate them).
    fn aggregate(
        &self,
        id: u32,
        sel: &Selection,
        origin: Option<i64>,
        end: Option<i64>,
        next: Option<&dyn Fn(i64) -> i64>,
        methods: &[AggMethod],
    ) -> Option<Result<Vec<Bucket>, TsdbError>>;
    /// The observed points of series `id` at exactly these times.
    fn observed_at(&self, id: u32, times: &[i64]) -> HashMap<i64, Point>;
    /// The key (tenant, entity, attribute, dataset) of series `id`.
    fn key(&self, id: u32) -> Option<SeriesKey>;
    /// Counters for `/metrics`.
    fn stats(&self) -> TsdbStats;
}

/// The embedded time-series engine is a history reader.
impl HistoryReader for Tsdb {
    fn entity(&self, tenant: &str, id: &str) -> Option<EntityHistory> {
        Tsdb::entity(self, tenant, id)
    }
    fn scan(
        &self,
        tenant: &str,
        after: Option<&str>,
        visit: &mut dyn FnMut(EntityHistory) -> ControlFlow<()>,
    ) {
        Tsdb::scan(self, tenant, after, visit)
    }
    fn read(&self, id: u32, sel: &Selection) -> (Vec<Point>, Vec<TsdbError>) {
        Tsdb::read(self, id, sel)
    }
    fn aggregate(
        &self,
        id: u32,
        sel: &Selection,
        origin: Option<i64>,
        end: Option<i64>,
        next: Option<&dyn Fn(i64) -> i64>,
        methods: &[AggMethod],
    ) -> Option<Result<Vec<Bucket>, TsdbError>> {
        Tsdb::aggregate(self, id, sel, origin, end, next, methods)
    }
    fn observed_at(&self, id: u32, times: &[i64]) -> HashMap<i64, Point> {
        Tsdb::observed_at(self, id, times)
    }
    fn key(&self, id: u32) -> Option<SeriesKey> {
        Tsdb::key(self, id)
    }
    fn stats(&self) -> TsdbStats {
        Tsdb::stats(self)
    }
}

/// The store's metrics, each defined once (see `citybrain-telemetry`).
pub mod metric {
    use citybrain_telemetry::MetricDef;
    pub static LOG_RECORDS: MetricDef = MetricDef::counter(
        "store_log_records",
        "Records written to the write-ahead log",
    );
    pub static LOG_BATCHES: MetricDef =
        MetricDef::counter("store_log_batches", "Group-commit batches (one fsync each)");
    pub static LOG_BYTES: MetricDef =
        MetricDef::counter("store_log_bytes", "Bytes written to the write-ahead log");
    pub static FSYNC_SECONDS: MetricDef =
        MetricDef::counter("store_fsync_seconds", "Time spent in fsync");
    pub static SNAPSHOTS: MetricDef = MetricDef::counter("store_snapshots", "Snapshots written");
    pub static DURABLE_LSN: MetricDef =
        MetricDef::gauge("store_durable_lsn", "Highest durable log sequence number");
    pub static ENTITIES: MetricDef =
        MetricDef::gauge("store_entities", "Entities held, all tenants");
    pub static FEED_SUBSCRIBERS: MetricDef =
        MetricDef::gauge("changefeed_subscribers", "Consumers of the change feed");
    pub static FEED_CUT: MetricDef = MetricDef::counter(
        "changefeed_cut",
        "Change-feed subscribers cut off for falling more than the feed capacity behind",
    );
    pub static DISK_FULL: MetricDef = MetricDef::gauge(
        "store_disk_full",
        "Whether the log is out of space now (then 1: writes are refused with 507 until space returns)",
    );
    pub static DISK_FULL_EVENTS: MetricDef =
        MetricDef::counter("store_disk_full_events", "Times the log ran out of space");
    pub static FAILED: MetricDef = MetricDef::gauge(
        "store_failed",
        "Whether a log write or sync failed other than for space (then 1: writes refused with 503 until a restart)",
    );
}

impl citybrain_telemetry::Metrics for StoreStats {
    fn visit(&self, out: &mut dyn FnMut(&'static citybrain_telemetry::MetricDef, f64)) {
        out(&metric::LOG_RECORDS, self.records as f64);
        out(&metric::LOG_BATCHES, self.batches as f64);
        out(&metric::LOG_BYTES, self.bytes as f64);
        out(&metric::FSYNC_SECONDS, self.fsync_micros_total as f64 / 1e6);
        out(&metric::SNAPSHOTS, self.snapshots as f64);
        out(&metric::DURABLE_LSN, self.durable_lsn as f64);
        out(&metric::ENTITIES, self.entities as f64);
        out(&metric::FEED_SUBSCRIBERS, self.feed_subscribers as f64);
        out(&metric::FEED_CUT, self.feed_cut as f64);
        out(&metric::DISK_FULL, f64::from(u8::from(self.disk_full)));
        out(&metric::DISK_FULL_EVENTS, self.disk_full_events as f64);
        out(&metric::FAILED, f64::from(u8::from(self.failed)));
    }
}

/// Storage counters for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreStats {
    pub records: u64,
    pub batches: u64,
    pub bytes: u64,
    pub fsync_micros_total: u64,
    pub snapshots: u64,
    pub durable_lsn: u64,
    pub feed_subscribers: u64,
    /// Subscribers cut off since start (see [`Feed`]).
    pub feed_cut: u64,
    pub entities: u64,
    /// The log is out of space now (writes refused until it is back).
    pub disk_full: bool,
    pub disk_full_events: u64,
    /// The log failed for another reason (writes refused until a restart).
    pub failed: bool,
}

/// Every tenant's documents of `collection`, (tenant, id, value): for loading a
/// component's state at start (subscriptions, rules, incidents), one tenant at a time.
pub fn load_collection(
    store: &dyn EntityStore,
    collection: &str,
) -> Result<Vec<(String, String, Value)>, StoreError> {
    let mut out = Vec::new();
    for tenant in store.doc_tenants(collection)? {
        for (id, v) in store.docs(&tenant, collection)? {
            out.push((tenant.clone(), id, v));
        }
    }
    Ok(out)
}
