//! In-memory state of one tenant: entities in id order, an index by type and an index of
//! attribute values.
//!
//! Every structure holds the entity itself (`Arc<Entity>`, ordered by id) rather than a
//! copy of its id: one allocation per entity serves the map and all the indexes.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::ops::{Bound, ControlFlow};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use citybrain_model::q::{IndexKey, KeyRange};
use citybrain_model::{AttrKind, Entity};

/// An entity ordered (and looked up) by its id.
#[derive(Debug, Clone)]
pub(crate) struct ById(pub Arc<Entity>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

/// Entities with ids below and above every real id, as range bounds.
fn sentinel(low: bool) -> ById {
    static LOW: OnceLock<ById> = OnceLock::new();
    static HIGH: OnceLock<ById> = OnceLock::new();
    let make = |id: &str| {
        let t = DateTime::<Utc>::UNIX_EPOCH;
        ById(Arc::new(Entity {
            id: id.to_string(),
            types: Vec::new(),
            scope: None,
            created_at: t,
            modified_at: t,
            attrs: Vec::new(),
        }))
    };
    if low {
        LOW.get_or_init(|| make("")).clone()
    } else {
        HIGH.get_or_init(|| make("\u{10FFFF}\u{10FFFF}\u{10FFFF}"))
            .clone()
    }
}

/// Hashing for the maps keyed by type and attribute names (internal keys, looked up on
/// every write).
type Fast = foldhash::fast::RandomState;

/// One attribute's index: (value, entity), sorted.
pub(crate) type ValueIndex = BTreeSet<(IndexKey, ById)>;

#[derive(Debug, Default, Clone)]
pub(crate) struct TenantState {
    entities: BTreeSet<ById>,
    by_type: HashMap<Arc<str>, BTreeSet<ById>, Fast>,
    /// Value index: attribute IRI → (scalar value of an instance, entity). `None` when
    /// disabled.
    values: Option<HashMap<Arc<str>, ValueIndex, Fast>>,
}

/// The (attribute, key) pairs an entity contributes to the value index: every instance
/// of each Property or Relationship whose value is scalar (or an array of scalars), so
/// that index candidates are a superset of what `q` matches.
fn index_entries(e: &Entity) -> Vec<(&Arc<str>, IndexKey)> {
    let mut out = Vec::new();
    for (name, instances) in &e.attrs {
        for a in instances {
            if matches!(a.kind, AttrKind::Property | AttrKind::Relationship) {
                out.extend(IndexKey::of_attr(&a.value).into_iter().map(|k| (name, k)));
            }
        }
    }
    out
}

impl TenantState {
    pub fn new(value_index: bool) -> Self {
        Self {
            values: value_index.then(HashMap::default),
            ..Default::default()
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Entity>> {
        self.entities.get(id).map(|b| &b.0)
    }

    pub fn len(&self) -> usize {
        self.entities.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Entity>> {
        self.entities.iter().map(|b| &b.0)
    }

    fn unindex(&mut self, old: &ById) {
        for t in &old.0.types {
            if let Some(set) = self.by_type.get_mut(&**t) {
                set.remove(old);
                if set.is_empty() {
                    self.by_type.remove(&**t);
                }
            }
        }
        let Some(values) = self.values.as_mut() else {
            return;
        };
        for (attr, key) in index_entries(&old.0) {
            if let Some(set) = values.get_mut(attr) {
                set.remove(&(key, old.clone()));
                if set.is_empty() {
                    values.remove(attr);
                }
            }
        }
    }

    fn index(&mut self, e: &ById) {
        for t in &e.0.types {
            self.by_type.entry(t.clone()).or_default().insert(e.clone());
        }
        let Some(values) = self.values.as_mut() else {
            return;
        };
        for (attr, key) in index_entries(&e.0) {
            values
                .entry(attr.clone())
                .or_default()
                .insert((key, e.clone()));
        }
    }

    pub fn put(&mut self, e: Arc<Entity>) {
        let e = ById(e);
        // One search: `replace` swaps the stored entity and hands back the old one.
        match self.entities.replace(e.clone()) {
            Some(old) => self.reindex(&old, &e),
            None => self.index(&e),
        }
    }

    /// Moves the index entries of `old` to `new` (same id): entries that stay are
    /// replaced in place (one search instead of a removal and an insertion), so
    /// every index points at the new `Arc` and a telemetry update that changes one
    /// value touches only that value's entries twice.
    fn reindex(&mut self, old: &ById, new: &ById) {
        for t in &old.0.types {
            if !new.0.types.contains(t) {
                if let Some(set) = self.by_type.get_mut(&**t) {
                    set.remove(old);
                    if set.is_empty() {
                        self.by_type.remove(&**t);
                    }
                }
            }
        }
        for t in &new.0.types {
            // Replaces the old entry, or inserts one for a newly added type.
            match self.by_type.get_mut(&**t) {
                Some(set) => {
                    set.replace(new.clone());
                }
                None => {
                    self.by_type
                        .entry(t.clone())
                        .or_default()
                        .insert(new.clone());
                }
            }
        }
        let Some(values) = self.values.as_mut() else {
            return;
        };
        let old_entries = index_entries(&old.0);
        let new_entries = index_entries(&new.0);
        for (attr, key) in &old_entries {
            if !new_entries
                .iter()
                .any(|(a, k)| (Arc::ptr_eq(a, attr) || a == attr) && k == key)
            {
                if let Some(set) = values.get_mut(*attr) {
                    set.remove(&(key.clone(), old.clone()));
                    if set.is_empty() {
                        values.remove(*attr);
                    }
                }
            }
        }
        for (attr, key) in new_entries {
            match values.get_mut(&**attr) {
                Some(set) => {
                    set.replace((key, new.clone()));
                }
                None => {
                    values
                        .entry(attr.clone())
                        .or_default()
                        .insert((key, new.clone()));
                }
            }
        }
    }

    pub fn delete(&mut self, id: &str) -> Option<Arc<Entity>> {
        let old = self.entities.take(id)?;
        self.unindex(&old);
        Some(old.0)
    }

    /// Entities whose `attr` falls in any of `ranges`, in id order; `None` without an index.
    pub fn in_ranges(&self, attr: &str, ranges: &[KeyRange]) -> Option<Vec<Arc<Entity>>> {
        let values = self.values.as_ref()?;
        let Some(set) = values.get(attr) else {
            return Some(Vec::new());
        };
        let mut out: Vec<ById> = Vec::new();
        for (lo, hi) in ranges {
            let lo = match lo {
                Bound::Included(k) => Bound::Included((k.clone(), sentinel(true))),
                Bound::Excluded(k) => Bound::Excluded((k.clone(), sentinel(false))),
                Bound::Unbounded => Bound::Unbounded,
            };
            let hi = match hi {
                Bound::Included(k) => Bound::Included((k.clone(), sentinel(false))),
                Bound::Excluded(k) => Bound::Excluded((k.clone(), sentinel(true))),
                Bound::Unbounded => Bound::Unbounded,
            };
            if let (
                Bound::Included(a) | Bound::Excluded(a),
                Bound::Included(b) | Bound::Excluded(b),
            ) = (&lo, &hi)
            {
                if a > b {
                    continue;
                }
            }
            out.extend(set.range((lo, hi)).map(|(_, e)| e.clone()));
        }
        out.sort();
        out.dedup();
        Some(out.into_iter().map(|b| b.0).collect())
    }

    pub fn scan(
        &self,
        types: Option<&[String]>,
        after: Option<&str>,
        visit: &mut dyn FnMut(&Arc<Entity>) -> ControlFlow<()>,
    ) {
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let range = (lower, Bound::Unbounded);
        match types {
            None => {
                for e in self.entities.range::<str, _>(range) {
                    if visit(&e.0).is_break() {
                        return;
                    }
                }
            }
            Some([one]) => {
                let Some(set) = self.by_type.get(one.as_str()) else {
                    return;
                };
                for e in set.range::<str, _>(range) {
                    if visit(&e.0).is_break() {
                        return;
                    }
                }
            }
            Some(many) => {
                // Merge the per-type sets in id order without duplicates.
                let mut all: BTreeSet<&ById> = BTreeSet::new();
                for t in many {
                    if let Some(set) = self.by_type.get(t.as_str()) {
                        all.extend(set.range::<str, _>(range));
                    }
                }
                for e in all {
                    if visit(&e.0).is_break() {
                        return;
                    }
                }
            }
        }
    }
}
