//! Checkpoints, compaction and retention.

use citybrain_telemetry::InternalEvent;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;
use crate::registry;

impl Tsdb {
    /// Starts a checkpoint at `lsn`. The caller guarantees that every record up to `lsn`
    /// has been applied and none after it (it holds its writers out meanwhile); the
    /// call only moves heads aside, so it is quick. Checkpoints must be finished in the
    /// order they were begun.
    pub fn begin_checkpoint(&self, lsn: u64) -> FlushJob {
        let mut st = self.state.write();
        let file = st.next_file;
        st.next_file += 1;
        let mut ids = std::mem::take(&mut *self.touched.lock());
        ids.extend_from_slice(&self.dirty.lock().series);
        ids.sort_unstable();
        ids.dedup();
        let mut frozen = Vec::new();
        let mut last_recs = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(s) = st.series.get(id as usize) else {
                continue;
            };
            let mut inner = s.lock();
            last_recs.push((id, inner.last_rec));
            if inner.head.is_empty() {
                continue;
            }
            let f = Arc::new(std::mem::take(&mut inner.head));
            inner.freeze(f.clone());
            frozen.push((s.clone(), f));
        }
        FlushJob {
            seq: self.begun.fetch_add(1, Ordering::AcqRel),
            lsn,
            file,
            frozen,
            last_recs,
        }
    }

    /// Writes a started checkpoint: the segment file, then (maybe) a compaction, then
    /// the registry. `now_ms` drives retention.
    /// On failure the frozen points go back to their heads (the next checkpoint retries).
    pub fn finish_checkpoint(&self, job: FlushJob, now_ms: i64) -> Result<(), TsdbError> {
        let _m = self.maintenance.lock();
        let res = if job.seq < self.poisoned_below.load(Ordering::Acquire) {
            Err(TsdbError::EarlierCheckpointFailed)
        } else {
            self.write_checkpoint(&job, now_ms)
        };
        if res.is_err() {
            // Every job begun before this failure misses the points going back now.
            self.poisoned_below
                .fetch_max(self.begun.load(Ordering::Acquire), Ordering::AcqRel);
            // Whatever part of it was recorded, the next registry write is whole (the
            // states this job took are not written by a later delta).
            self.registry.lock().force_whole();
            // The next checkpoint takes them again.
            self.touched
                .lock()
                .extend(job.frozen.iter().map(|(s, _)| s.id));
            for (s, pts) in &job.frozen {
                let mut inner = s.lock();
                if inner.unfreeze(pts) {
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
                let mut inner = s.lock();
                if inner.unfreeze(pts) {
                    self.head_points
                        .fetch_sub(pts.len() as u64, Ordering::Relaxed);
                    if job.file >= inner.min_file {
                        if let Some(b) = by_series.remove(&s.id) {
                            inner.blocks.extend(b);
                            inner.blocks.shrink_to_fit();
                        }
                    }
                }
            }
        } else {
            // Nothing to write; the file number is simply skipped.
        }
        {
            // Checkpoints finish in the order they began: this one is now the latest.
            let mut st = self.state.write();
            if job.lsn >= st.checkpoint_lsn {
                st.checkpoint_lsn = job.lsn;
                for &(id, last_rec) in &job.last_recs {
                    st.set_ckpt_last_rec(id, last_rec);
                }
            }
        }
        let removed = self.maybe_compact(now_ms)?;
        // Every series whose `last_rec` the job took (frozen, or edited or cleared
        // since the last checkpoint), not only those it froze: their recorded state
        // must move with `ckpt_last_recs`.
        let written: Vec<u32> = job.last_recs.iter().map(|(id, _)| *id).collect();
        self.write_registry(&written)?;
        for path in removed {
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(%error, file = %path.display(), "could not remove a compacted segment");
            }
        }
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Background upkeep without new data: retention and compaction (a quiet city
    /// still ages out its history).
    pub fn maintain(&self, now_ms: i64) -> Result<(), TsdbError> {
        let _m = self.maintenance.lock();
        let before = self.compactions.load(Ordering::Relaxed);
        let removed = self.maybe_compact(now_ms)?;
        if self.compactions.load(Ordering::Relaxed) != before {
            self.write_registry(&[])?;
        }
        for path in removed {
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(%error, file = %path.display(), "could not remove a compacted segment");
            }
        }
        Ok(())
    }

    /// Records the last finished checkpoint in the registry log: what changed since
    /// the last record (new entities and series, changed types and scopes, the state
    /// of the series in `written`, whose points the checkpoint wrote, and of those
    /// with new edits), or, when the log wants it, the whole registry.
    fn write_registry(&self, written: &[u32]) -> Result<(), TsdbError> {
        let mut writer = self.registry.lock();
        if writer.wants_whole() {
            self.write_whole_registry(&mut writer)
        } else {
            self.write_registry_delta(&mut writer, written)
        }
    }

    fn write_whole_registry(&self, writer: &mut registry::Writer) -> Result<(), TsdbError> {
        // Taken under the state lock; written after it, record by record.
        let (lsn, next_file, files, series, last_recs, entities) = {
            let st = self.state.read();
            // Everything is written now: what was marked before is covered.
            *self.dirty.lock() = Dirty::default();
            let entities: Vec<(EntityKey, Option<registry::Meta>)> = st
                .entities
                .iter()
                .enumerate()
                .map(|(i, (k, e))| {
                    e.reg.store(i as u32 + 1, Ordering::Relaxed);
                    (
                        k.clone(),
                        e.has_meta.then(|| (e.types.clone(), e.scope.clone())),
                    )
                })
                .collect();
            (
                st.checkpoint_lsn,
                st.next_file,
                st.files.keys().copied().collect::<Vec<u64>>(),
                st.series.clone(),
                st.ckpt_last_recs.clone(),
                entities,
            )
        };
        let mut b = writer.begin(true)?;
        b.size(entities.len(), series.len())?;
        for ((tenant, id), meta) in &entities {
            let eid = b.entity(tenant, id)?;
            if let Some((types, scope)) = meta {
                b.meta(eid, Some((types, scope.as_deref())))?;
            }
        }
        for s in &series {
            // Entity numbers are positions in the key order they were given in.
            let eid = entities
                .binary_search_by(|((t, e), _)| (&**t, &**e).cmp(&(&*s.key.tenant, &*s.key.entity)))
                .ok()
                .map(|i| i as u32);
            b.series(s.id, eid, &s.key.attr, s.key.dataset.as_ref())?;
            let inner = s.lock();
            let last_rec = last_recs.get(s.id as usize).copied().unwrap_or(0);
            b.state(s.id, last_rec, inner.min_file, inner.overrides())?;
        }
        b.commit(lsn, next_file, &files)?;
        Ok(())
    }

    fn write_registry_delta(
        &self,
        writer: &mut registry::Writer,
        written: &[u32],
    ) -> Result<(), TsdbError> {
        let mut b = writer.begin(false)?;
        let from = b.series_written();
        // Under the state lock: numbers for new entities, and the records that need
        // them (they are few: what appeared since the last checkpoint).
        let (lsn, next_file, files, states) = {
            let st = self.state.read();
            let mut dirty = std::mem::take(&mut *self.dirty.lock());
            let eid_of = |key: &EntityKey,
                          b: &mut registry::Batch<'_>|
             -> Result<Option<(u32, &EntityEntry)>, TsdbError> {
                let Some(e) = st.entities.get(key) else {
                    return Ok(None);
                };
                let eid = match e.reg.load(Ordering::Relaxed) {
                    0 => {
                        let eid = b.entity(&key.0, &key.1)?;
                        e.reg.store(eid + 1, Ordering::Relaxed);
                        eid
                    }
                    n => n - 1,
                };
                Ok(Some((eid, e)))
            };
            dirty.entities.sort_unstable();
            dirty.entities.dedup();
            for key in &dirty.entities {
                if let Some((eid, e)) = eid_of(key, &mut b)? {
                    let meta = e.has_meta.then(|| (&e.types[..], e.scope.as_deref()));
                    b.meta(eid, meta)?;
                }
            }
            let fresh = st.series.get(from as usize..).unwrap_or_default();
            for s in fresh {
                let key = (s.key.tenant.clone(), s.key.entity.clone());
                let eid = eid_of(&key, &mut b)?.map(|(eid, _)| eid);
                b.series(s.id, eid, &s.key.attr, s.key.dataset.as_ref())?;
            }
            let mut ids: Vec<u32> = written
                .iter()
                .chain(&dirty.series)
                .copied()
                .filter(|id| *id < from)
                .chain(fresh.iter().map(|s| s.id))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let states: Vec<(Arc<Series>, i64)> = ids
                .iter()
                .filter_map(|id| {
                    let s = st.series.get(*id as usize)?;
                    let last_rec = st.ckpt_last_recs.get(*id as usize).copied().unwrap_or(0);
                    Some((s.clone(), last_rec))
                })
                .collect();
            (
                st.checkpoint_lsn,
                st.next_file,
                st.files.keys().copied().collect::<Vec<u64>>(),
                states,
            )
        };
        for (s, last_rec) in &states {
            let inner = s.lock();
            b.state(s.id, *last_rec, inner.min_file, inner.overrides())?;
        }
        b.commit(lsn, next_file, &files)?;
        Ok(())
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
            // Without policies there is nothing to look up per series.
            let policies: HashMap<u32, Retention> = st
                .series
                .iter()
                .filter(|_| !self.options.retention.is_empty())
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
            // Files with expired points join (only series under a policy are looked at).
            for (id, p) in &policies {
                let Some(s) = st.series.get(*id as usize) else {
                    continue;
                };
                let inner = s.lock();
                {
                    for b in &inner.blocks {
                        if b.min_t < now_ms - p.raw_ms && !inputs.contains(&b.file.id) {
                            inputs.push(b.file.id);
                        }
                    }
                }
            }
            if inputs.is_empty() {
                return Ok(Vec::new());
            }
            inputs.sort_unstable();
            (inputs, st.series.clone(), policies)
        };
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
                let inner = s.lock();
                let blocks: Vec<BlockRef> = inner
                    .blocks
                    .iter()
                    .filter(|b| inputs.binary_search(&b.file.id).is_ok())
                    .cloned()
                    .collect();
                (blocks, inner.overrides().clone())
            };
            if blocks.is_empty() {
                continue;
            }
            let mut pts = Vec::new();
            for b in &blocks {
                match b.read() {
                    Ok(p) => pts.extend(p),
                    Err(error) => {
                        CorruptBlock {
                            counter: &self.corrupt_blocks,
                            error: &error,
                            consequence: "history block unreadable; it is dropped by compaction",
                        }
                        .emit();
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
                let mut inner = s.lock();
                inner
                    .blocks
                    .retain(|b| inputs.binary_search(&b.file.id).is_err());
                if out_id >= inner.min_file {
                    if let Some(b) = by_series.remove(id) {
                        inner.blocks.extend(b);
                    }
                    inner.blocks.shrink_to_fit();
                }
                // Edits folded in are dropped (only if every block was rewritten).
                if inner.blocks.iter().all(|b| b.file.id == out_id) && !applied.is_empty() {
                    for r in applied {
                        inner.overrides_mut().remove(r);
                    }
                    inner.tidy();
                    self.dirty.lock().series.push(*id);
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
}

pub(super) fn apply_overrides(
    pts: Vec<Point>,
    overrides: &BTreeMap<i64, Option<Point>>,
) -> Vec<Point> {
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
