//! The engine: series registry, heads, checkpoints, compaction, retention and reads.

use citybrain_telemetry::InternalEvent;
use std::collections::BTreeMap;
use std::hash::BuildHasher as _;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::agg::{AggMethod, Aggregator, Bucket};
use crate::error::TsdbError;
use crate::point::{DatasetSel, HistOp, Point, SeriesKey, Val};
use crate::registry;
use crate::segment::{self, BlockRef, SegFile};

/// A retention and downsampling policy for the entities of one type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Expanded entity type the policy applies to (`*` for every type).
    pub entity_type: String,
    /// Raw points are kept this long (milliseconds).
    pub raw_ms: i64,
    /// After `raw_ms`, points are replaced by one mean per `period_ms` bucket...
    #[serde(default)]
    pub rollup_period_ms: Option<i64>,
    /// ...kept until this age (milliseconds); then dropped.
    #[serde(default)]
    pub rollup_keep_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct TsdbOptions {
    pub dir: PathBuf,
    /// Merge files once more than this many small files exist.
    pub compact_after_files: usize,
    /// Files larger than this are left alone by compaction (unless retention applies).
    pub small_file_bytes: u64,
    pub retention: Vec<Retention>,
}

impl TsdbOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            compact_after_files: 8,
            small_file_bytes: 64 << 20,
            retention: Vec::new(),
        }
    }
}

/// Which time a selection and an ordering refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeProp {
    /// `observedAt` (or arrival time), milliseconds.
    Observed,
    /// When the instance was recorded (`createdAt`/`modifiedAt`), microseconds.
    Recorded,
}

impl TimeProp {
    pub fn of(self, p: &Point) -> i64 {
        match self {
            TimeProp::Observed => p.t,
            TimeProp::Recorded => p.rec,
        }
    }
}

/// A time range on one time property, plus an optional "last N" limit.
#[derive(Debug, Clone)]
pub struct Selection {
    pub time: TimeProp,
    pub lower: Bound<i64>,
    pub upper: Bound<i64>,
    pub last_n: Option<usize>,
}

impl Selection {
    pub fn all() -> Self {
        Self {
            time: TimeProp::Observed,
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
            last_n: None,
        }
    }

    fn contains(&self, v: i64) -> bool {
        self.overlaps(v, v)
    }

    /// True when `[min, max]` meets the range.
    fn overlaps(&self, min: i64, max: i64) -> bool {
        (match self.lower {
            Bound::Included(l) => max >= l,
            Bound::Excluded(l) => max > l,
            Bound::Unbounded => true,
        }) && (match self.upper {
            Bound::Included(u) => min <= u,
            Bound::Excluded(u) => min < u,
            Bound::Unbounded => true,
        })
    }

    fn is_unbounded(&self) -> bool {
        matches!(self.lower, Bound::Unbounded) && matches!(self.upper, Bound::Unbounded)
    }
}

#[derive(Default)]
struct SeriesInner {
    head: Vec<Point>,
    blocks: Vec<BlockRef>,
    last_rec: i64,
    min_file: u64,
    /// The point with the greatest (t, rec), when known.
    /// Boxed: most series never need it, and it is the size of a point.
    latest: Option<Box<Option<Point>>>,
    /// What a series has only for a while (heads being written) or rarely (instance
    /// edits): behind one box, so that the millions of series without them pay 8 bytes.
    rare: Option<Box<Rare>>,
}

#[derive(Default)]
struct Rare {
    /// Heads being written by checkpoints (still readable), oldest first.
    frozen: Vec<Arc<Vec<Point>>>,
    /// Instance edits not yet folded into blocks: rec → replacement (None = deleted).
    overrides: BTreeMap<i64, Option<Point>>,
}

static NO_OVERRIDES: BTreeMap<i64, Option<Point>> = BTreeMap::new();

impl SeriesInner {
    fn is_empty(&self) -> bool {
        self.head.is_empty() && self.frozen().iter().all(|f| f.is_empty()) && self.blocks.is_empty()
    }

