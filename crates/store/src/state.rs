//! In-memory state of one tenant: entities in id order and an index by type.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

use citybrain_model::Entity;

#[derive(Debug, Default, Clone)]
pub(crate) struct TenantState {
    pub entities: BTreeMap<Arc<str>, Arc<Entity>>,
    pub by_type: HashMap<Arc<str>, BTreeSet<Arc<str>>>,
}

impl TenantState {
    pub fn put(&mut self, e: Arc<Entity>) {
        let id: Arc<str> = Arc::from(e.id.as_str());
        if let Some(old) = self.entities.insert(id.clone(), e.clone()) {
            for t in &old.types {
                if !e.types.contains(t) {
                    self.unindex(t, &id);
                }
            }
        }
        for t in &e.types {
            match self.by_type.get_mut(t.as_str()) {
                Some(set) => {
                    set.insert(id.clone());
                }
                None => {
                    self.by_type
                        .insert(Arc::from(t.as_str()), BTreeSet::from([id.clone()]));
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
