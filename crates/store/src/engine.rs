//! The embedded engine: in-memory state, a write-ahead log with group commit, and
//! snapshots, in one data directory.
//!
//! Write path: a writer takes its tenant's write lock, decides, appends the record to the
//! pending log buffer (which assigns the LSN), applies the change in memory and releases
//! the lock. The committer thread writes the pending buffer, calls `fdatasync`, then
//! advances the durable LSN (waking every writer of the batch) and publishes the batch's
//! changes on the feed. A write is acknowledged only once its LSN is durable; readers may
//! see a change a few hundred microseconds before it is durable (as with most engines
//! that group commits), never a change that is later lost *and* acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use citybrain_model::time::{Clock, SystemClock};
use citybrain_model::Entity;
use parking_lot::{Condvar, Mutex, RwLock};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::error::StoreError;
use crate::history;
use crate::snapshot::{self, SnapItem, SnapshotData};
use crate::state::TenantState;
use crate::traits::{
    BackupReport, Change, ChangeKind, Commit, Decide, EntityStore, HistoryStore, ManyDecide,
    Modified, ModifyOptions, Origin, StoreStats, Write,
};
use crate::wal::{self, WalEntry, WalOp};
use citybrain_tsdb::{FlushJob, HistOp, Retention, Tsdb, TsdbOptions};

/// Options of the embedded engine.
#[derive(Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    /// Take a snapshot (and drop older log segments) after this many log bytes.
    pub snapshot_after_bytes: u64,
    /// Keep a sorted index of scalar attribute values (fast `q` range queries).
    pub value_index: bool,
    /// Keep an R-tree of GeoProperty boxes (geo-queries without a scan).
    pub spatial_index: bool,
    /// Write the history heads to a segment file once they hold this many points.
    pub history_checkpoint_points: u64,
    /// Retention and downsampling of history, per entity type.
    pub history_retention: Vec<Retention>,
    /// Change times, deletion instances and history retention read this clock.
    pub clock: Arc<dyn Clock>,
    /// Changes a change-feed subscriber may fall behind before it is cut off, and
    /// changes retained for subscribers resuming from a position.
    pub feed_capacity: usize,
    /// Injected I/O failures of the log (tests of full disks and failed syncs); `None`
    /// in service.
    pub faults: Option<Faults>,
}

/// Where an injected failure may strike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// Before a batch is written to the log.
    LogWrite,
    /// After the batch is written, before its fsync succeeds.
    LogSync,
}

/// A fail point: answers the error to inject at a point, or `Ok` to go on.
pub type Faults = Arc<dyn Fn(FaultPoint) -> std::io::Result<()> + Send + Sync>;

/// How often a log that ran out of space tries again.
const DISK_FULL_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// Out of space (or quota): the batch can be written again once space returns.
fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("dir", &self.dir)
            .field("snapshot_after_bytes", &self.snapshot_after_bytes)
            .field("value_index", &self.value_index)
            .field("spatial_index", &self.spatial_index)
            .field("history_checkpoint_points", &self.history_checkpoint_points)
            .field("history_retention", &self.history_retention)
            .finish_non_exhaustive()
    }
}

impl StoreOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            snapshot_after_bytes: 256 * 1024 * 1024,
            value_index: true,
            spatial_index: true,
            history_checkpoint_points: 2_000_000,
            history_retention: Vec::new(),
            clock: Arc::new(SystemClock),
            feed_capacity: 65_536,
            faults: None,
        }
    }
}

struct Tenant {
    state: RwLock<TenantState>,
    /// Held while a history record is logged and applied (lock order: state, hist,
    /// pending), so that a checkpoint sees every logged history record applied.
    hist: Mutex<()>,
    written: AtomicBool,
}

/// Work for the history thread: finish a checkpoint, maybe telling the caller.
type HistJob = (
    FlushJob,
    Option<std::sync::mpsc::SyncSender<Result<(), String>>>,
);

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    next_lsn: u64,
    last_lsn: u64,
    changes: Vec<Arc<Change>>,
    shutdown: bool,
    snapshot_requested: bool,
    /// A snapshot asked for without stopping commits (a backup's).
    background_snapshot: bool,
    /// Tests: the committer stops where it is, as in a crash (nothing more is written).
    abandon: bool,
}

