//! The engine: series registry, heads, checkpoints, compaction, retention and reads.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::agg::{AggMethod, Aggregator, Bucket};
use crate::error::TsdbError;
use crate::point::{DatasetSel, HistOp, Point, SeriesKey, Val};
use crate::registry::{self, EntityRec, PointRec, Registry, SeriesRec};
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
        (match self.lower {
            Bound::Included(l) => v >= l,
            Bound::Excluded(l) => v > l,
            Bound::Unbounded => true,
        }) && (match self.upper {
            Bound::Included(u) => v <= u,
            Bound::Excluded(u) => v < u,
            Bound::Unbounded => true,
        })
    }

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
    /// Heads being written by checkpoints (still readable), oldest first.
    frozen: Vec<Arc<Vec<Point>>>,
    blocks: Vec<BlockRef>,
    last_rec: i64,
    /// `last_rec` as of the latest checkpoint start.
    ckpt_last_rec: i64,
    min_file: u64,
    overrides: BTreeMap<i64, Option<Point>>,
    /// The point with the greatest (t, rec), when known.
    latest: Option<Option<Point>>,
}

impl SeriesInner {
    fn is_empty(&self) -> bool {
        self.head.is_empty() && self.frozen.iter().all(|f| f.is_empty()) && self.blocks.is_empty()
    }
}

struct Series {
    id: u32,
    key: SeriesKey,
    inner: Mutex<SeriesInner>,
}

#[derive(Default, Clone)]
struct EntityEntry {
    types: Vec<Arc<str>>,
    scope: Option<Arc<str>>,
    has_meta: bool,
    series: Vec<u32>,
}

type EntityKey = (Arc<str>, Arc<str>);