    fn frozen(&self) -> &[Arc<Vec<Point>>] {
        self.rare.as_ref().map_or(&[], |r| &r.frozen)
    }

    fn overrides(&self) -> &BTreeMap<i64, Option<Point>> {
        self.rare.as_ref().map_or(&NO_OVERRIDES, |r| &r.overrides)
    }

    fn overrides_mut(&mut self) -> &mut BTreeMap<i64, Option<Point>> {
        &mut self.rare.get_or_insert_default().overrides
    }

    fn set_overrides(&mut self, overrides: BTreeMap<i64, Option<Point>>) {
        if !overrides.is_empty() {
            self.rare.get_or_insert_default().overrides = overrides;
        }
    }

    fn freeze(&mut self, points: Arc<Vec<Point>>) {
        self.rare.get_or_insert_default().frozen.push(points);
    }

    /// Takes a frozen head away (written, or to go back); false if it is not there.
    fn unfreeze(&mut self, points: &Arc<Vec<Point>>) -> bool {
        let Some(rare) = self.rare.as_mut() else {
            return false;
        };
        let Some(i) = rare.frozen.iter().position(|f| Arc::ptr_eq(f, points)) else {
            return false;
        };
        rare.frozen.remove(i);
        self.tidy();
        true
    }

    /// Frees the rare parts once nothing is left in them.
    fn tidy(&mut self) {
        if self
            .rare
            .as_ref()
            .is_some_and(|r| r.frozen.is_empty() && r.overrides.is_empty())
        {
            self.rare = None;
        }
    }
}

struct Series {
    id: u32,
    key: SeriesKey,
    inner: Mutex<SeriesInner>,
    /// Whether the series holds nothing, refreshed whenever its lock is released, so
    /// listings need not take every series' lock.
    empty: std::sync::atomic::AtomicBool,
}

impl Series {
    fn new(id: u32, key: SeriesKey, inner: SeriesInner) -> Series {
        let empty = std::sync::atomic::AtomicBool::new(inner.is_empty());
        Series {
            id,
            key,
            inner: Mutex::new(inner),
            empty,
        }
    }

    fn lock(&self) -> SeriesGuard<'_> {
        SeriesGuard {
            series: self,
            inner: self.inner.lock(),
        }
    }

    fn is_empty(&self) -> bool {
        self.empty.load(Ordering::Acquire)
    }
}

/// The lock of a series; releasing it refreshes the series' `empty` flag.
struct SeriesGuard<'a> {
    series: &'a Series,
    inner: parking_lot::MutexGuard<'a, SeriesInner>,
}

impl std::ops::Deref for SeriesGuard<'_> {
    type Target = SeriesInner;
    fn deref(&self) -> &SeriesInner {
        &self.inner
    }
}

impl std::ops::DerefMut for SeriesGuard<'_> {
    fn deref_mut(&mut self) -> &mut SeriesInner {
        &mut self.inner
    }
}

impl Drop for SeriesGuard<'_> {
    fn drop(&mut self) {
        self.series
            .empty
            .store(self.inner.is_empty(), Ordering::Release);
    }
}

#[derive(Default)]
struct EntityEntry {
    types: Vec<Arc<str>>,
    scope: Option<Arc<str>>,
    has_meta: bool,
    /// Its number in the registry log plus one (0: not recorded there yet); only the
    /// registry writer (under the maintenance lock) sets it.
    reg: AtomicU32,
    series: Vec<u32>,
}

type EntityKey = (Arc<str>, Arc<str>);

#[derive(Default)]
struct State {
    /// Series numbers by key (the key is read from the series: no second copy; four
    /// bytes a series).
    by_key: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    series: Vec<Arc<Series>>,
    entities: BTreeMap<EntityKey, EntityEntry>,
    files: BTreeMap<u64, Arc<SegFile>>,
    next_file: u64,
    /// The LSN of the last *finished* checkpoint.
    checkpoint_lsn: u64,
    /// Every series' `last_rec` as of that checkpoint (by id; later series start at 0).
    ckpt_last_recs: Vec<i64>,
}