type DocKey = (String, String, String); // (collection, tenant, id)
use crate::snapshot::StoredDoc;

fn stored(c: String, t: String, id: String, v: Value) -> (DocKey, Arc<StoredDoc>) {
    let doc = Arc::new(StoredDoc {
        t: t.clone(),
        c: c.clone(),
        id: id.clone(),
        v,
    });
    ((c, t, id), doc)
}

struct Inner {
    dir: PathBuf,
    options: StoreOptions,
    tenants: RwLock<HashMap<Arc<str>, Arc<Tenant>>>,
    /// Documents; each shared with the snapshot being written (taking a snapshot
    /// copies pointers, not documents, while it holds the locks).
    docs: RwLock<BTreeMap<DocKey, Arc<StoredDoc>>>,
    pending: Mutex<Pending>,
    wake: Condvar,
    durable: watch::Sender<(u64, bool)>,
    failed: AtomicBool,
    feed: Mutex<feed::FeedHub>,
    records: AtomicU64,
    batches: AtomicU64,
    bytes: AtomicU64,
    fsync_micros: AtomicU64,
    snapshots: AtomicU64,
    history: Arc<Tsdb>,
    hist_tx: Mutex<Option<std::sync::mpsc::Sender<HistJob>>>,
    /// A background history checkpoint is queued or running.
    hist_busy: Arc<AtomicBool>,
    /// The thread finishing a snapshot the log's size asked for, while it runs.
    snap_thread: Mutex<Option<JoinHandle<()>>>,
    /// Held while snapshots and log segments are deleted, and by a backup for its
    /// whole copy (nothing it copies disappears under it).
    files: Mutex<()>,
    /// The log is out of space: new writes are refused (507) until a retry succeeds.
    disk_full: AtomicBool,
    disk_full_events: AtomicU64,
    /// Snapshots that failed (a backup waiting for one stops waiting).
    snapshot_failures: AtomicU64,
}

/// The embedded store. Cloning shares it.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    committer: Arc<Mutex<Option<JoinHandle<()>>>>,
    hist_thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// Borrowed twin of [`WalOp`] for encoding without cloning entities.
#[derive(Serialize)]
enum WalOpRef<'a> {
    #[serde(rename = "pe")]
    PutEntity {
        t: &'a str,
        e: &'a Entity,
        #[serde(skip_serializing_if = "is_false")]
        nh: bool,
    },
    #[serde(rename = "pa")]
    PatchEntity {
        t: &'a str,
        id: &'a str,
        #[serde(with = "citybrain_model::time::serde_dt")]
        m: &'a chrono::DateTime<chrono::Utc>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        a: Vec<&'a citybrain_model::entity::AttrEntry>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        r: Vec<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ty: Option<&'a [Arc<str>]>,
        #[serde(skip_serializing_if = "is_false")]
        nh: bool,
    },
    #[serde(rename = "de")]
    DeleteEntity {
        t: &'a str,
        id: &'a str,
        #[serde(skip_serializing_if = "is_false")]
        nh: bool,
        at: i64,
    },
    #[serde(rename = "pd")]
    PutDoc {
        t: &'a str,
        c: &'a str,
        id: &'a str,
        v: &'a Value,
    },
    #[serde(rename = "dd")]
    DeleteDoc { t: &'a str, c: &'a str, id: &'a str },
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize)]
struct WalRecordRef<'a> {
    lsn: u64,
    op: WalOpRef<'a>,
    /// Who wrote it (`Origin::actor`).
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<&'a str>,
    /// The request it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    rq: Option<&'a str>,
}