#[derive(Default)]
struct State {
    by_key: HashMap<SeriesKey, u32>,
    series: Vec<Arc<Series>>,
    entities: BTreeMap<EntityKey, EntityEntry>,
    files: BTreeMap<u64, Arc<SegFile>>,
    next_file: u64,
    checkpoint_lsn: u64,
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

/// The embedded time-series engine. See the crate documentation.
pub struct Tsdb {
    options: TsdbOptions,
    state: RwLock<State>,
    /// Serialises checkpoints and compactions.
    maintenance: Mutex<()>,
    head_points: AtomicU64,
    points_written: AtomicU64,
    checkpoints: AtomicU64,
    compactions: AtomicU64,
    corrupt_blocks: AtomicU64,
    retention_dropped: AtomicU64,
}

/// A checkpoint in progress: heads frozen at one log position, to be written.
pub struct FlushJob {
    lsn: u64,
    file: u64,
    frozen: Vec<(Arc<Series>, Arc<Vec<Point>>)>,
}

impl FlushJob {
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    pub fn points(&self) -> usize {
        self.frozen.iter().map(|(_, p)| p.len()).sum()
    }
}

fn to_rec(p: &Point) -> PointRec {
    let (f, i, d) = match &p.v {
        Val::F(f) => (Some(*f), None, None),
        Val::I(i) => (None, Some(*i), None),
        Val::D(d) => (None, None, Some(d.to_string())),
    };
    PointRec {
        t: p.t,
        rec: p.rec,
        observed: p.observed,
        unit: p.unit.as_deref().map(str::to_string),
        f,
        i,
        d,
    }
}

fn from_rec(r: &PointRec) -> Point {
    let v = match (&r.f, &r.i, &r.d) {
        (Some(f), _, _) => Val::F(*f),
        (_, Some(i), _) => Val::I(*i),
        (_, _, Some(d)) => Val::D(Arc::from(d.as_str())),
        _ => Val::D(Arc::from("null")),
    };
    Point {
        t: r.t,
        rec: r.rec,
        observed: r.observed,
        unit: r.unit.as_deref().map(Arc::from),
        v,
    }
}

fn sort_points(points: &mut [Point]) {
    points.sort_by_key(|p| (p.t, p.rec));
}

impl Tsdb {
    /// Opens (or creates) the engine in `options.dir`. Damaged blocks are reported in
    /// the log and counted, never fatal.
    pub fn open(options: TsdbOptions) -> Result<Tsdb, TsdbError> {
        std::fs::create_dir_all(&options.dir)?;
        let reg = registry::load(&options.dir)?.unwrap_or(Registry {
            version: registry::REGISTRY_VERSION,
            next_file: 1,
            ..Default::default()
        });
        let db = Tsdb {
            options,
            state: RwLock::new(State::default()),
            maintenance: Mutex::new(()),
            head_points: AtomicU64::new(0),
            points_written: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            corrupt_blocks: AtomicU64::new(0),
            retention_dropped: AtomicU64::new(0),
        };
        {
            let mut st = db.state.write();
            st.checkpoint_lsn = reg.checkpoint_lsn;
            st.next_file = reg.next_file.max(1);
            for s in &reg.series {
                let key = SeriesKey {
                    tenant: Arc::from(s.tenant.as_str()),
                    entity: Arc::from(s.entity.as_str()),
                    attr: Arc::from(s.attr.as_str()),
                    dataset: s.dataset.as_deref().map(Arc::from),
                };
                let inner = SeriesInner {
                    last_rec: s.last_rec,
                    ckpt_last_rec: s.last_rec,
                    min_file: s.min_file,
                    overrides: s
                        .overrides
                        .iter()
                        .map(|(rec, p)| (*rec, p.as_ref().map(from_rec)))
                        .collect(),
                    ..Default::default()
                };
                install_series(&mut st, s.id, key, inner);
            }
            for e in &reg.entities {
                let entry = st
                    .entities
                    .entry((Arc::from(e.tenant.as_str()), Arc::from(e.id.as_str())))
                    .or_default();
                entry.types = e.types.iter().map(|t| Arc::from(t.as_str())).collect();
                entry.scope = e.scope.as_deref().map(Arc::from);
                entry.has_meta = true;
            }
            for &fid in &reg.files {
                let (file, index, problems) = segment::open_file(&db.options.dir, fid)?;
                for p in problems {
                    db.corrupt_blocks.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %p, "history segment damaged; readable blocks are kept");
                }
                for e in index {
                    let Some(series) = st.series.get(e.series as usize).cloned() else {
                        continue;
                    };
                    let mut inner = series.inner.lock();
                    if fid < inner.min_file {
                        continue;
                    }
                    inner.blocks.push(BlockRef {
                        file: file.clone(),
                        offset: e.offset,
                        len: e.len,
                        count: e.count,
                        min_t: e.min_t,
                        max_t: e.max_t,
                        min_rec: e.min_rec,
                        max_rec: e.max_rec,
                    });
                }
                st.files.insert(fid, file);
            }
            // Files a crash left behind (written, never registered): the log still has
            // their points, so they go.
            for entry in std::fs::read_dir(&db.options.dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let orphan = name
                    .strip_prefix("seg-")
                    .and_then(|n| n.strip_suffix(".cbts").or_else(|| n.strip_suffix(".tmp")))
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|id| !st.files.contains_key(&id));
                if orphan {
                    tracing::warn!(file = %name, "removing an unregistered history segment");
                    std::fs::remove_file(entry.path())?;
                }
            }
        }
        Ok(db)
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
        if let Some(&id) = st.by_key.get(key) {
            if let Some(s) = st.series.get(id as usize) {
                return s.clone();
            }
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
        let st = self.state.read();
        let id = *st.by_key.get(key)?;
        st.series.get(id as usize).cloned()
    }

