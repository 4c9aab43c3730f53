//! The storage traits the domain depends on.

use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_model::q::KeyRange;
use citybrain_model::{Entity, ModelError};
use citybrain_tsdb::{HistOp, Tsdb};
use serde_json::Value;
use tokio::sync::watch;

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

/// A write that was accepted and will become durable; `wait` resolves once it is.
#[must_use = "a commit is only durable once waited for"]
#[derive(Debug)]
pub struct Commit {
    pub(crate) lsn: u64,
    pub(crate) durable: watch::Receiver<(u64, bool)>,
}

impl Commit {
    /// A commit that wrote nothing (already durable).
    pub fn none(durable: watch::Receiver<(u64, bool)>) -> Commit {
        Commit { lsn: 0, durable }
    }

    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// Waits until the write is on stable storage.
    pub async fn wait(mut self) -> Result<(), StoreError> {
        let lsn = self.lsn;
        let res = self
            .durable
            .wait_for(|(done, failed)| *failed || *done >= lsn)
            .await;
        match res {
            Ok(v) if v.1 => Err(StoreError::Failed),
            Ok(_) => Ok(()),
            Err(_) => Err(StoreError::ShuttingDown),
        }
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

/// Entity state and documents, per tenant. Tenants are created by their first write.
pub trait EntityStore: Send + Sync + 'static {
    /// True once the tenant has been written to.
    fn tenant_exists(&self, tenant: &str) -> bool;
    fn tenants(&self) -> Vec<String>;

    fn get(&self, tenant: &str, id: &str) -> Option<Arc<Entity>>;

    /// Visits entities in id order, starting strictly after `after`, restricted to entities
    /// having one of `types` (expanded IRIs) when given.
    fn scan(
        &self,
        tenant: &str,
        types: Option<&[String]>,
        after: Option<&str>,
        visit: &mut dyn FnMut(&Arc<Entity>) -> ControlFlow<()>,
    );

    /// Visits, in id order, the entities whose `attr` (default instance, scalar) lies in
    /// any of `ranges`. Returns false when the store keeps no value index; the caller then
    /// scans.
    fn scan_values(
        &self,
        tenant: &str,
        attr: &str,
        ranges: &[KeyRange],
        visit: &mut dyn FnMut(&Arc<Entity>) -> ControlFlow<()>,
    ) -> bool;

    /// Number of entities of a tenant.
    fn count(&self, tenant: &str) -> usize;

    /// Atomically reads the entity `id` and applies what `decide` returns. `Ok(None)` from
    /// `decide` writes nothing. `decide` may be called more than once (the last call's
    /// answer is applied), so it must not consume its inputs. The change is recorded
    /// in the history.
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
    fn get_doc(&self, tenant: &str, collection: &str, id: &str) -> Option<Value>;
    /// All documents of a collection, over all tenants: (tenant, id, value).
    fn docs(&self, collection: &str) -> Vec<(String, String, Value)>;

    /// The change feed: every durable entity change, in log order.
    fn subscribe(&self) -> tokio::sync::mpsc::UnboundedReceiver<Arc<Change>>;

    /// Counters for `/metrics`.
    fn stats(&self) -> StoreStats;

    /// The history of this store, when it keeps one.
    fn history(&self) -> Option<&dyn HistoryStore> {
        None
    }
}

/// History (time series of attribute instances), written through the same log as the
/// entity state. Entity changes made through [`EntityStore::modify`] record their
/// history themselves; this trait adds direct history writes (bulk observations,
/// temporal provision) and read access.
pub trait HistoryStore: Send + Sync {
    /// Logs `ops` durably (wait on the commit) and applies them.
    fn append_history(&self, tenant: &str, ops: Vec<HistOp>) -> Result<Commit, StoreError>;
    /// The engine, for reads.
    fn tsdb(&self) -> &Arc<Tsdb>;
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
    pub entities: u64,
}