impl EmbeddedStore {
    /// Opens (or creates) a store in `options.dir`, recovering from the latest snapshot
    /// and the log.
    pub fn open(options: StoreOptions) -> Result<EmbeddedStore, StoreError> {
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir)?;
        // The history opens on a second thread while the snapshot loads: neither needs
        // the other, and at a million entities each takes seconds.
        let history_open = {
            let mut tsdb_options = TsdbOptions::new(dir.join("history"));
            tsdb_options.retention = options.history_retention.clone();
            JoinOnDrop(Some(
                std::thread::Builder::new()
                    .name("history-open".into())
                    .spawn(move || Tsdb::open(tsdb_options))?,
            ))
        };
        let mut tenants: HashMap<Arc<str>, Arc<Tenant>> = HashMap::new();
        let mut docs: BTreeMap<DocKey, Arc<StoredDoc>> = BTreeMap::new();
        let mut snap_lsn = 0u64;
        for (_, path) in snapshot::list(&dir)?.into_iter().rev() {
            let mut t_map: HashMap<Arc<str>, Arc<Tenant>> = HashMap::new();
            let mut d_map: BTreeMap<DocKey, Arc<StoredDoc>> = BTreeMap::new();
            let vi = Indexes::of(&options).bulk();
            let read = snapshot::read(&path, &mut |item| match item {
                SnapItem::Entity { t, mut e } => {
                    e.compact();
                    tenant_entry(&mut t_map, &t, vi)
                        .state
                        .write()
                        .put(Arc::new(e))
                }
                SnapItem::Doc { t, c, id, v } => {
                    tenant_entry(&mut t_map, &t, vi);
                    let (k, d) = stored(c, t, id, v);
                    d_map.insert(k, d);
                }
                SnapItem::End { .. } => {}
            })?;
            for t in t_map.values() {
                t.state.write().end_bulk();
            }
            match read {
                Some(lsn) => {
                    snap_lsn = lsn;
                    tenants = t_map;
                    docs = d_map;
                    tracing::info!(snapshot = %path.display(), lsn = snap_lsn, "loaded snapshot");
                    break;
                }
                None => tracing::warn!(snapshot = %path.display(), "ignoring incomplete snapshot"),
            }
        }
        let history = history_open
            .join()
            .ok_or_else(|| StoreError::Io(std::io::Error::other("opening the history panicked")))?;
        let history = Arc::new(history.map_err(history_error)?);
        let hist_lsn = history.checkpoint_lsn();
        if hist_lsn < snap_lsn {
            tracing::warn!(
                hist_lsn,
                snap_lsn,
                "history checkpoint is older than the snapshot; history in between is missing"
            );
        }
        let segments = wal::list_segments(&dir)?;
        let mut max_lsn = snap_lsn;
        let mut replayed = 0u64;
        let mut last_good: Option<(PathBuf, u64)> = None;
        // The first update record whose entity was missing (a damaged log).
        let mut broken: Option<u64> = None;
        for (i, (_, path)) in segments.iter().enumerate() {
            let vi = Indexes::of(&options);
            let (good_len, torn) = wal::read_segment(path, &mut |entry| {
                let rec = match entry {
                    WalEntry::History { lsn, ops } => {
                        max_lsn = max_lsn.max(lsn);
                        if lsn > hist_lsn {
                            replayed += 1;
                            for op in &ops {
                                history.apply(op);
                            }
                        }
                        return;
                    }
                    WalEntry::Record(rec) => rec,
                };
                if rec.lsn <= snap_lsn {
                    return;
                }
                max_lsn = max_lsn.max(rec.lsn);
                replayed += 1;
                match rec.op {
                    WalOp::PutEntity { t, mut e, nh } => {
                        e.compact();
                        let tenant = tenant_entry(&mut tenants, &t, vi);
                        let mut st = tenant.state.write();
                        if rec.lsn > hist_lsn && !nh {
                            let t: Arc<str> = Arc::from(t.as_str());
                            let before = st.get(&e.id).cloned();
                            for op in history::derive(&t, before.as_deref(), &e) {
                                history.apply(&op);
                            }
                        }
                        st.put(Arc::new(e))
                    }
                    WalOp::PatchEntity {
                        t,
                        id,
                        m,
                        a,
                        r,
                        ty,
                        nh,
                    } => {
                        let tenant = tenant_entry(&mut tenants, &t, vi);
                        let mut st = tenant.state.write();
                        let Some(before) = st.get(&id).cloned() else {
                            // Only a damaged log loses an update's base.
                            broken.get_or_insert(rec.lsn);
                            return;
                        };
                        let e = crate::delta::apply(
                            &before,
                            crate::delta::OwnedDelta {
                                modified_at: m,
                                set: a,
                                removed: r,
                                types: ty,
                            },
                        );
                        if rec.lsn > hist_lsn && !nh {
                            let t: Arc<str> = Arc::from(t.as_str());
                            for op in history::derive(&t, Some(&before), &e) {
                                history.apply(&op);
                            }
                        }
                        st.put(Arc::new(e))
                    }
                    WalOp::DeleteEntity { t, id, nh, at } => {
                        let tenant = tenant_entry(&mut tenants, &t, vi);
                        let mut st = tenant.state.write();
                        if let (true, false, Some(at), Some(before)) =
                            (rec.lsn > hist_lsn, nh, at, st.get(&id).cloned())
                        {
                            let t: Arc<str> = Arc::from(t.as_str());
                            for op in history::derive_delete(&t, &before, at) {
                                history.apply(&op);
                            }
                        }
                        st.delete(&id);
                    }
                    WalOp::PutDoc { t, c, id, v } => {
                        tenant_entry(&mut tenants, &t, vi);
                        let (k, d) = stored(c, t, id, v);
                        docs.insert(k, d);
                    }
                    WalOp::DeleteDoc { t, c, id } => {
                        docs.remove(&(c, t, id));
                    }
                }
            })?;
            if let Some(lsn) = broken {
                return Err(StoreError::Corrupt {
                    file: path.display().to_string(),
                    detail: format!("update record {lsn} names an entity the log never created"),
                });
            }
            let is_last = i + 1 == segments.len();
            if torn && !is_last {
                return Err(StoreError::Corrupt {
                    file: path.display().to_string(),
                    detail: format!(
                        "damaged log frame at byte {good_len} in a segment that is not the last"
                    ),
                });
            }
            if torn {
                tracing::warn!(segment = %path.display(), at = good_len, "cutting a torn log tail (never acknowledged)");
            }
            if is_last {
                last_good = Some((path.clone(), good_len));
            }
        }
        let file = match last_good {
            Some((path, len)) => wal::reopen_for_append(&path, len)?,
            None => wal::create_segment(&dir, max_lsn + 1)?,
        };
        tracing::info!(dir = %dir.display(), lsn = max_lsn, replayed, tenants = tenants.len(), "store opened");
        let (durable, _) = watch::channel((max_lsn, false));
        let (hist_tx, hist_rx) = std::sync::mpsc::channel::<HistJob>();
        let hist_busy = Arc::new(AtomicBool::new(false));
        let feed_capacity = options.feed_capacity;
        let inner = Arc::new(Inner {
            dir: dir.clone(),
            options,
            tenants: RwLock::new(tenants),
            docs: RwLock::new(docs),
            pending: Mutex::new(Pending {
                next_lsn: max_lsn + 1,
                last_lsn: max_lsn,
                ..Default::default()
            }),
            wake: Condvar::new(),
            durable,
            failed: AtomicBool::new(false),
            feed: Mutex::new(feed::FeedHub::new(feed_capacity, max_lsn)),
            records: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            fsync_micros: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            snap_thread: Mutex::new(None),
            files: Mutex::new(()),
            disk_full: AtomicBool::new(false),
            disk_full_events: AtomicU64::new(0),
            snapshot_failures: AtomicU64::new(0),
            history: history.clone(),
            hist_tx: Mutex::new(Some(hist_tx)),
            hist_busy: hist_busy.clone(),
        });
        let worker = inner.clone();
        let clock = inner.options.clock.clone();
        let handle = std::thread::Builder::new()
            .name("citybrain-wal".into())
            .spawn(move || committer(worker, file))?;
        let hist_thread = std::thread::Builder::new()
            .name("citybrain-history".into())
            .spawn(move || history_writer(history, hist_rx, hist_busy, clock))?;
        Ok(EmbeddedStore {
            inner,
            committer: Arc::new(Mutex::new(Some(handle))),
            hist_thread: Arc::new(Mutex::new(Some(hist_thread))),
        })
    }

    /// Tests: stops as a crash would (no final snapshot, nothing pending written), but
    /// waits for the store's threads to stop writing files first, so that reopening
    /// the directory does not race them.
    #[cfg(test)]
    fn crash(self) {
        self.inner.pending.lock().abandon = true;
        self.inner.wake.notify_one();
        if let Some(h) = self.committer.lock().take() {
            let _ = h.join();
        }
        let snap = self.inner.snap_thread.lock().take();
        if let Some(h) = snap {
            let _ = h.join();
        }
        self.stop_history_thread();
        std::mem::forget(self);
    }

    /// Asks for a snapshot now (it runs on the committer thread).
    pub fn request_snapshot(&self) {
        self.inner.pending.lock().snapshot_requested = true;
        self.inner.wake.notify_one();
    }

    /// Asks for a snapshot soon, finished in the background while commits go on (one
    /// already running counts).
    pub(crate) fn request_background_snapshot(&self) {
        self.inner.pending.lock().background_snapshot = true;
        self.inner.wake.notify_one();
    }

    /// Flushes, takes a final snapshot and stops the committer. Idempotent.
    pub fn close(&self) {
        {
            let mut p = self.inner.pending.lock();
            p.shutdown = true;
        }
        self.inner.wake.notify_one();
        if let Some(h) = self.committer.lock().take() {
            let _ = h.join();
        }
        self.stop_history_thread();
    }

    /// The history thread finishes the checkpoints it was given, then stops.
    fn stop_history_thread(&self) {
        self.inner.hist_tx.lock().take();
        if let Some(h) = self.hist_thread.lock().take() {
            let _ = h.join();
        }
    }

    fn stats_inner(&self) -> StoreStats {
        let i = &self.inner;
        let (feed_subscribers, feed_cut) = {
            let f = i.feed.lock();
            (f.subscribers() as u64, f.cut)
        };
        StoreStats {
            records: i.records.load(Ordering::Relaxed),
            batches: i.batches.load(Ordering::Relaxed),
            bytes: i.bytes.load(Ordering::Relaxed),
            fsync_micros_total: i.fsync_micros.load(Ordering::Relaxed),
            snapshots: i.snapshots.load(Ordering::Relaxed),
            durable_lsn: i.durable.borrow().0,
            feed_subscribers,
            feed_cut,
            entities: i
                .tenants
                .read()
                .values()
                .map(|t| t.state.read().len() as u64)
                .sum(),
            disk_full: i.disk_full.load(Ordering::Relaxed),
            disk_full_events: i.disk_full_events.load(Ordering::Relaxed),
            failed: i.failed.load(Ordering::Relaxed),
        }
    }

    /// The engine's own time-series engine (the export tool and tests; the domain
    /// reads history through [`HistoryStore::reader`]).
    pub fn tsdb(&self) -> &Arc<Tsdb> {
        &self.inner.history
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn tenant(&self, t: &str) -> Option<Arc<Tenant>> {
        self.inner.tenants.read().get(t).cloned()
    }

    fn tenant_or_create(&self, t: &str) -> Arc<Tenant> {
        if let Some(x) = self.tenant(t) {
            return x;
        }
        tenant_entry(
            &mut self.inner.tenants.write(),
            t,
            Indexes::of(&self.inner.options),
        )
        .clone()
    }

    /// Whether a write may be logged now: not after a log failure, not while the log
    /// is out of space (refused before anything changes in memory).
    pub(crate) fn writable(&self) -> Result<(), StoreError> {
        if self.inner.failed.load(Ordering::Acquire) {
            return Err(StoreError::Failed);
        }
        if self.inner.disk_full.load(Ordering::Acquire) {
            return Err(StoreError::DiskFull);
        }
        Ok(())
    }

    /// Appends a binary history record to the pending buffer; returns its LSN.
    fn append_hist(&self, ops: &[HistOp]) -> Result<u64, StoreError> {
        self.writable()?;
        let mut p = self.inner.pending.lock();
        if p.shutdown {
            return Err(StoreError::ShuttingDown);
        }
        let lsn = p.next_lsn;
        wal::encode_history(lsn, ops, &mut p.buf)?;
        p.next_lsn += 1;
        p.last_lsn = lsn;
        drop(p);
        self.inner.wake.notify_one();
        Ok(lsn)
    }

    /// Appends a record to the pending buffer; returns its LSN.
    fn append(
        &self,
        op: WalOpRef<'_>,
        origin: &Origin,
        change: Option<Change>,
    ) -> Result<u64, StoreError> {
        let lsn = self.append_quiet(op, origin, change)?;
        self.inner.wake.notify_one();
        Ok(lsn)
    }

    /// [`Self::append`] without waking the log writer (batches wake it once).
    fn append_quiet(
        &self,
        op: WalOpRef<'_>,
        origin: &Origin,
        change: Option<Change>,
    ) -> Result<u64, StoreError> {
        // Only a failed log stops an append here: a full disk is checked once when an
        // operation starts (`writable`), so that a batch is refused whole or logged
        // whole (its records then wait behind the stalled batch, like any write).
        if self.inner.failed.load(Ordering::Acquire) {
            return Err(StoreError::Failed);
        }
        let mut p = self.inner.pending.lock();
        if p.shutdown {
            return Err(StoreError::ShuttingDown);
        }
        let lsn = p.next_lsn;
        let rec = WalRecordRef {
            lsn,
            op,
            by: origin.actor.as_deref(),
            rq: origin.request_id.as_deref(),
        };
        wal::encode(&rec, &mut p.buf)?;
        p.next_lsn += 1;
        p.last_lsn = lsn;
        if let Some(mut c) = change {
            c.lsn = lsn;
            p.changes.push(Arc::new(c));
        }
        drop(p);
        Ok(lsn)
    }

    fn commit(&self, lsn: u64) -> Commit {
        Commit::watermark(lsn, self.inner.durable.subscribe())
    }
}