    /// Applies one logged mutation. The caller logs `op` durably (or replays it).
    pub fn apply(&self, op: &HistOp) {
        match op {
            HistOp::Insert { key, points } => {
                if points.is_empty() {
                    return;
                }
                let s = self.series_for(key);
                let mut inner = s.inner.lock();
                inner.head.reserve(points.len());
                for p in points {
                    let mut p = p.clone();
                    p.rec = p.rec.max(inner.last_rec.saturating_add(1));
                    inner.last_rec = p.rec;
                    if let Some(Some(l)) = &inner.latest {
                        if (p.t, p.rec) >= (l.t, l.rec) {
                            inner.latest = Some(Some(p.clone()));
                        }
                    } else if inner.latest == Some(None) {
                        inner.latest = Some(Some(p.clone()));
                    }
                    inner.head.push(p);
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
                    for id in ids {
                        if let Some(s) = st.series.get(id as usize) {
                            self.clear_series(&mut s.inner.lock(), next_file);
                        }
                    }
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
                        self.clear_series(&mut s.inner.lock(), next_file);
                    }
                }
            }
            HistOp::DeleteInstance { key, rec } => {
                if let Some(s) = self.find(key) {
                    let mut inner = s.inner.lock();
                    let before = inner.head.len();
                    inner.head.retain(|p| p.rec != *rec);
                    let removed = before - inner.head.len();
                    self.head_points
                        .fetch_sub(removed as u64, Ordering::Relaxed);
                    inner.overrides.insert(*rec, None);
                    inner.latest = None;
                }
            }
            HistOp::ReplaceInstance { key, point } => {
                if let Some(s) = self.find(key) {
                    let mut inner = s.inner.lock();
                    if let Some(p) = inner.head.iter_mut().find(|p| p.rec == point.rec) {
                        *p = point.clone();
                    } else {
                        inner.overrides.insert(point.rec, Some(point.clone()));
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
        inner.frozen.clear();
        inner.blocks.clear();
        inner.overrides.clear();
        inner.min_file = next_file;
        inner.latest = Some(None);
    }

    /// Starts a checkpoint at `lsn`. The caller guarantees that every record up to `lsn`
    /// has been applied and none after it (it holds its writers out meanwhile); the
    /// call only moves heads aside, so it is quick. Checkpoints must be finished in the
    /// order they were begun.
    pub fn begin_checkpoint(&self, lsn: u64) -> FlushJob {
        let mut st = self.state.write();
        let file = st.next_file;
        st.next_file += 1;
        let mut frozen = Vec::new();
        for s in &st.series {
            let mut inner = s.inner.lock();
            inner.ckpt_last_rec = inner.last_rec;
            if inner.head.is_empty() {
                continue;
            }
            let f = Arc::new(std::mem::take(&mut inner.head));
            inner.frozen.push(f.clone());
            frozen.push((s.clone(), f));
        }
        st.checkpoint_lsn = st.checkpoint_lsn.max(lsn);
        FlushJob { lsn, file, frozen }
    }

    /// Writes a started checkpoint: the segment file, then (maybe) a compaction, then
    /// the registry. `now_ms` drives retention.
    /// On failure the frozen points go back to their heads (the next checkpoint retries).
    pub fn finish_checkpoint(&self, job: FlushJob, now_ms: i64) -> Result<(), TsdbError> {
        let _m = self.maintenance.lock();
        let res = self.write_checkpoint(&job, now_ms);
        if res.is_err() {
            for (s, pts) in &job.frozen {
                let mut inner = s.inner.lock();
                if let Some(i) = inner.frozen.iter().position(|f| Arc::ptr_eq(f, pts)) {
                    inner.frozen.remove(i);
                    let mut back = pts.as_ref().clone();
                    back.append(&mut inner.head);
                    inner.head = back;
                }
            }
        }
        res
    }

    fn write_checkpoint(&self, job: &FlushJob, now_ms: i64) -> Result<(), TsdbError> {
        let dir = &self.options.dir;
        if !job.frozen.is_empty() {
            let mut sorted: Vec<(u32, Vec<Point>)> = job
                .frozen
                .iter()
                .map(|(s, pts)| {
                    let mut v: Vec<Point> = pts.as_ref().clone();
                    sort_points(&mut v);
                    (s.id, v)
                })
                .collect();
            sorted.sort_by_key(|(id, _)| *id);
            let refs: Vec<(u32, &[Point])> =
                sorted.iter().map(|(id, v)| (*id, v.as_slice())).collect();
            segment::write_file(dir, job.file, &refs)?;
            let (file, index, _) = segment::open_file(dir, job.file)?;
            let mut by_series: HashMap<u32, Vec<BlockRef>> = HashMap::new();
            for e in index {
                by_series
                    .entry(e.series)
                    .or_default()
                    .push(block_ref(&file, &e));
            }
            self.state.write().files.insert(job.file, file);
            for (s, pts) in &job.frozen {
                let mut inner = s.inner.lock();
                if let Some(i) = inner.frozen.iter().position(|f| Arc::ptr_eq(f, pts)) {
                    inner.frozen.remove(i);
                    self.head_points
                        .fetch_sub(pts.len() as u64, Ordering::Relaxed);
                    if job.file >= inner.min_file {
                        if let Some(b) = by_series.remove(&s.id) {
                            inner.blocks.extend(b);
                        }
                    }
                }
            }
        } else {
            // Nothing to write; the file number is simply skipped.
        }
        let removed = self.maybe_compact(now_ms)?;
        self.write_registry(job.lsn)?;
        for path in removed {
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(%error, file = %path.display(), "could not remove a compacted segment");
            }
        }
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn write_registry(&self, lsn: u64) -> Result<(), TsdbError> {
        let st = self.state.read();
        let mut reg = Registry {
            version: registry::REGISTRY_VERSION,
            checkpoint_lsn: lsn.max(st.checkpoint_lsn),
            next_file: st.next_file,
            files: st.files.keys().copied().collect(),
            series: Vec::with_capacity(st.series.len()),
            entities: Vec::new(),
        };
        for s in &st.series {
            let inner = s.inner.lock();
            reg.series.push(SeriesRec {
                id: s.id,
                tenant: s.key.tenant.to_string(),
                entity: s.key.entity.to_string(),
                attr: s.key.attr.to_string(),
                dataset: s.key.dataset.as_deref().map(str::to_string),
                last_rec: inner.ckpt_last_rec,
                min_file: inner.min_file,
                overrides: inner
                    .overrides
                    .iter()
                    .map(|(r, p)| (*r, p.as_ref().map(to_rec)))
                    .collect(),
            });
        }
        for ((t, id), e) in &st.entities {
            if e.has_meta {
                reg.entities.push(EntityRec {
                    tenant: t.to_string(),
                    id: id.to_string(),
                    types: e.types.iter().map(|t| t.to_string()).collect(),
                    scope: e.scope.as_deref().map(str::to_string),
                });
            }
        }
        drop(st);
        registry::store(&self.options.dir, &reg)
    }

    /// The retention policy of an entity, if any.
    fn policy_for(&self, types: &[Arc<str>]) -> Option<&Retention> {
        self.options
            .retention
            .iter()
            .find(|r| types.iter().any(|t| **t == *r.entity_type))
            .or_else(|| self.options.retention.iter().find(|r| r.entity_type == "*"))
    }

    /// Merges small files (and files holding points past retention) into one.
    /// Returns the paths to delete once the registry no longer lists them.
    fn maybe_compact(&self, now_ms: i64) -> Result<Vec<PathBuf>, TsdbError> {
        let (inputs, series, policies) = {
            let st = self.state.read();
            let policies: HashMap<u32, Retention> = st
                .series
                .iter()
                .filter_map(|s| {
                    let e = st
                        .entities
                        .get(&(s.key.tenant.clone(), s.key.entity.clone()))?;
                    Some((s.id, self.policy_for(&e.types)?.clone()))
                })
                .collect();
            let mut inputs: Vec<u64> = Vec::new();
            let small: Vec<u64> = st
                .files
                .iter()
                .filter(|(_, f)| f.size() < self.options.small_file_bytes)
                .map(|(id, _)| *id)
                .collect();
            if small.len() > self.options.compact_after_files {
                inputs = small;
            }
            // Files with expired points, and files holding deleted series' blocks, join.
            for s in &st.series {
                let inner = s.inner.lock();
                if let Some(p) = policies.get(&s.id) {
                    for b in &inner.blocks {
                        if b.min_t < now_ms - p.raw_ms && !inputs.contains(&b.file.id) {
                            inputs.push(b.file.id);
                        }
                    }
                }
            }
            inputs.sort_unstable();
            (inputs, st.series.clone(), policies)
        };
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let out_id = {
            let mut st = self.state.write();
            let id = st.next_file;
            st.next_file += 1;
            id
        };
        // Read every live block of the input files, per series.
        let mut merged: Vec<(u32, Vec<Point>, Vec<i64>)> = Vec::new();
        for s in &series {
            let (blocks, overrides) = {
                let inner = s.inner.lock();
                let blocks: Vec<BlockRef> = inner
                    .blocks
                    .iter()
                    .filter(|b| inputs.binary_search(&b.file.id).is_ok())
                    .cloned()
                    .collect();
                (blocks, inner.overrides.clone())
            };
            if blocks.is_empty() {
                continue;
            }
            let mut pts = Vec::new();
            for b in &blocks {
                match b.read() {
                    Ok(p) => pts.extend(p),
                    Err(error) => {
                        self.corrupt_blocks.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%error, "history block unreadable; it is dropped by compaction");
                    }
                }
            }
            let applied: Vec<i64> = overrides.keys().copied().collect();
            let mut pts = apply_overrides(pts, &overrides);
            sort_points(&mut pts);
            if let Some(p) = policies.get(&s.id) {
                let before = pts.len();
                pts = apply_retention(pts, p, now_ms);
                self.retention_dropped
                    .fetch_add(before.saturating_sub(pts.len()) as u64, Ordering::Relaxed);
            }
            merged.push((s.id, pts, applied));
        }
        let refs: Vec<(u32, &[Point])> = merged
            .iter()
            .filter(|(_, p, _)| !p.is_empty())
            .map(|(id, p, _)| (*id, p.as_slice()))
            .collect();
        segment::write_file(&self.options.dir, out_id, &refs)?;
        let (file, index, _) = segment::open_file(&self.options.dir, out_id)?;
        let mut by_series: HashMap<u32, Vec<BlockRef>> = HashMap::new();
        for e in index {
            by_series
                .entry(e.series)
                .or_default()
                .push(block_ref(&file, &e));
        }
        let mut removed = Vec::new();
        {
            let mut st = self.state.write();
            st.files.insert(out_id, file);
            for (id, _, applied) in &merged {
                let Some(s) = st.series.get(*id as usize) else {
                    continue;
                };
                let mut inner = s.inner.lock();
                inner
                    .blocks
                    .retain(|b| inputs.binary_search(&b.file.id).is_err());
                if out_id >= inner.min_file {
                    if let Some(b) = by_series.remove(id) {
                        inner.blocks.extend(b);
                    }
                }
                // Edits folded in are dropped (only if every block was rewritten).
                if inner.blocks.iter().all(|b| b.file.id == out_id) {
                    for r in applied {
                        inner.overrides.remove(r);
                    }
                }
                inner.latest = None;
            }
            for id in &inputs {
                if let Some(f) = st.files.remove(id) {
                    removed.push(f.path.clone());
                }
            }
        }
        self.compactions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            inputs = inputs.len(),
            output = out_id,
            "history compaction done"
        );
        Ok(removed)
    }

    /// Reads the points of a series that match `sel`, sorted by the selected time
    /// (then by `rec`). Unreadable blocks are skipped and reported in the second value.
    pub fn read(&self, id: u32, sel: &Selection) -> (Vec<Point>, Vec<TsdbError>) {
        let Some(s) = self.state.read().series.get(id as usize).cloned() else {
            return (Vec::new(), Vec::new());
        };
        // The latest point answers `lastN=1` without a range at once.
        if sel.last_n == Some(1) && sel.is_unbounded() && sel.time == TimeProp::Observed {
            if let Some(l) = s.inner.lock().latest.clone() {
                return (l.into_iter().collect(), Vec::new());
            }
        }
        let (recent, blocks, overrides) = {
            let inner = s.inner.lock();
            let mut pts: Vec<Point> = inner
                .head
                .iter()
                .filter(|p| sel.contains(sel.time.of(p)))
                .cloned()
                .collect();
            for f in &inner.frozen {
                pts.extend(f.iter().filter(|p| sel.contains(sel.time.of(p))).cloned());
            }
            let blocks: Vec<BlockRef> = inner
                .blocks
                .iter()
                .filter(|b| match sel.time {
                    TimeProp::Observed => sel.overlaps(b.min_t, b.max_t),
                    TimeProp::Recorded => sel.overlaps(b.min_rec, b.max_rec),
                })
                .cloned()
                .collect();
            (pts, blocks, inner.overrides.clone())
        };
        let mut errors = Vec::new();
        let mut pts: Vec<Point> = Vec::with_capacity(
            blocks.iter().map(|b| b.count as usize).sum::<usize>() + recent.len(),
        );
        let key = |b: &BlockRef| match sel.time {
            TimeProp::Observed => b.max_t,
            TimeProp::Recorded => b.max_rec,
        };
        let mut blocks = blocks;
        if sel.last_n.is_some() {
            // Newest first, to stop early.
            blocks.sort_by_key(|b| std::cmp::Reverse(key(b)));
        } else {
            // Oldest first: disjoint blocks then come out already in order.
            blocks.sort_by_key(|b| match sel.time {
                TimeProp::Observed => b.min_t,
                TimeProp::Recorded => b.min_rec,
            });
        }
        for b in &blocks {
            // With lastN, stop once N points newer than every remaining block are known.
            if let Some(n) = sel.last_n {
                if pts.len() + recent.len() >= n {
                    let mut times: Vec<i64> =
                        pts.iter().chain(&recent).map(|p| sel.time.of(p)).collect();
                    times.sort_unstable_by(|a, b| b.cmp(a));
                    if times[n - 1] > key(b) {
                        break;
                    }
                }
            }
            let start = pts.len();
            match b.read_into(&mut pts) {
                Ok(()) => {
                    let (lo, hi) = match sel.time {
                        TimeProp::Observed => (b.min_t, b.max_t),
                        TimeProp::Recorded => (b.min_rec, b.max_rec),
                    };
                    if !(sel.contains(lo) && sel.contains(hi)) {
                        let mut i = start;
                        let mut kept = start;
                        while i < pts.len() {
                            if sel.contains(sel.time.of(&pts[i])) {
                                pts.swap(kept, i);
                                kept += 1;
                            }
                            i += 1;
                        }
                        pts.truncate(kept);
                    }
                }
                Err(e) => {
                    self.corrupt_blocks.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "skipping an unreadable history block");
                    errors.push(e);
                }
            }
        }
        // The unflushed points are usually the newest: appended last, the order holds.
        pts.extend(recent);
        let mut pts = if overrides.is_empty() {
            pts
        } else {
            apply_overrides(pts, &overrides)
                .into_iter()
                .filter(|p| sel.contains(sel.time.of(p)))
                .collect()
        };
        let time = sel.time;
        if !pts.is_sorted_by_key(|p| (time.of(p), p.rec)) {
            pts.sort_by_key(|p| (time.of(p), p.rec));
        }
        if let Some(n) = sel.last_n {
            let cut = pts.len().saturating_sub(n);
            pts.drain(..cut);
        }
        if sel.last_n == Some(1)
            && sel.is_unbounded()
            && time == TimeProp::Observed
            && errors.is_empty()
        {
            s.inner.lock().latest = Some(pts.last().cloned());
        }
        (pts, errors)
    }

