//! Opening the engine: the registry read, the series and entities built in bulk, the
//! segment files' blocks handed to their series.
//!
//! At ten million series the start is dominated by building the in-memory index, so it
//! is built the cheap way: series in number order straight into the vector, the key set
//! sized once, entities collected in a vector by registry number (the series find
//! theirs by that number, not by key) and turned into the ordered map in one bulk
//! build (the registry lists them mostly in key order), each series' blocks gathered
//! before its lock exists.

use super::*;
use crate::registry::{Loaded, LoadedSeries};
use crate::segment::IndexEntry;

impl Tsdb {
    /// Opens (or creates) the engine in `options.dir`. Damaged blocks are reported in
    /// the log and counted, never fatal.
    pub fn open(options: TsdbOptions) -> Result<Tsdb, TsdbError> {
        std::fs::create_dir_all(&options.dir)?;
        let (reg, writer) = match registry::load(&options.dir)? {
            Some(mut l) => {
                let w = std::mem::take(&mut l.writer);
                (l, Some(w))
            }
            None => (
                Loaded {
                    next_file: 1,
                    ..Default::default()
                },
                None,
            ),
        };
        let db = Tsdb {
            registry: Mutex::new(registry::Writer::new(&options.dir, writer)?),
            options,
            state: RwLock::new(State::default()),
            maintenance: Mutex::new(()),
            dirty: Mutex::new(Dirty::default()),
            touched: Mutex::new(Vec::new()),
            head_points: AtomicU64::new(0),
            points_written: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            corrupt_blocks: AtomicU64::new(0),
            retention_dropped: AtomicU64::new(0),
            begun: AtomicU64::new(0),
            poisoned_below: AtomicU64::new(0),
        };
        let mut files = Vec::with_capacity(reg.files.len());
        for &fid in &reg.files {
            let (file, index, problems) = segment::open_file(&db.options.dir, fid)?;
            for p in problems {
                CorruptBlock {
                    counter: &db.corrupt_blocks,
                    error: &p,
                    consequence: "history segment damaged; readable blocks are kept",
                }
                .emit();
            }
            files.push((fid, file, index));
        }
        {
            let mut st = db.state.write();
            build(&mut st, reg, &mut files);
            for (fid, file, _) in files {
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
}

/// The blocks of each file, walked in series order alongside the series.
struct Cursor<'a> {
    fid: u64,
    file: &'a Arc<SegFile>,
    index: &'a [IndexEntry],
    at: usize,
}

impl Cursor<'_> {
    /// Moves the blocks of series `id` (of this file) into `out`.
    fn take(&mut self, id: u32, min_file: u64, out: &mut Vec<BlockRef>) {
        while let Some(e) = self.index.get(self.at) {
            if e.series > id {
                break;
            }
            self.at += 1;
            if e.series == id && self.fid >= min_file {
                out.push(block_ref(self.file, e));
            }
        }
    }
}

/// A series' in-memory part from its registry record (its edits taken) and blocks.
fn inner_of(s: &mut LoadedSeries, mut blocks: Vec<BlockRef>) -> SeriesInner {
    blocks.shrink_to_fit();
    let mut inner = SeriesInner {
        blocks,
        last_rec: s.last_rec,
        min_file: s.min_file,
        ..Default::default()
    };
    inner.set_overrides(std::mem::take(&mut s.overrides).into_iter().collect());
    inner
}

/// Fills an empty state from what the registry and the segment files hold.
fn build(st: &mut State, reg: Loaded, files: &mut [(u64, Arc<SegFile>, Vec<IndexEntry>)]) {
    st.checkpoint_lsn = reg.checkpoint_lsn;
    st.next_file = reg.next_file.max(1);
    // Blocks are found by walking each file's index in series order (the order the
    // engine writes them in; sorted here if a file says otherwise).
    for (_, _, index) in files.iter_mut() {
        if !index.is_sorted_by_key(|e| e.series) {
            index.sort_by_key(|e| e.series);
        }
    }
    let mut cursors: Vec<Cursor<'_>> = files
        .iter()
        .map(|(fid, file, index)| Cursor {
            fid: *fid,
            file,
            index,
            at: 0,
        })
        .collect();
    let mut entities: Vec<(EntityKey, EntityEntry)> = reg
        .entities
        .into_iter()
        .map(|e| {
            let (types, scope, has_meta) = match e.meta {
                Some((types, scope)) => (types, scope, true),
                None => (Vec::new(), None, false),
            };
            let entry = EntityEntry {
                types,
                scope,
                has_meta,
                reg: AtomicU32::new(e.eid + 1),
                series: Vec::new(),
            };
            ((e.tenant, e.id), entry)
        })
        .collect();
    let n = reg.series.len();
    st.series.reserve_exact(n);
    st.by_key = hashbrown::HashTable::with_capacity(n);
    st.ckpt_last_recs = Vec::with_capacity(n);
    // Series the registry did not number in order (only from damage).
    let mut unplaced: Vec<LoadedSeries> = Vec::new();
    // Series whose entity it did not give by number (a version 1 registry).
    let mut by_key: Vec<(u32, EntityKey)> = Vec::new();
    for mut s in reg.series {
        let id = s.id;
        if id as usize != st.series.len() {
            unplaced.push(s);
            continue;
        }
        let mut blocks = Vec::new();
        for c in &mut cursors {
            c.take(id, s.min_file, &mut blocks);
        }
        let inner = inner_of(&mut s, blocks);
        st.ckpt_last_recs.push(s.last_rec);
        match s.entity.and_then(|e| entities.get_mut(e)) {
            Some((_, entry)) => entry.series.push(id),
            None => by_key.push((id, (s.key.tenant.clone(), s.key.entity.clone()))),
        }
        let hash = st.hasher.hash_one(&s.key);
        st.series.push(Arc::new(Series::new(id, s.key, inner)));
        let State {
            by_key,
            series,
            hasher,
            ..
        } = &mut *st;
        // Keys are unique in a sound registry (a duplicate, from damage, is found
        // after the first: lookups see the first series of the key).
        by_key.insert_unique(hash, id, |&other| {
            series
                .get(other as usize)
                .map_or(0, |o| hasher.hash_one(&o.key))
        });
    }
    // One bulk build; duplicates (only from damage) merge their series lists.
    entities.sort_by(|a, b| a.0.cmp(&b.0));
    entities.dedup_by(|later, kept| {
        if later.0 != kept.0 {
            return false;
        }
        let ids = std::mem::take(&mut later.1.series);
        kept.1.series.extend(ids);
        true
    });
    st.entities = entities.into_iter().collect();
    for (id, key) in by_key {
        let e = st.entities.entry(key).or_default();
        if !e.series.contains(&id) {
            e.series.push(id);
        }
    }
    for mut s in unplaced {
        let id = s.id;
        let mut blocks = Vec::new();
        for (fid, file, index) in files.iter() {
            if *fid >= s.min_file {
                blocks.extend(
                    index
                        .iter()
                        .filter(|e| e.series == id)
                        .map(|e| block_ref(file, e)),
                );
            }
        }
        let inner = inner_of(&mut s, blocks);
        install_series(st, id, s.key, inner);
        st.set_ckpt_last_rec(id, s.last_rec);
    }
}
