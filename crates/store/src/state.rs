//! In-memory state of one tenant: entities in id order and an index by type.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

use citybrain_model::q::IndexKey;
use citybrain_model::{AttrKind, Entity};

/// One attribute's index: (value, entity id), sorted.
pub(crate) type ValueIndex = BTreeSet<(IndexKey, Arc<str>)>;

#[derive(Debug, Default, Clone)]
pub(crate) struct TenantState {
    pub entities: BTreeMap<Arc<str>, Arc<Entity>>,
    pub by_type: HashMap<Arc<str>, BTreeSet<Arc<str>>>,
    /// Value index: attribute IRI → (scalar value of the default instance, entity id).
    /// `None` when disabled.
    pub values: Option<HashMap<Arc<str>, ValueIndex>>,
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
            values: value_index.then(HashMap::new),
            ..Default::default()
        }
    }

    fn unindex_values(&mut self, old: &Entity, id: &Arc<str>) {
        let Some(values) = self.values.as_mut() else {
            return;
        };
        for (attr, key) in index_entries(old) {
            if let Some(set) = values.get_mut(attr) {
                set.remove(&(key, id.clone()));
                if set.is_empty() {
                    values.remove(attr);
                }
            }
        }
    }

    fn index_values(&mut self, e: &Entity, id: &Arc<str>) {
        let Some(values) = self.values.as_mut() else {
            return;
        };
        for (attr, key) in index_entries(e) {
            match values.get_mut(attr) {
                Some(set) => {
                    set.insert((key, id.clone()));
                }
                None => {
                    values.insert(attr.clone(), BTreeSet::from([(key, id.clone())]));
                }
            }
        }
    }

    /// Ids whose `attr` falls in any of `ranges`, in id order; `None` without an index.
    pub fn ids_in_ranges(
        &self,
        attr: &str,
        ranges: &[citybrain_model::q::KeyRange],
    ) -> Option<Vec<Arc<str>>> {
        let values = self.values.as_ref()?;
        let Some(set) = values.get(attr) else {
            return Some(Vec::new());
        };
        let mut ids: Vec<Arc<str>> = Vec::new();
        for (lo, hi) in ranges {
            let lo = match lo {
                Bound::Included(k) => Bound::Included((k.clone(), Arc::from(""))),
                Bound::Excluded(k) => {
                    Bound::Excluded((k.clone(), Arc::from("\u{10FFFF}\u{10FFFF}")))
                }
                Bound::Unbounded => Bound::Unbounded,
            };
            let hi = match hi {
                Bound::Included(k) => {
                    Bound::Included((k.clone(), Arc::from("\u{10FFFF}\u{10FFFF}")))
                }
                Bound::Excluded(k) => Bound::Excluded((k.clone(), Arc::from(""))),
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
            ids.extend(set.range((lo, hi)).map(|(_, id)| id.clone()));
        }
        ids.sort();
        ids.dedup();
        Some(ids)
    }

    pub fn put(&mut self, e: Arc<Entity>) {
        let id: Arc<str> = Arc::from(e.id.as_str());
        if let Some(old) = self.entities.get(&id).cloned() {
            self.unindex_values(&old, &id);
        }
        self.index_values(&e, &id);
        if let Some(old) = self.entities.insert(id.clone(), e.clone()) {
            for t in &old.types {
                if !e.types.contains(t) {
                    self.unindex(t, &id);
                }
            }
        }
        for t in &e.types {
            match self.by_type.get_mut(&**t) {
                Some(set) => {
                    set.insert(id.clone());
                }
                None => {
                    self.by_type.insert(t.clone(), BTreeSet::from([id.clone()]));
                }
            }
        }
    }

    fn unindex(&mut self, ty: &str, id: &str) {
        if let Some(set) = self.by_type.get_mut(ty) {
            set.remove(id);
            if set.is_empty() {
                self.by_type.remove(ty);
            }
        }
    }

    pub fn delete(&mut self, id: &str) -> Option<Arc<Entity>> {
        let old = self.entities.remove(id)?;
        let key: Arc<str> = Arc::from(id);
        self.unindex_values(&old, &key);
        for t in &old.types {
            self.unindex(t, id);
        }
        Some(old)
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
        match types {
            None => {
                for (_, e) in self.entities.range::<str, _>((lower, Bound::Unbounded)) {
                    if visit(e).is_break() {
                        return;
                    }
                }
            }
            Some([one]) => {
                let Some(set) = self.by_type.get(one.as_str()) else {
                    return;
                };
                for id in set.range::<str, _>((lower, Bound::Unbounded)) {
                    if let Some(e) = self.entities.get(id) {
                        if visit(e).is_break() {
                            return;
                        }
                    }
                }
            }
            Some(many) => {
                // Merge the per-type id sets in id order without duplicates.
                let mut ids: BTreeSet<&Arc<str>> = BTreeSet::new();
                for t in many {
                    if let Some(set) = self.by_type.get(t.as_str()) {
                        ids.extend(set.range::<str, _>((lower, Bound::Unbounded)));
                    }
                }
                for id in ids {
                    if let Some(e) = self.entities.get(id) {
                        if visit(e).is_break() {
                            return;
                        }
                    }
                }
            }
        }
    }
}