/// Which indexes a tenant's state keeps, and whether it is being loaded in bulk.
/// A thread joined when dropped: an open that fails early does not leave the history
/// opening (and removing the files it finds unregistered) behind it.
struct JoinOnDrop<T>(Option<std::thread::JoinHandle<T>>);

impl<T> JoinOnDrop<T> {
    /// Its result; `None` if it panicked.
    fn join(mut self) -> Option<T> {
        self.0.take()?.join().ok()
    }
}

impl<T> Drop for JoinOnDrop<T> {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

#[derive(Clone, Copy)]
struct Indexes {
    values: bool,
    spatial: bool,
    bulk: bool,
}

impl Indexes {
    fn of(o: &StoreOptions) -> Self {
        Self {
            values: o.value_index,
            spatial: o.spatial_index,
            bulk: false,
        }
    }

    /// For a snapshot load: the state collects its spatial entries for one packing.
    fn bulk(self) -> Self {
        Self { bulk: true, ..self }
    }
}

fn tenant_entry<'a>(
    map: &'a mut HashMap<Arc<str>, Arc<Tenant>>,
    t: &str,
    ix: Indexes,
) -> &'a Arc<Tenant> {
    map.entry(Arc::from(t)).or_insert_with(|| {
        let mut state = TenantState::new(ix.values, ix.spatial);
        if ix.bulk {
            state.begin_bulk();
        }
        Arc::new(Tenant {
            state: RwLock::new(state),
            hist: Mutex::new(()),
            written: AtomicBool::new(true),
        })
    })
}