    /// Aggregates a series over observation time straight from the compressed
    /// columns, without building points. None when the fast path does not apply
    /// (instance edits pending, overlapping blocks, non-numeric values, recorded
    /// time); the caller then reads points and aggregates them.
    pub fn aggregate(
        &self,
        id: u32,
        sel: &Selection,
        origin: Option<i64>,
        end: Option<i64>,
        next: Option<&dyn Fn(i64) -> i64>,
        methods: &[AggMethod],
    ) -> Option<Result<Vec<Bucket>, TsdbError>> {
        if sel.time != TimeProp::Observed || sel.last_n.is_some() {
            return None;
        }
        let s = self.state.read().series.get(id as usize).cloned()?;
        let (mut recent, mut blocks) = {
            let inner = s.inner.lock();
            if !inner.overrides.is_empty() {
                return None;
            }
            let recent: Vec<Point> = inner
                .head
                .iter()
                .chain(inner.frozen.iter().flat_map(|f| f.iter()))
                .filter(|p| sel.contains(p.t))
                .cloned()
                .collect();
            let blocks: Vec<BlockRef> = inner
                .blocks
                .iter()
                .filter(|b| sel.overlaps(b.min_t, b.max_t))
                .cloned()
                .collect();
            (recent, blocks)
        };
        blocks.sort_by_key(|b| b.min_t);
        if blocks.windows(2).any(|w| w[0].max_t > w[1].min_t) {
            return None;
        }
        if recent.iter().any(|p| matches!(p.v, Val::D(_))) {
            return None;
        }
        recent.sort_by_key(|p| (p.t, p.rec));
        let last_block = blocks.last().map_or(i64::MIN, |b| b.max_t);
        if recent.first().is_some_and(|p| p.t < last_block) {
            return None;
        }
        let mut agg = Aggregator::new(origin, end, next, methods);
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        for b in &blocks {
            match b.read_numeric(&mut ts, &mut vals) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.corrupt_blocks.fetch_add(1, Ordering::Relaxed);
                    return Some(Err(e));
                }
            }
            let whole = sel.contains(b.min_t) && sel.contains(b.max_t);
            for (t, x) in ts.iter().zip(&vals) {
                if whole || sel.contains(*t) {
                    agg.push_num(*t, *x);
                }
            }
        }
        for p in &recent {
            agg.push(p.t, &p.v);
        }
        Some(Ok(agg.finish()))
    }

    /// The history of one entity (None when it has none).
    pub fn entity(&self, tenant: &str, id: &str) -> Option<EntityHistory> {
        let st = self.state.read();
        let e = st.entities.get(&(Arc::from(tenant), Arc::from(id)))?;
        self.describe(&st, id, e)
    }

    fn describe(&self, st: &State, id: &str, e: &EntityEntry) -> Option<EntityHistory> {
        let series: Vec<SeriesInfo> = e
            .series
            .iter()
            .filter_map(|sid| st.series.get(*sid as usize))
            .filter(|s| !s.inner.lock().is_empty())
            .map(|s| SeriesInfo {
                id: s.id,
                attr: s.key.attr.clone(),
                dataset: s.key.dataset.clone(),
            })
            .collect();
        if !e.has_meta && series.is_empty() {
            return None;
        }
        Some(EntityHistory {
            id: Arc::from(id),
            types: e.types.clone(),
            scope: e.scope.clone(),
            series,
        })
    }

    /// Visits the entities of a tenant with history, in id order, starting after `after`.
    pub fn scan(
        &self,
        tenant: &str,
        after: Option<&str>,
        visit: &mut dyn FnMut(EntityHistory) -> std::ops::ControlFlow<()>,
    ) {
        let t: Arc<str> = Arc::from(tenant);
        let st = self.state.read();
        let start: (Arc<str>, Arc<str>) = (t.clone(), Arc::from(after.unwrap_or("")));
        let lower = match after {
            Some(_) => Bound::Excluded(start),
            None => Bound::Included(start),
        };
        for ((tn, id), e) in st.entities.range((lower, Bound::Unbounded)) {
            if *tn != t {
                break;
            }
            if let Some(h) = self.describe(&st, id, e) {
                if visit(h).is_break() {
                    break;
                }
            }
        }
    }

    /// Tenants with history.
    pub fn tenants(&self) -> Vec<String> {
        let st = self.state.read();
        let mut v: Vec<String> = st.entities.keys().map(|(t, _)| t.to_string()).collect();
        v.dedup();
        v
    }

    /// The key of a series.
    pub fn key(&self, id: u32) -> Option<SeriesKey> {
        self.state
            .read()
            .series
            .get(id as usize)
            .map(|s| s.key.clone())
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

    /// The directory of the engine.
    pub fn dir(&self) -> &std::path::Path {
        &self.options.dir
    }
}

