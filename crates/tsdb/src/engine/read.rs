//! Reads: ranges, lastN, column aggregation, instance lookups, entity listings.

use citybrain_telemetry::InternalEvent;
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use super::maintenance::apply_overrides;
use super::*;

impl Tsdb {
    /// Reads the points of a series that match `sel`, sorted by the selected time
    /// (then by `rec`). Unreadable blocks are skipped and reported in the second value.
    pub fn read(&self, id: u32, sel: &Selection) -> (Vec<Point>, Vec<TsdbError>) {
        let Some(s) = self.state.read().series.get(id as usize).cloned() else {
            return (Vec::new(), Vec::new());
        };
        // The latest point answers `lastN=1` without a range at once.
        if sel.last_n == Some(1) && sel.is_unbounded() && sel.time == TimeProp::Observed {
            if let Some(l) = s.lock().latest.as_deref() {
                return (l.iter().cloned().collect(), Vec::new());
            }
        }
        let (recent, blocks, overrides) = {
            let inner = s.lock();
            let mut pts: Vec<Point> = inner
                .head
                .iter()
                .filter(|p| sel.contains(sel.time.of(p)))
                .cloned()
                .collect();
            for f in inner.frozen() {
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
            (pts, blocks, inner.overrides().clone())
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
                    CorruptBlock {
                        counter: &self.corrupt_blocks,
                        error: &e,
                        consequence: "skipping an unreadable history block",
                    }
                    .emit();
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
            s.lock().latest = Some(Box::new(pts.last().cloned()));
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
            let inner = s.lock();
            if !inner.overrides().is_empty() {
                return None;
            }
            let recent: Vec<Point> = inner
                .head
                .iter()
                .chain(inner.frozen().iter().flat_map(|f| f.iter()))
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
                    CorruptBlock {
                        counter: &self.corrupt_blocks,
                        error: &e,
                        consequence: "an aggregate over an unreadable history block failed",
                    }
                    .emit();
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

    /// The observed points of a series at exactly these times (one per time: the last
    /// recorded), in one pass over the head and the blocks that can hold them.
    pub fn observed_at(&self, id: u32, times: &[i64]) -> HashMap<i64, Point> {
        let mut found: HashMap<i64, Point> = HashMap::new();
        if times.is_empty() {
            return found;
        }
        let mut sorted = times.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let wanted: std::collections::HashSet<i64> = sorted.iter().copied().collect();
        let Some(s) = self.state.read().series.get(id as usize).cloned() else {
            return found;
        };
        let keep = |p: &Point, found: &mut HashMap<i64, Point>| {
            if p.observed && wanted.contains(&p.t) {
                match found.get(&p.t) {
                    Some(q) if q.rec >= p.rec => {}
                    _ => {
                        found.insert(p.t, p.clone());
                    }
                }
            }
        };
        let (blocks, overrides) = {
            let inner = s.lock();
            for p in inner
                .head
                .iter()
                .chain(inner.frozen().iter().flat_map(|f| f.iter()))
            {
                keep(p, &mut found);
            }
            let blocks: Vec<BlockRef> = inner
                .blocks
                .iter()
                .filter(|b| {
                    let i = sorted.partition_point(|t| *t < b.min_t);
                    sorted.get(i).is_some_and(|t| *t <= b.max_t)
                })
                .cloned()
                .collect();
            (blocks, inner.overrides().clone())
        };
        for b in blocks {
            match b.read() {
                Ok(points) => {
                    for p in apply_overrides(points, &overrides) {
                        keep(&p, &mut found);
                    }
                }
                Err(e) => tracing::error!(error = %e, "skipping an unreadable history block"),
            }
        }
        found
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
            .filter(|s| !s.is_empty())
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
        // The visitor reads series, so it runs outside the state lock: entities are
        // described a batch at a time and the lock is released in between (holding it
        // across the visit would wait behind a queued checkpoint forever).
        const BATCH: usize = 256;
        let t: Arc<str> = Arc::from(tenant);
        let mut cursor: Option<Arc<str>> = after.map(Arc::from);
        loop {
            let batch: Vec<EntityHistory> = {
                let st = self.state.read();
                let lower = match &cursor {
                    Some(c) => Bound::Excluded((t.clone(), c.clone())),
                    None => Bound::Included((t.clone(), Arc::from(""))),
                };
                let mut out = Vec::with_capacity(BATCH);
                for ((tn, id), e) in st.entities.range((lower, Bound::Unbounded)) {
                    if *tn != t {
                        break;
                    }
                    cursor = Some(id.clone());
                    if let Some(h) = self.describe(&st, id, e) {
                        out.push(h);
                        if out.len() == BATCH {
                            break;
                        }
                    }
                }
                out
            };
            let full = batch.len() == BATCH;
            for h in batch {
                if visit(h).is_break() {
                    return;
                }
            }
            if !full {
                return;
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
}