/// The committer thread: group commit, change publication, snapshots.
fn committer(inner: Arc<Inner>, mut file: File) {
    let mut bytes_since_snapshot = 0u64;
    loop {
        let (buf, last, changes, snapshot_now, snapshot_soon, shutdown) = {
            let mut p = inner.pending.lock();
            while p.buf.is_empty()
                && !p.shutdown
                && !p.snapshot_requested
                && !p.background_snapshot
                && !p.abandon
            {
                inner.wake.wait(&mut p);
            }
            if p.abandon {
                return;
            }
            let snap = std::mem::take(&mut p.snapshot_requested);
            let bg = std::mem::take(&mut p.background_snapshot);
            (
                std::mem::take(&mut p.buf),
                p.last_lsn,
                std::mem::take(&mut p.changes),
                snap,
                bg,
                p.shutdown,
            )
        };
        bytes_since_snapshot += buf.len() as u64;
        if !flush(&inner, &mut file, &buf, last, changes) {
            return;
        }
        if inner.failed.load(Ordering::Acquire) {
            // A flush inside a snapshot or checkpoint failed the log: nothing more
            // may be made durable or snapshotted.
            return;
        }
        let hist_due = inner.history.head_points() >= inner.options.history_checkpoint_points;
        if hist_due && !inner.hist_busy.load(Ordering::Acquire) && !shutdown && !snapshot_now {
            if let Err(error) = history_checkpoint(&inner, &mut file) {
                tracing::error!(%error, "could not start a history checkpoint");
            }
        }
        if inner.failed.load(Ordering::Acquire) {
            return;
        }
        // Asked for (or at shutdown), a snapshot is finished before going on; one the
        // log's size calls for is finished in the background while commits go on.
        let asked = snapshot_now || shutdown;
        if asked || snapshot_soon || bytes_since_snapshot >= inner.options.snapshot_after_bytes {
            let running = {
                let mut t = inner.snap_thread.lock();
                match t.take() {
                    Some(h) if !asked && !h.is_finished() => {
                        *t = Some(h);
                        true
                    }
                    Some(h) => {
                        let _ = h.join();
                        false
                    }
                    None => false,
                }
            };
            if !running {
                match take_snapshot(&inner, &mut file, !asked) {
                    Ok(()) => bytes_since_snapshot = 0,
                    Err(error) => {
                        inner.snapshot_failures.fetch_add(1, Ordering::Release);
                        tracing::error!(%error, "snapshot failed; the log is kept");
                    }
                }
                if inner.failed.load(Ordering::Acquire) {
                    return;
                }
            }
        }
        if shutdown {
            return;
        }
    }
}