/// One series of an entity, as listed by [`Tsdb::entity`].
#[derive(Debug, Clone)]
pub struct SeriesInfo {
    pub id: u32,
    pub attr: Arc<str>,
    pub dataset: Option<Arc<str>>,
}

/// What the history knows about an entity.
#[derive(Debug, Clone)]
pub struct EntityHistory {
    pub id: Arc<str>,
    pub types: Vec<Arc<str>>,
    pub scope: Option<Arc<str>>,
    pub series: Vec<SeriesInfo>,
}

/// The history engine's metrics, each defined once (see `citybrain-telemetry`).
pub mod metric {
    use citybrain_telemetry::MetricDef;
    pub static SERIES: MetricDef = MetricDef::gauge(
        "history_series",
        "History series (attribute instances over time)",
    );
    pub static HEAD_POINTS: MetricDef = MetricDef::gauge(
        "history_head_points",
        "History points not yet in a segment file",
    );
    pub static FILES: MetricDef = MetricDef::gauge("history_files", "History segment files");
    pub static DISK_BYTES: MetricDef =
        MetricDef::gauge("history_disk_bytes", "Bytes of history segment files");
    pub static POINTS_WRITTEN: MetricDef = MetricDef::counter(
        "history_points_written",
        "History points written since start",
    );
    pub static CHECKPOINTS: MetricDef =
        MetricDef::counter("history_checkpoints", "History checkpoints written");
    pub static COMPACTIONS: MetricDef =
        MetricDef::counter("history_compactions", "History compactions");
    pub static CORRUPT_BLOCKS: MetricDef = MetricDef::counter(
        "history_corrupt_blocks",
        "History blocks found damaged (skipped, reported)",
    );
    pub static RETENTION_DROPPED: MetricDef = MetricDef::counter(
        "history_retention_dropped",
        "History points removed or rolled up by retention",
    );
}

impl citybrain_telemetry::Metrics for TsdbStats {
    fn visit(&self, out: &mut dyn FnMut(&'static citybrain_telemetry::MetricDef, f64)) {
        out(&metric::SERIES, self.series as f64);
        out(&metric::HEAD_POINTS, self.head_points as f64);
        out(&metric::FILES, self.files as f64);
        out(&metric::DISK_BYTES, self.disk_bytes as f64);
        out(&metric::POINTS_WRITTEN, self.points_written as f64);
        out(&metric::CHECKPOINTS, self.checkpoints as f64);
        out(&metric::COMPACTIONS, self.compactions as f64);
        out(&metric::CORRUPT_BLOCKS, self.corrupt_blocks as f64);
        out(&metric::RETENTION_DROPPED, self.retention_dropped as f64);
    }
}

/// A damaged history block met (at open, on a read, in compaction): logged with what
/// follows from it and counted (`history_corrupt_blocks_total`), in one place.
pub(crate) struct CorruptBlock<'a> {
    pub counter: &'a AtomicU64,
    pub error: &'a dyn std::fmt::Display,
    pub consequence: &'static str,
}