fn install_series(st: &mut State, id: u32, key: SeriesKey, inner: SeriesInner) -> Arc<Series> {
    let s = Arc::new(Series {
        id,
        key: key.clone(),
        inner: Mutex::new(inner),
    });
    let idx = id as usize;
    if st.series.len() <= idx {
        // Registry ids are dense; a gap would only come from a damaged registry.
        while st.series.len() < idx {
            let filler = st.series.len() as u32;
            st.series.push(Arc::new(Series {
                id: filler,
                key: SeriesKey {
                    tenant: Arc::from(""),
                    entity: Arc::from(""),
                    attr: Arc::from(""),
                    dataset: None,
                },
                inner: Mutex::new(SeriesInner::default()),
            }));
        }
        st.series.push(s.clone());
    } else {
        st.series[idx] = s.clone();
    }
    st.by_key.insert(key.clone(), id);
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

fn apply_overrides(pts: Vec<Point>, overrides: &BTreeMap<i64, Option<Point>>) -> Vec<Point> {
    pts.into_iter()
        .filter_map(|p| match overrides.get(&p.rec) {
            None => Some(p),
            Some(r) => r.clone(),
        })
        .collect()
}

/// Drops points past the policy and replaces old raw points by bucket means.
fn apply_retention(pts: Vec<Point>, p: &Retention, now_ms: i64) -> Vec<Point> {
    let raw_cut = now_ms - p.raw_ms;
    let keep_cut = p.rollup_keep_ms.map(|k| now_ms - k);
    let Some(period) = p.rollup_period_ms.filter(|p| *p > 0) else {
        return pts.into_iter().filter(|x| x.t >= raw_cut).collect();
    };
    let mut out = Vec::with_capacity(pts.len());
    let mut bucket: Option<(i64, Vec<Point>)> = None;
    let flush = |b: (i64, Vec<Point>), out: &mut Vec<Point>| {
        let (start, items) = b;
        let nums: Vec<f64> = items.iter().filter_map(|x| x.v.as_f64()).collect();
        let Some(last) = items.last() else { return };
        let v = if nums.is_empty() {
            last.v.clone()
        } else {
            Val::F(nums.iter().sum::<f64>() / nums.len() as f64)
        };
        out.push(Point {
            t: start,
            rec: last.rec,
            observed: true,
            unit: last.unit.clone(),
            v,
        });
    };
    for x in pts {
        if keep_cut.is_some_and(|k| x.t < k) {
            continue;
        }
        if x.t >= raw_cut {
            out.push(x);
            continue;
        }
        let start = x.t.div_euclid(period) * period;
        match &mut bucket {
            Some((s, items)) if *s == start => items.push(x),
            _ => {
                if let Some(b) = bucket.take() {
                    flush(b, &mut out);
                }
                bucket = Some((start, vec![x]));
            }
        }
    }
    if let Some(b) = bucket.take() {
        flush(b, &mut out);
    }
    sort_points(&mut out);
    out
}

impl SegFile {
    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