/// Writes and syncs one batch, then makes it visible as durable. Returns false after a
/// failure (the store then refuses writes: acknowledging without durability is worse).
///
/// Out of space, the batch's bytes are cut off the log again (whatever reached the
/// file) and the same batch is written and synced anew every [`DISK_FULL_RETRY`] until
/// space returns; meanwhile new writes are refused with `DiskFull` and the writers of
/// this batch wait. A rewrite and a new fsync never trust pages a failed fsync may
/// have dropped. Any other write or sync error fails the store (retrying an fsync
/// after an I/O error may report success for lost data).
fn flush(inner: &Inner, file: &mut File, buf: &[u8], last: u64, changes: Vec<Arc<Change>>) -> bool {
    if !buf.is_empty() {
        let started = Instant::now();
        let mut full = false;
        loop {
            let start = match file.stream_position() {
                Ok(p) => p,
                Err(error) => return fail(inner, &error),
            };
            match write_batch(inner, file, buf) {
                Ok(()) => break,
                Err(error) if is_out_of_space(&error) => {
                    let cut = file
                        .set_len(start)
                        .and_then(|()| file.seek(std::io::SeekFrom::Start(start)).map(|_| ()));
                    if let Err(error) = cut {
                        return fail(inner, &error);
                    }
                    if !full {
                        full = true;
                        inner.disk_full.store(true, Ordering::Release);
                        inner.disk_full_events.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%error, "the log's disk is full; writes are refused until space is freed, then resume");
                    }
                    {
                        let p = inner.pending.lock();
                        if p.shutdown || p.abandon {
                            return fail(inner, &error);
                        }
                    }
                    std::thread::sleep(DISK_FULL_RETRY);
                }
                Err(error) => return fail(inner, &error),
            }
        }
        if full {
            inner.disk_full.store(false, Ordering::Release);
            tracing::warn!("the log has space again; writes resume");
        }
        inner
            .fsync_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        inner.batches.fetch_add(1, Ordering::Relaxed);
        inner
            .records
            .fetch_add(changes.len() as u64, Ordering::Relaxed);
        inner.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
    }
    // Published before the writers are told it is durable: once a write is
    // acknowledged, its change is on the feed (a shutdown's drain sees it).
    if !changes.is_empty() {
        let mut feed = inner.feed.lock();
        for c in changes {
            feed.publish(c);
        }
    }
    inner.durable.send_modify(|d| d.0 = d.0.max(last));
    true
}