impl citybrain_telemetry::InternalEvent for CorruptBlock<'_> {
    fn emit(self) {
        tracing::error!(error = %self.error, "{}", self.consequence);
        self.counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TsdbStats {
    pub series: u64,
    pub head_points: u64,
    pub files: u64,
    pub disk_bytes: u64,
    pub points_written: u64,
    pub checkpoints: u64,
    pub compactions: u64,
    pub corrupt_blocks: u64,
    pub retention_dropped: u64,
}

/// What changed since the registry was last written, beyond the series that received
/// points (those are the checkpoint's frozen heads).
#[derive(Default)]
struct Dirty {
    /// Entities whose types or scope changed.
    entities: Vec<EntityKey>,
    /// Series whose `min_file` or instance edits changed.
    series: Vec<u32>,
}

/// The embedded time-series engine. See the crate documentation.
pub struct Tsdb {
    options: TsdbOptions,
    state: RwLock<State>,
    /// Serialises checkpoints and compactions.
    maintenance: Mutex<()>,
    /// The registry log (used under the maintenance lock).
    registry: Mutex<registry::Writer>,
    dirty: Mutex<Dirty>,
    /// Series whose head received points since the last checkpoint began (maybe twice,
    /// maybe emptied since): what the next checkpoint freezes, so that freezing costs
    /// what changed, not the number of series.
    touched: Mutex<Vec<u32>>,
    head_points: AtomicU64,
    points_written: AtomicU64,
    checkpoints: AtomicU64,
    compactions: AtomicU64,
    corrupt_blocks: AtomicU64,
    retention_dropped: AtomicU64,
    /// Checkpoints begun so far (each job's number is its place in this count).
    begun: AtomicU64,
    /// Jobs numbered below this fail when finished: an earlier one failed after they
    /// began, and its points went back to the heads, which they do not hold. Were one
    /// of them to succeed, the registry (and the store's log trimming) would move past
    /// points that are only in memory.
    poisoned_below: AtomicU64,
}

/// A checkpoint in progress: heads frozen at one log position, to be written.
pub struct FlushJob {
    seq: u64,
    lsn: u64,
    file: u64,
    frozen: Vec<(Arc<Series>, Arc<Vec<Point>>)>,
    /// The `last_rec` at `lsn` of every series whose `last_rec` may have changed since
    /// the previous checkpoint (those frozen, and those edited or cleared).
    last_recs: Vec<(u32, i64)>,
}

impl FlushJob {
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    pub fn points(&self) -> usize {
        self.frozen.iter().map(|(_, p)| p.len()).sum()
    }
}

fn sort_points(points: &mut [Point]) {
    points.sort_by_key(|p| (p.t, p.rec));
}

impl Tsdb {
    /// Held while the files on disk must not change (checkpoints and compactions wait).
    pub(crate) fn maintenance_lock(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.maintenance.lock()
    }

    /// The checkpoint LSN and the registered segment files (call under the
    /// maintenance lock for the pair to match the registry on disk).
    pub(crate) fn registered(&self) -> (u64, Vec<u64>) {
        let st = self.state.read();
        (st.checkpoint_lsn, st.files.keys().copied().collect())
    }

    /// Bytes of whole checkpoints in the registry log (call under the maintenance lock
    /// for it to match the file).
    pub(crate) fn registry_len(&self) -> u64 {
        self.registry.lock().committed_len()
    }

    /// Every log record up to this LSN is already in the segment files.
    pub fn checkpoint_lsn(&self) -> u64 {
        self.state.read().checkpoint_lsn
    }

    fn series_for(&self, key: &SeriesKey) -> Arc<Series> {
        // One read guard: a second (recursive) read would wait behind a queued writer.
        if let Some(s) = self.find(key) {
            return s;
        }
        let mut st = self.state.write();
        if let Some(s) = st.lookup(key) {
            return s.clone();
        }
        let id = st.series.len() as u32;
        let min_file = st.next_file;
        install_series(
            &mut st,
            id,
            key.clone(),
            SeriesInner {
                min_file,
                ..Default::default()
            },
        )
    }

    fn find(&self, key: &SeriesKey) -> Option<Arc<Series>> {
        self.state.read().lookup(key).cloned()
    }

    /// Applies one logged mutation. The caller logs `op` durably (or replays it).
    pub fn apply(&self, op: &HistOp) {
        match op {
            HistOp::Insert { key, points } => {
                if points.is_empty() {
                    return;
                }
                let s = self.series_for(key);
                let mut inner = s.lock();
                // Exact for a fresh head: a city has millions of series with one point.
                if inner.head.is_empty() {
                    self.touched.lock().push(s.id);
                    inner.head.reserve_exact(points.len());
                } else {
                    inner.head.reserve(points.len());
                }
                let start = inner.head.len();
                let mut newest: Option<usize> = None;
                for p in points {
                    let mut p = p.clone();
                    p.rec = p.rec.max(inner.last_rec.saturating_add(1));
                    inner.last_rec = p.rec;
                    if newest.is_none_or(|i| (p.t, p.rec) >= (inner.head[i].t, inner.head[i].rec)) {
                        newest = Some(inner.head.len());
                    }
                    inner.head.push(p);
                }
                // The latest point is kept when it is known (a series read since the
                // start), replaced in place: one copy per insert, not per point.
                if let Some(i) = newest.filter(|i| *i >= start) {
                    let cand = &inner.head[i];
                    let newer = match inner.latest.as_deref() {
                        Some(Some(l)) => (cand.t, cand.rec) >= (l.t, l.rec),
                        Some(None) => true,
                        None => false,
                    };
                    if newer {
                        let p = cand.clone();
                        match inner.latest.as_deref_mut() {
                            Some(slot) => *slot = Some(p),
                            None => inner.latest = Some(Box::new(Some(p))),
                        }
                    }
                }
                self.head_points
                    .fetch_add(points.len() as u64, Ordering::Relaxed);
                self.points_written
                    .fetch_add(points.len() as u64, Ordering::Relaxed);
            }
            HistOp::EntityMeta {
                tenant,
                entity,
                types,
                scope,
            } => {
                let mut st = self.state.write();
                let e = st
                    .entities
                    .entry((tenant.clone(), entity.clone()))
                    .or_default();
                e.types = types.clone();
                e.scope = scope.clone();
                e.has_meta = true;
                self.dirty
                    .lock()
                    .entities
                    .push((tenant.clone(), entity.clone()));
            }
            HistOp::DeleteEntity { tenant, entity } => {
                let mut st = self.state.write();
                let next_file = st.next_file;
                let key = (tenant.clone(), entity.clone());
                if let Some(e) = st.entities.get_mut(&key) {
                    e.has_meta = false;
                    e.types.clear();
                    e.scope = None;
                    let ids = e.series.clone();
                    for &id in &ids {
                        if let Some(s) = st.series.get(id as usize) {
                            self.clear_series(&mut s.lock(), next_file);
                        }
                    }
                    let mut dirty = self.dirty.lock();
                    dirty.entities.push(key);
                    dirty.series.extend(ids);
                }
            }
            HistOp::DeleteAttr {
                tenant,
                entity,
                attr,
                dataset,
            } => {
                let st = self.state.read();
                let next_file = st.next_file;
                let Some(e) = st.entities.get(&(tenant.clone(), entity.clone())) else {
                    return;
                };
                for &id in &e.series {
                    let Some(s) = st.series.get(id as usize) else {
                        continue;
                    };
                    let hit = s.key.attr == *attr
                        && match dataset {
                            DatasetSel::All => true,
                            DatasetSel::One(d) => s.key.dataset == *d,
                        };
                    if hit {
                        self.clear_series(&mut s.lock(), next_file);
                        self.dirty.lock().series.push(id);
                    }
                }
            }
            HistOp::DeleteInstance { key, rec } => {
                if let Some(s) = self.find(key) {
                    let mut inner = s.lock();
                    let before = inner.head.len();
                    inner.head.retain(|p| p.rec != *rec);
                    let removed = before - inner.head.len();
                    self.head_points
                        .fetch_sub(removed as u64, Ordering::Relaxed);
                    inner.overrides_mut().insert(*rec, None);
                    inner.latest = None;
                    self.dirty.lock().series.push(s.id);
                }
            }
            HistOp::ReplaceInstance { key, point } => {
                if let Some(s) = self.find(key) {
                    let mut inner = s.lock();
                    if let Some(p) = inner.head.iter_mut().find(|p| p.rec == point.rec) {
                        *p = point.clone();
                    } else {
                        inner.overrides_mut().insert(point.rec, Some(point.clone()));
                        self.dirty.lock().series.push(s.id);
                    }
                    inner.latest = None;
                }
            }
        }
    }

    fn clear_series(&self, inner: &mut SeriesInner, next_file: u64) {
        self.head_points
            .fetch_sub(inner.head.len() as u64, Ordering::Relaxed);
        inner.head.clear();
        inner.rare = None;
        inner.blocks.clear();
        inner.min_file = next_file;
        inner.latest = Some(Box::new(None));
    }

    /// Points not yet in a segment file.
    pub fn head_points(&self) -> u64 {
        self.head_points.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> TsdbStats {
        let st = self.state.read();
        TsdbStats {
            series: st.series.len() as u64,
            head_points: self.head_points.load(Ordering::Relaxed),
            files: st.files.len() as u64,
            disk_bytes: st.files.values().map(|f| f.size()).sum(),
            points_written: self.points_written.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            compactions: self.compactions.load(Ordering::Relaxed),
            corrupt_blocks: self.corrupt_blocks.load(Ordering::Relaxed),
            retention_dropped: self.retention_dropped.load(Ordering::Relaxed),
        }
    }

    /// Segment blocks referenced by all series, and the most any one series has
    /// (what compaction keeps bounded). Visits every series: for benchmarks and tests.
    pub fn block_counts(&self) -> (u64, usize) {
        let series = self.state.read().series.clone();
        series.iter().fold((0, 0), |(total, max), s| {
            let n = s.lock().blocks.len();
            (total + n as u64, max.max(n))
        })
    }

    /// The directory of the engine.
    pub fn dir(&self) -> &std::path::Path {
        &self.options.dir
    }
}

impl State {
    /// Records the `last_rec` of series `id` as of the latest checkpoint.
    fn set_ckpt_last_rec(&mut self, id: u32, last_rec: i64) {
        let i = id as usize;
        if self.ckpt_last_recs.len() <= i {
            self.ckpt_last_recs.resize(i + 1, 0);
        }
        self.ckpt_last_recs[i] = last_rec;
    }

    /// The series of a key.
    fn lookup(&self, key: &SeriesKey) -> Option<&Arc<Series>> {
        let series = &self.series;
        let id = self.by_key.find(self.hasher.hash_one(key), |&id| {
            series.get(id as usize).is_some_and(|s| s.key == *key)
        })?;
        series.get(*id as usize)
    }

    /// Indexes series `id` by its key (replacing what the key pointed to).
    fn index_key(&mut self, id: u32) {
        let State {
            by_key,
            series,
            hasher,
            ..
        } = self;
        let Some(s) = series.get(id as usize) else {
            return;
        };
        let hash = hasher.hash_one(&s.key);
        let found = by_key.find_mut(hash, |&other| {
            series.get(other as usize).is_some_and(|o| o.key == s.key)
        });
        match found {
            Some(slot) => *slot = id,
            None => {
                by_key.insert_unique(hash, id, |&other| {
                    series
                        .get(other as usize)
                        .map_or(0, |o| hasher.hash_one(&o.key))
                });
            }
        }
    }
}

fn install_series(st: &mut State, id: u32, key: SeriesKey, inner: SeriesInner) -> Arc<Series> {
    let s = Arc::new(Series::new(id, key.clone(), inner));
    let idx = id as usize;
    if st.series.len() <= idx {
        // Registry ids are dense; a gap would only come from a damaged registry.
        while st.series.len() < idx {
            let filler = st.series.len() as u32;
            st.series.push(Arc::new(Series::new(
                filler,
                SeriesKey {
                    tenant: Arc::from(""),
                    entity: Arc::from(""),
                    attr: Arc::from(""),
                    dataset: None,
                },
                SeriesInner::default(),
            )));
        }
        st.series.push(s.clone());
    } else {
        st.series[idx] = s.clone();
    }
    st.index_key(id);
    let e = st.entities.entry((key.tenant, key.entity)).or_default();
    if !e.series.contains(&id) {
        e.series.push(id);
    }
    s
}

fn block_ref(file: &Arc<SegFile>, e: &segment::IndexEntry) -> BlockRef {
    BlockRef {
        file: file.clone(),
        offset: e.offset,
        len: e.len,
        count: e.count,
        min_t: e.min_t,
        max_t: e.max_t,
        min_rec: e.min_rec,
        max_rec: e.max_rec,
    }
}

impl SegFile {
    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

mod maintenance;
mod open;
mod read;

#[cfg(test)]
mod tests;