fn write_batch(inner: &Inner, file: &mut File, buf: &[u8]) -> std::io::Result<()> {
    let fault = |at: FaultPoint| inner.options.faults.as_ref().map_or(Ok(()), |f| f(at));
    fault(FaultPoint::LogWrite)?;
    file.write_all(buf)?;
    fault(FaultPoint::LogSync)?;
    file.sync_data()
}

/// A log failure other than space: the store refuses writes from now on.
fn fail(inner: &Inner, error: &std::io::Error) -> bool {
    tracing::error!(%error, "write-ahead log write failed; refusing further writes");
    inner.failed.store(true, Ordering::Release);
    inner.disk_full.store(false, Ordering::Release);
    inner.durable.send_modify(|d| d.1 = true);
    false
}

/// Takes a snapshot: the state is captured and the log moves to a new segment here, on
/// the committer; waiting for the history checkpoint, writing the snapshot file and
/// dropping the older log run on a thread of their own when `background` (commits go
/// on meanwhile; a crash before the end recovers from the previous snapshot and the
/// whole log, which is only dropped once the new snapshot is on disk).
fn take_snapshot(inner: &Arc<Inner>, file: &mut File, background: bool) -> Result<(), StoreError> {
    if inner.failed.load(Ordering::Acquire) {
        return Err(StoreError::Failed);
    }
    // Hold every tenant's read lock and the docs lock, then the pending lock: no writer
    // is between "append" and "apply", so the state is exactly the log up to `lsn`.
    let tenants: Vec<(Arc<str>, Arc<Tenant>)> = inner
        .tenants
        .read()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let guards: Vec<_> = tenants
        .iter()
        .map(|(k, t)| (k.clone(), t.state.read()))
        .collect();
    let hist_guards: Vec<_> = tenants.iter().map(|(_, t)| t.hist.lock()).collect();
    let docs_guard = inner.docs.read();
    let mut p = inner.pending.lock();
    let lsn = p.last_lsn;
    let buf = std::mem::take(&mut p.buf);
    let changes = std::mem::take(&mut p.changes);
    drop(p);
    let hist_job = inner.history.begin_checkpoint(lsn);
    drop(hist_guards);
    let mut data = SnapshotData {
        lsn,
        entities: Vec::new(),
        docs: Vec::new(),
    };
    for (k, g) in &guards {
        data.entities.push((k.clone(), g.iter().cloned().collect()));
    }
    data.docs = docs_guard.values().cloned().collect();
    drop(docs_guard);
    drop(guards);
    if !flush(inner, file, &buf, lsn, changes) {
        return Err(StoreError::Failed);
    }
    // Later records go to a new segment; the older ones stay until the end.
    *file = wal::create_segment(&inner.dir, lsn + 1)?;
    if !background {
        return finish_snapshot(inner, hist_job, &data);
    }
    let inner2 = inner.clone();
    let spawned = std::thread::Builder::new()
        .name("citybrain-snap".into())
        .spawn(move || {
            hist_writer::background_priority();
            if let Err(error) = finish_snapshot(&inner2, hist_job, &data) {
                inner2.snapshot_failures.fetch_add(1, Ordering::Release);
                tracing::error!(%error, "snapshot failed; the log is kept");
            }
        });
    match spawned {
        Ok(h) => {
            *inner.snap_thread.lock() = Some(h);
            Ok(())
        }
        Err(e) => Err(StoreError::Io(e)),
    }
}

/// The rest of a snapshot: the history checkpoint, the snapshot file, the older log.
fn finish_snapshot(
    inner: &Inner,
    hist_job: FlushJob,
    data: &SnapshotData,
) -> Result<(), StoreError> {
    let lsn = data.lsn;
    // The log before `lsn` may only go once the history holds it too.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let sent = inner
        .hist_tx
        .lock()
        .as_ref()
        .is_some_and(|h| h.send((hist_job, Some(tx))).is_ok());
    let hist_ok = sent && matches!(rx.recv(), Ok(Ok(())));
    if !hist_ok {
        return Err(StoreError::Corrupt {
            file: "history".into(),
            detail: "history checkpoint failed; the log is kept".into(),
        });
    }
    snapshot::write(&inner.dir, data)?;
    let files = inner.files.lock();
    for (first, path) in wal::list_segments(&inner.dir)? {
        if first <= lsn {
            wal::remove_gently(&path)?;
        }
    }
    for (snap_lsn, path) in snapshot::list(&inner.dir)? {
        if snap_lsn < lsn {
            std::fs::remove_file(path)?;
        }
    }
    wal::sync_dir(&inner.dir)?;
    drop(files);
    // Counted once the older files are gone (a backup waiting for a fresh snapshot
    // then copies only what it needs).
    inner.snapshots.fetch_add(1, Ordering::Release);
    let entities: usize = data.entities.iter().map(|(_, l)| l.len()).sum();
    tracing::info!(lsn, entities, "snapshot written");
    Ok(())
}

impl Drop for Inner {
    fn drop(&mut self) {
        tracing::debug!(dir = %self.dir.display(), "store dropped");
    }
}

mod backup;
mod batch;
pub use backup::{restore, MANIFEST as BACKUP_MANIFEST};
mod entity_store;
mod feed;
mod hist_writer;

use hist_writer::{history_checkpoint, history_error, history_writer};

#[cfg(test)]
mod tests;
